"""Checks for chapter 08: the next-token loss and top-k filtering.

The loss is compared with ``F.cross_entropy`` on shifted logits and labels (−100 ignored), the
filter with :func:`mlstep.generation.filter_logits`; the typical mistakes (no shift, the shift the
wrong way round, padding counted, k + 1 tokens kept, 0 instead of −inf, ...) are named.

Shape legend (the package's): B batch, T positions, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mlstep.exercises._core import _Case, _randn, _register, _run_cases, _shape_str
from mlstep.generation import filter_logits
from mlstep.tools.runtime import IGNORE_INDEX

__all__ = ["check_next_token_loss", "check_top_k_filter"]


# --- the next-token loss -----------------------------------------------------------------------------

def _ce(logits: Tensor, labels: Tensor, **kwargs: Any) -> Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX, **kwargs)


def _wrong_losses(logits: Tensor, labels: Tensor) -> list[tuple[str, Tensor]]:
    """The next-token loss as the typical mistakes compute it (deliberately wrong)."""
    shifted = logits[:, :-1], labels[:, 1:]
    counted = labels[:, 1:].numel()
    return [
        ("no shift: position t's logits must predict token t + 1 (compare logits[:, :-1] with "
         "labels[:, 1:]); without the shift the model learns to copy its input", _ce(logits, labels)),
        ("shifted the wrong way round: logits[:, :-1] predict labels[:, 1:] (each position the NEXT "
         "token), not logits[:, 1:] against labels[:, :-1]", _ce(logits[:, 1:], labels[:, :-1])),
        ("labels not shifted: both logits and labels cut to T - 1, but labels must start at position 1 "
         "(labels[:, 1:])", _ce(logits[:, :-1], labels[:, :-1])),
        ("summed instead of averaged: take the mean over the positions that have a label",
         _ce(*shifted, reduction="sum")),
        ("divided by every position, ignored ones (-100) included: average over the labelled positions "
         "only (F.cross_entropy's ignore_index=-100 does it)", _ce(*shifted, reduction="sum") / counted),
    ]


@_register
def check_next_token_loss(fn: Callable[..., Any]) -> tuple[bool, str]:
    """Check ``fn(logits (B, T, V), labels (B, T)) -> scalar``: the mean cross-entropy of
    ``logits[:, t]`` against ``labels[:, t + 1]`` over the labels that are not −100.

    Cases: a batch with a prompt and padding labelled −100, one without, float64, T = 2.
    """
    g = torch.Generator().manual_seed(808)
    cases = []
    for B, T, V, ignored, dtype in ((3, 7, 11, True, torch.float32), (2, 5, 6, False, torch.float32),
                                    (4, 9, 13, True, torch.float64), (2, 2, 5, False, torch.float32)):
        logits = _randn(g, B, T, V, dtype=dtype) * 2  # (B, T, V)
        labels = torch.randint(0, V, (B, T), generator=g)  # (B, T)
        if ignored:  # a prompt without loss in row 0, padding at the end of row 1
            labels[0, :3] = IGNORE_INDEX
            labels[1, -2:] = IGNORE_INDEX
        expected = _ce(logits[:, :-1], labels[:, 1:])
        label = f"{'float64 ' if dtype == torch.float64 else ''}logits {_shape_str(logits)}" + (
            ", labels with -100 on a prompt and padding" if ignored else "")
        cases.append(_Case((logits, labels), expected, label, ("logits", "labels"),
                           tuple(_wrong_losses(logits, labels))))

    def shape_hint(case: _Case, shape: tuple) -> str | None:
        return "reduce to one number: the mean over the labelled positions" if shape else None

    return _run_cases(fn, cases, shape_hint=shape_hint)


# --- top-k filtering -----------------------------------------------------------------------------------

def _wrong_filters(z: Tensor, k: int) -> list[tuple[str, Tensor]]:
    """Top-k filters as the typical mistakes write them (deliberately wrong)."""
    inf = float("-inf")
    kth = z.topk(k, dim=-1).values[:, -1:]  # (B, 1)
    wrong = [
        ("kept the k SMALLEST logits: keep the k largest, torch.topk(logits, k).values[:, -1:] is the "
         "threshold", z.masked_fill(z > z.topk(k, dim=-1, largest=False).values[:, -1:], inf)),
        ("filled with 0 instead of -inf: a logit of 0 still has probability > 0 after the softmax; use "
         "float('-inf')", z.masked_fill(z < kth, 0.0)),
        ("returned probabilities: return the filtered LOGITS (-inf outside the top k); sampling "
         "applies the softmax", z.masked_fill(z < kth, inf).softmax(-1)),
    ]
    if k <= z.shape[0]:
        wrong.append(("filtered along the wrong dimension: each row is one distribution, take the top k "
                      "along dim=-1", z.masked_fill(z < z.topk(k, dim=0).values[-1:], inf)))
    if k < z.shape[-1]:
        wrong.insert(0, ("kept k + 1 tokens: the k-th largest logit is topk(...).values[:, -1] (or [:, k - 1]), "
                         "not [:, k]", z.masked_fill(z < z.topk(k + 1, dim=-1).values[:, -1:], inf)))
    if k > 1:
        wrong.insert(0, ("kept k - 1 tokens: keep every logit >= the k-th largest (use <, not <=, to mask)",
                         z.masked_fill(z <= kth, inf)))
    return wrong


@_register
def check_top_k_filter(fn: Callable[..., Any]) -> tuple[bool, str]:
    """Check ``fn(logits (B, V), k) -> (B, V)``: the logits, −inf everywhere but the k largest of each row.

    The reference is :func:`mlstep.generation.filter_logits`; cases include k = 1 (greedy) and k = V.
    """
    g = torch.Generator().manual_seed(8080)
    cases = []
    for B, V, k, dtype in ((4, 12, 3, torch.float32), (3, 20, 5, torch.float64), (2, 9, 1, torch.float32),
                           (3, 6, 6, torch.float32)):
        z = _randn(g, B, V, dtype=dtype) * 2  # (B, V), no ties
        label = f"{'float64 ' if dtype == torch.float64 else ''}logits {_shape_str(z)}, k={k}"
        cases.append(_Case((z, k), filter_logits(z, top_k=k), label, ("logits",), tuple(_wrong_filters(z, k))))

    def shape_hint(case: _Case, shape: tuple) -> str | None:
        B, k = case.args[0].shape[0], case.args[1]
        if shape == (B, k):
            return "that is the top-k values alone: return the full (B, V) logits with -inf outside the top k"
        return None

    def diagnose(case: _Case, got: Tensor) -> str | None:
        kept = torch.isfinite(got).sum(-1)
        k = case.args[1]
        if (kept != k).any():
            return f"row 0 keeps {int(kept[0])} finite logits, expected k={k}"
        return "the kept logits must keep their values (only the others become -inf)"

    return _run_cases(fn, cases, shape_hint=shape_hint, diagnose=diagnose)
