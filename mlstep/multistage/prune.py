"""Pruning: remove the weights, attention heads and feed-forward neurons a model needs least.

Unstructured (magnitude) pruning
    :func:`magnitude_masks` keeps the largest weights by absolute value, over all layers at once
    (``scope="global"``) or within each (``"layer"``); its masks equal ``torch.nn.utils.prune``'s
    (tested). :func:`apply_masks` zeroes the pruned weights and keeps them at zero while training
    goes on (fine-tuning to recover). The matrices keep their shape: a dense CPU kernel is no
    faster on zeros, so the gain is only in what sparse storage or sparse kernels can make of it.
Structured pruning
    :func:`prune_heads` and :func:`prune_neurons` rebuild the attention and feed-forward layers
    without some heads (``H → H'``) or neurons (``F → F'``): a smaller *dense* model that is
    faster on any hardware. :func:`structured_importance` scores each head and neuron by the
    first-order estimate of how much the loss changes when it is removed (Michel et al., 2019;
    Molchanov et al., 2019): ``|Σ w ⊙ ∂L/∂w|`` over the weights that read its output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from mlstep.attention import MultiHeadAttention
from mlstep.tools.runtime import eval_mode, to_device, unwrap_model
from mlstep.transformer import find_backbone

__all__ = ["prunable_weights", "magnitude_masks", "apply_masks", "sparsity", "keep_rows",
           "keep_columns", "prune_heads", "prune_neurons", "structured_importance", "lowest"]


# --- unstructured: individual weights ------------------------------------------------------------

def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weight matrices of the blocks of a BERT's or GPT's stack (attention projections and
    feed-forward layers), by name; embeddings, LayerNorms, biases and heads are left alone, as is usual."""
    layers = find_backbone(unwrap_model(model)).stack.layers
    return {f"{name}.weight": m.weight for name, m in layers.named_modules() if isinstance(m, nn.Linear)}


def magnitude_masks(weights: Mapping[str, Tensor], amount: float, scope: str = "global") -> dict[str, Tensor]:
    """Masks (1 = keep) that prune the fraction ``amount`` of the weights with the smallest absolute
    value: ranked over every matrix together (``"global"``) or within each (``"layer"``).

    ``round(amount · n)`` weights go, as ``torch.nn.utils.prune.l1_unstructured`` /
    ``global_unstructured`` count them, and the same ones (``torch.topk`` picks them).
    """
    if not 0.0 <= amount <= 1.0 or scope not in ("global", "layer"):
        raise ValueError(f"need amount in [0, 1] and scope 'global' or 'layer', got {amount!r}, {scope!r}")
    groups = [dict(weights)] if scope == "global" else [{k: w} for k, w in weights.items()]
    masks = {}
    for group in groups:
        scores = torch.cat([w.detach().abs().flatten() for w in group.values()])  # (n,)
        mask = torch.ones_like(scores)
        mask[torch.topk(scores, k=round(amount * len(scores)), largest=False).indices] = 0
        for (name, w), part in zip(group.items(), mask.split([w.numel() for w in group.values()])):
            masks[name] = part.view_as(w)
    return masks


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, Tensor]) -> list[RemovableHandle]:
    """Zero the pruned weights of ``model`` (names as :func:`prunable_weights` gives them) and keep
    them zero in later training: a hook multiplies their gradient by the mask, so AdamW, whose
    moments then stay 0, never moves them. Returns the hooks' handles (``h.remove()`` frees them)."""
    weights = prunable_weights(model)
    unknown = sorted(set(masks) - set(weights))
    if unknown:
        raise KeyError(f"no prunable weight named {unknown[:3]}; see prunable_weights(model)")
    handles = []
    for name, mask in masks.items():
        w = weights[name]
        mask = mask.to(device=w.device, dtype=w.dtype)
        w.mul_(mask)
        handles.append(w.register_hook(lambda grad, mask=mask: grad * mask))
    return handles


def sparsity(model: nn.Module) -> float:
    """The fraction of zeros among the :func:`prunable_weights`."""
    weights = list(prunable_weights(model).values())
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


# --- structured: heads and neurons ----------------------------------------------------------------

@torch.no_grad()
def keep_rows(linear: nn.Linear, index: Tensor) -> nn.Linear:
    """A new Linear with only the output features ``index`` (weight rows, bias entries)."""
    new = nn.Linear(linear.in_features, len(index), bias=linear.bias is not None).to(linear.weight)
    new.weight.copy_(linear.weight[index])
    if linear.bias is not None:
        new.bias.copy_(linear.bias[index])
    return new


@torch.no_grad()
def keep_columns(linear: nn.Linear, index: Tensor) -> nn.Linear:
    """A new Linear that reads only the input features ``index`` (weight columns; same bias)."""
    new = nn.Linear(len(index), linear.out_features, bias=linear.bias is not None).to(linear.weight)
    new.weight.copy_(linear.weight[:, index])
    if linear.bias is not None:
        new.bias.copy_(linear.bias)
    return new


