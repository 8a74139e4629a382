"""LoRA: low-rank adapters on the attention projections (Hu et al., 2021).

A frozen weight ``W (out × in)`` gets a trainable low-rank update::

    y = x Wᵀ + b + (α / r) · x Aᵀ Bᵀ        A: (r × in), B: (out × r), r ≪ min(in, out)

``B`` starts at zero, so a freshly wrapped model computes exactly what the base model computes,
and training moves only ``r · (in + out)`` numbers per layer instead of ``in · out``. Because
the update is linear, it can be folded into the weight afterwards (``W ← W + (α/r)·B A``): the
merged model is a plain model with no extra cost at inference.

Shape legend:
    ... any leading dimensions (batch, positions)
    i   in_features     o  out_features     r  rank
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mlstep.attention import MultiHeadAttention
from mlstep.finetune import freeze, head_parameters

__all__ = ["LoRALinear", "apply_lora", "merge_lora", "lora_parameters"]


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update ``(α/r)·B A``.

    Args:
        base: the Linear layer to adapt; it is kept (as ``.base``) and frozen.
        rank: ``r``, the rank of the update.
        alpha: ``α``; the update is scaled by ``α / r`` so that changing ``r`` does not change
            the effective learning rate much.
        dropout: dropout on the adapter's input (the base path has none).

    ``lora_A (r, i)`` is initialised like a Linear weight (Kaiming-uniform), ``lora_B (o, r)`` with
    zeros: the product is zero at first but ``B`` still gets a gradient (it is multiplied by a
    non-zero ``A``), so training can start.
    """

    def __init__(self, base: nn.Linear, rank: int = 8, alpha: float = 16, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        if not isinstance(rank, int) or rank <= 0:
            raise ValueError(f"rank must be a positive integer, got {rank!r}")
        if not alpha > 0 or not 0.0 <= dropout < 1.0:
            raise ValueError(f"need alpha > 0 and dropout in [0, 1), got alpha={alpha!r}, dropout={dropout!r}")
        self.base = freeze(base)
        self.rank, self.alpha, self.scaling = rank, alpha, alpha / rank
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=w.device, dtype=w.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # nn.Linear's own init
        self.dropout = nn.Dropout(dropout)
        self.merged = False  # True once the update lives inside base.weight

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @property
    def weight(self) -> Tensor:
        """The base weight (with the update folded in when merged)."""
        return self.base.weight

    def delta_weight(self) -> Tensor:
        """The update ``(α/r) · B A``, shaped like the base weight ``(o, i)``."""
        return (self.lora_B @ self.lora_A) * self.scaling  # (o, r) @ (r, i) -> (o, i)

    def forward(self, x: Tensor) -> Tensor:
        """``x (..., i)`` → ``(..., o)``."""
        y = self.base(x)  # (..., o)
        if self.merged:
            return y  # the update is already in base.weight
        # Two thin matmuls, (..., i) -> (..., r) -> (..., o): never forms the (o, i) update.
        return y + (self.dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight; forward then runs only the base Linear."""
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update back out of the base weight (to continue training the adapter)."""
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}, merged={self.merged}"


def apply_lora(model: nn.Module, rank: int = 8, alpha: float = 16, dropout: float = 0.0,
               targets: tuple[str, ...] = ("q_proj", "v_proj"), train_head: bool = True) -> list[LoRALinear]:
    """Wrap the ``targets`` projections of every :class:`mlstep.MultiHeadAttention` in ``model``
    with :class:`LoRALinear`, in place, and freeze everything else.

    Args:
        model: any model containing MultiHeadAttention modules (a BERT task model, a BertModel).
        rank, alpha, dropout: as in :class:`LoRALinear`.
        targets: which projections to adapt, among ``q_proj, k_proj, v_proj, out_proj``
            (the LoRA paper's default is queries and values).
        train_head: keep the task head (every parameter outside the BertModel) trainable, as it
            is new and must be learned; False trains the adapters only. Without a BertModel in
            ``model`` there is no head and only adapters train.

    Returns:
        The list of new :class:`LoRALinear` modules.
    """
    allowed = ("q_proj", "k_proj", "v_proj", "out_proj")
    if isinstance(targets, str) or not targets or any(t not in allowed for t in targets):
        raise ValueError(f"targets must be a non-empty tuple of names among {allowed}, got {targets!r}")
    attentions = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    if not attentions:
        raise ValueError(f"{type(model).__name__} contains no mlstep.MultiHeadAttention to adapt")
    head: list[nn.Parameter] = []
    if train_head:
        try:
            head = head_parameters(model)
        except TypeError:  # no BertModel inside: no task head to keep
            head = []
    freeze(model)
    wrapped = []
    for attn in attentions:
        for name in targets:
            layer = getattr(attn, name)
            if isinstance(layer, LoRALinear):
                raise ValueError(f"{name} already has a LoRA adapter: apply_lora was called twice")
            lora = LoRALinear(layer, rank=rank, alpha=alpha, dropout=dropout)
            setattr(attn, name, lora)
            wrapped.append(lora)
    for p in head:
        p.requires_grad_(True)
    return wrapped


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every adapter parameter (``lora_A``, ``lora_B``) in ``model``."""
    return [p for m in model.modules() if isinstance(m, LoRALinear) for p in (m.lora_A, m.lora_B)]


def merge_lora(model: nn.Module) -> int:
    """Merge every adapter into its weight and put the plain ``nn.Linear`` back, in place.

    The model then has exactly its original structure and parameter count, and computes what
    the adapted model computed (to float rounding). The merged Linear layers stay frozen
    (``requires_grad=False``); call :func:`mlstep.unfreeze` to train them further.

    Returns:
        The number of adapters merged.
    """
    count = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                child.merge()
                setattr(module, name, child.base)
                count += 1
    return count

