"""Checks for chapter 09: the weighted layer-wise loss, and a magnitude-pruning mask.

``check_layerwise_loss`` compares the learner's ``Σ_l α_l · CE(ŷ_l, y)`` with
:func:`mlstep.multistage.layerwise.layerwise_loss` and names the usual slips (weights ignored or normalised,
the last layer only, a sum over the batch, a softmax before the cross-entropy).

``check_magnitude_mask`` compares the learner's mask with ``torch.nn.utils.prune``'s and names the
usual slips (the largest pruned, signed values, ``int()`` truncation, row by row).

Shape legend:
    N  layers with a head    b  rows (examples)    C  classes    o, i  a weight's out, in features
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
import torch.nn.utils.prune as torch_prune
from torch import Tensor, nn

from mlstep.exercises._core import (
    _call,
    _Case,
    _one_line,
    _passed,
    _randn,
    _register,
    _run_cases,
    _shape_str,
)
from mlstep.multistage.layerwise import layerwise_loss

__all__ = ["check_layerwise_loss", "check_magnitude_mask"]


# --- the layer-wise loss ---------------------------------------------------------------------------

def _wrong_layerwise(z: Tensor, y: Tensor, a: Tensor) -> list[tuple[str, Tensor]]:
    """The layer-wise loss as the typical mistakes compute it (deliberately wrong)."""
    per_layer = torch.stack([F.cross_entropy(logits, y) for logits in z])  # (N,)
    return [
        ("the weights α are ignored: multiply each layer's loss by its α_l before summing",
         per_layer.sum()),
        ("the weights α are ignored and the losses averaged: Σ_l α_l · L_l, with the α given",
         per_layer.mean()),
        ("divided by Σ α: the formula is the plain weighted sum Σ_l α_l · L_l", (a * per_layer).sum() / a.sum()),
        ("only the last layer's loss: every layer l contributes α_l · L_l",
         a[-1] * per_layer[-1]),
        ("summed over the batch: each L_l is the MEAN cross-entropy over the examples",
         (a * per_layer).sum() * z.shape[1]),
        ("softmax applied before F.cross_entropy, which takes raw logits (it applies log-softmax itself)",
         (a * torch.stack([F.cross_entropy(logits.softmax(-1), y) for logits in z])).sum()),
        ("weights applied in reverse order: α_l belongs to layer_logits[l]", (a.flip(0) * per_layer).sum()),
    ]


@_register
def check_layerwise_loss(fn: Callable[..., Any]) -> tuple[bool, str]:
    """Check ``fn(layer_logits (N, b, C), labels (b,), weights (N,)) -> scalar``:
    ``Σ_l weights[l] · F.cross_entropy(layer_logits[l], labels)``.

    Returns:
        True if every case matches (a ✅/❌ line is printed either way).
    """
    g = torch.Generator().manual_seed(909)
    cases = []
    for N, b, C, dtype in ((3, 8, 4, torch.float32), (4, 5, 2, torch.float32), (2, 6, 3, torch.float64)):
        z = (_randn(g, N, b, C, dtype=dtype) * 2).requires_grad_(True)  # (N, b, C)
        y = torch.randint(0, C, (b,), generator=g)  # (b,)
        a = torch.rand(N, generator=g, dtype=dtype) + 0.25  # (N,): distinct, not summing to 1
        with torch.no_grad():
            expected = layerwise_loss(z, y, a)[0]
            wrong = tuple(_wrong_layerwise(z, y, a))
        label = f"{'float64 ' if dtype == torch.float64 else ''}layer_logits {_shape_str(z)}, weights {_shape_str(a)}"
        cases.append(_Case((z, y, a), expected, label, ("layer_logits", "labels", "weights"), wrong))

    def output(result: Any) -> Any:
        if isinstance(result, tuple):
            raise ValueError("return the total loss alone (a 0-d tensor), not a tuple")
        if isinstance(result, Tensor) and not result.requires_grad:
            raise ValueError("your loss has no gradient (requires_grad is False): compute it with torch "
                             "operations on layer_logits, without .item(), .detach() or torch.tensor(...)")
        return result

    def shape_hint(case: _Case, shape: tuple) -> str | None:
        N, b, _ = case.args[0].shape
        if shape == (N,):
            return "that is one loss per layer: return their weighted sum"
        if shape == (b,) or shape == (N, b):
            return "that is one loss per example: average over the batch (F.cross_entropy does by default)"
        return None

    return _run_cases(fn, cases, output=output, shape_hint=shape_hint)


# --- magnitude pruning ------------------------------------------------------------------------

def _torch_mask(w: Tensor, amount: float) -> Tensor:
    module = nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        module.weight.copy_(w)
    return torch_prune.l1_unstructured(module, "weight", amount=amount).weight_mask


def _zeros_at(w: Tensor, index: Tensor) -> Tensor:
    mask = torch.ones(w.numel())
    mask[index] = 0
    return mask.view_as(w)


def _wrong_masks(w: Tensor, amount: float) -> list[tuple[str, Tensor]]:
    """Masks as the typical mistakes compute them (deliberately wrong)."""
    flat, k = w.abs().flatten(), round(amount * w.numel())
    per_row = torch.ones_like(w)
    for r in range(w.shape[0]):
        per_row[r, torch.topk(w[r].abs(), round(amount * w.shape[1]), largest=False).indices] = 0
    return [
        ("inverted: 1 must mark a weight that is KEPT, 0 one that is pruned", 1 - _torch_mask(w, amount)),
        ("the LARGEST weights were pruned: prune the smallest |w| (torch.topk(..., largest=False))",
         _zeros_at(w, torch.topk(flat, k, largest=True).indices)),
        ("ranked by the signed value: prune the smallest ABSOLUTE values, w.abs()",
         _zeros_at(w, torch.topk(w.flatten(), k, largest=False).indices)),
        ("int() truncates the number of weights to prune: use round(amount * weight.numel())",
         _zeros_at(w, torch.topk(flat, int(amount * w.numel()), largest=False).indices)),
        ("pruned row by row: rank all the weights of the matrix together", per_row),
    ]


def _mask_problem(got: Any, w: Tensor, amount: float) -> str | None:
    """What is wrong with the mask ``got`` for ``w`` at ``amount``, or None."""
    if not isinstance(got, Tensor):
        return f"not a tensor: your function returned {type(got).__name__}"
    if got.shape != w.shape:
        return f"wrong shape {tuple(got.shape)}: the mask has the weight's shape {tuple(w.shape)}"
    got = got.detach().float()
    if torch.equal(got, _torch_mask(w, amount)):
        return None
    for diagnosis, wrong in _wrong_masks(w, amount):
        if torch.equal(got, wrong):
            return diagnosis
    pruned, k = int((got == 0).sum()), round(amount * w.numel())
    if pruned != k:
        return f"{pruned} weights pruned: prune round(amount · numel) = {k}"
    return "not the smallest-magnitude weights of the matrix"


@_register
def check_magnitude_mask(fn: Callable[..., Any]) -> tuple[bool, str]:
    """Check ``fn(weight (o, i), amount) -> mask (o, i)`` (1 = keep, 0 = prune the ``round(amount ·
    numel)`` weights of smallest ``|w|``) against ``torch.nn.utils.prune.l1_unstructured``."""
    g = torch.Generator().manual_seed(910)
    n = 0
    # not 0.5 first: there "the largest pruned" and "inverted" are the same mask
    for shape, amount in (((8, 8), 0.3), ((6, 5), 0.5), ((4, 16), 0.9), ((5, 7), 0.25)):
        w = _randn(g, *shape)
        got, error = _call(fn, w.clone(), amount)
        if error:
            return False, f"{error} (case {n + 1}: weight {shape}, amount {amount})"
        problem = _mask_problem(got, w, amount)
        if problem:
            return False, f"{_one_line(problem)} (case {n + 1}: weight {shape}, amount {amount})"
        n += 1
    return True, _passed(n)