def _kept(total: int, removed: Iterable[int], what: str, layer: int) -> list[int]:
    removed = set(removed)
    if not removed <= set(range(total)):
        raise ValueError(f"layer {layer} has {what} 0..{total - 1}, got {sorted(removed)}")
    if len(removed) == total:
        raise ValueError(f"removing all {total} {what} of layer {layer}: keep at least one")
    return [i for i in range(total) if i not in removed]


def prune_heads(model: nn.Module, heads: Mapping[int, Sequence[int]]) -> nn.Module:
    """Remove attention heads, in place: ``{layer: [head, ...]}``. Returns ``model``.

    Head ``h`` owns rows ``h·K … (h+1)·K - 1`` of ``q_proj``, ``k_proj``, ``v_proj`` (its queries,
    keys, values) and the same columns of ``out_proj`` (where its output is mixed in); removing
    them gives a layer with ``H'`` heads that computes what the old one did with those heads'
    outputs set to zero. The model's config still describes the unpruned shapes.
    """
    layers = find_backbone(unwrap_model(model)).stack.layers
    for layer, removed in heads.items():
        attn: MultiHeadAttention = layers[layer].attn
        K = attn.q_proj.out_features // attn.num_heads
        kept = _kept(attn.num_heads, removed, "heads", layer)
        index = torch.tensor([h * K + k for h in kept for k in range(K)], device=attn.q_proj.weight.device)
        attn.q_proj, attn.k_proj, attn.v_proj = (keep_rows(p, index) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
        attn.out_proj, attn.num_heads = keep_columns(attn.out_proj, index), len(kept)
    return model


def prune_neurons(model: nn.Module, neurons: Mapping[int, Sequence[int]]) -> nn.Module:
    """Remove feed-forward neurons, in place: ``{layer: [neuron, ...]}``; neuron ``j`` is row ``j``
    of ``fc1`` and column ``j`` of ``fc2``. Returns ``model``."""
    layers = find_backbone(unwrap_model(model)).stack.layers
    for layer, removed in neurons.items():
        ffn = layers[layer].ffn
        kept = torch.tensor(_kept(ffn.fc1.out_features, removed, "neurons", layer), device=ffn.fc1.weight.device)
        ffn.fc1, ffn.fc2 = keep_rows(ffn.fc1, kept), keep_columns(ffn.fc2, kept)
    return model


def structured_importance(model: nn.Module, batches: Iterable[Any],
                          loss_fn: Callable[[nn.Module, Any], Any]) -> tuple[list[Tensor], list[Tensor]]:
    """Per layer, the importance of each head ``(H,)`` and each feed-forward neuron ``(F,)``.

    For every batch, ``loss_fn(model, batch)`` (a ``step_fn``; a ``(loss, values)`` pair is fine)
    is back-propagated and, for each head (neuron), ``|Σ w ⊙ ∂L/∂w|`` is added up over the
    ``out_proj`` columns (``fc2`` column) that read its output: the first-order change of the loss
    if its output were zeroed. The model's gradients are cleared afterwards.
    """
    layers = find_backbone(unwrap_model(model)).stack.layers
    device = next(model.parameters()).device
    heads = [torch.zeros(layer.attn.num_heads, device=device) for layer in layers]
    neurons = [torch.zeros(layer.ffn.fc1.out_features, device=device) for layer in layers]
    with eval_mode(model):  # no dropout: the estimate is for the model as it predicts
        for batch in batches:
            model.zero_grad(set_to_none=True)
            out = loss_fn(model, to_device(batch, device))
            (out[0] if isinstance(out, tuple) else out).backward()
            with torch.no_grad():
                for i, layer in enumerate(layers):
                    w = layer.attn.out_proj.weight  # (D, H·K): column block h reads head h
                    heads[i] += (w * w.grad).sum(0).view(layer.attn.num_heads, -1).sum(1).abs()  # (H,)
                    w = layer.ffn.fc2.weight  # (D, F): column j reads neuron j
                    neurons[i] += (w * w.grad).sum(0).abs()  # (F,)
        model.zero_grad(set_to_none=True)
    return [h.cpu() for h in heads], [n.cpu() for n in neurons]


def lowest(scores: Sequence[Tensor], fraction: float) -> dict[int, list[int]]:
    """The ``round(fraction · n)`` lowest-scoring units of each layer: ``{layer: [index, ...]}``,
    the input :func:`prune_heads` and :func:`prune_neurons` take."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1): keep at least one unit per layer, got {fraction!r}")
    return {i: sorted(torch.argsort(s)[: round(fraction * len(s))].tolist()) for i, s in enumerate(scores)}
