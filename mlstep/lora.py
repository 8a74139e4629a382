"""LoRA: low-rank adapters on the attention projections (Hu et al., 2021).

A frozen weight ``W (out × in)`` gets a trainable low-rank update::

    y = x Wᵀ + b + (α / r) · x Aᵀ Bᵀ        A: (r × in), B: (out × r), r ≪ min(in, out)

``B`` starts at zero, so the wrapped model first computes exactly what the base model computes,
and training moves ``r · (in + out)`` numbers per layer instead of ``in · out``. The update is
linear, so it can be folded into the weight afterwards (``W ← W + (α/r)·B A``): no cost at inference.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mlstep.attention import MultiHeadAttention
from mlstep.finetune import freeze
from mlstep.transformer import find_backbone

__all__ = ["LoRALinear", "apply_lora", "merge_lora"]


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` (``base``) plus the trainable update ``(α/r)·B A``.

    ``A (r, in)`` starts like a Linear weight and ``B (out, r)`` at zero: the update is zero but
    ``B`` still gets a gradient, so training can start.
    """

    def __init__(self, base: nn.Linear, rank: int = 8, alpha: float = 16):
        super().__init__()
        if not isinstance(rank, int) or rank <= 0 or alpha <= 0:
            raise ValueError(f"rank must be a positive integer and alpha > 0, got {rank!r}, {alpha!r}")
        self.base, self.scaling = freeze(base), alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features).to(base.weight))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank).to(base.weight))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # nn.Linear's own initialisation

    def forward(self, x: Tensor) -> Tensor:
        # two thin products, (..., in) -> (..., r) -> (..., out): the (out, in) update is never formed
        return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * self.scaling


def apply_lora(model: nn.Module, rank: int = 8, alpha: float = 16,
               targets: tuple[str, ...] = ("q_proj", "v_proj")) -> list[LoRALinear]:
    """Wrap the ``targets`` projections of every attention layer in ``model`` with
    :class:`LoRALinear`, in place, and freeze everything but the adapters and the task head
    (every parameter outside the BERT or GPT backbone, when there is one). Returns the new adapters.

    ``targets``: among ``q_proj, k_proj, v_proj, out_proj``; the LoRA paper adapts queries and values.
    """
    if isinstance(targets, str) or not targets or not set(targets) <= {"q_proj", "k_proj", "v_proj", "out_proj"}:
        raise ValueError(f"targets must name some of q_proj, k_proj, v_proj, out_proj, got {targets!r}")
    try:
        inside = {id(p) for p in find_backbone(model).model.parameters()}
        head = [p for p in model.parameters() if id(p) not in inside]
    except TypeError:  # a bare stack of attention layers: no head to keep
        head = []
    attentions = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    if not attentions:
        raise ValueError(f"{type(model).__name__} contains no mlstep.MultiHeadAttention to adapt")
    freeze(model)
    adapters = []
    for attention in attentions:
        for name in targets:
            if isinstance(getattr(attention, name), LoRALinear):
                raise ValueError(f"{name} already has a LoRA adapter: apply_lora was called twice")
            adapters.append(LoRALinear(getattr(attention, name), rank, alpha))
            setattr(attention, name, adapters[-1])
    for p in head:
        p.requires_grad_(True)
    return adapters


@torch.no_grad()
def merge_lora(model: nn.Module) -> int:
    """Fold every adapter into its weight and put the plain (frozen) ``nn.Linear`` back, in place:
    the model has its original structure again and computes what the adapted one did. Returns
    the number of adapters merged."""
    merged = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                child.base.weight += (child.lora_B @ child.lora_A) * child.scaling  # (out, r) @ (r, in)
                setattr(module, name, child.base)
                merged += 1
    return merged
