"""Scaled dot-product attention, mask builders and multi-head attention, from scratch.

Shape legend (used in every comment and einops pattern below):
    b  batch            h  heads
    n  query positions  s  key/value positions
    d  head dimension   (d_model = h * d)

Mask convention (the same as PyTorch's): a boolean mask where **True means "may attend"**.
A mask broadcasts against the scores ``(..., n, s)``; use :func:`padding_mask` and
:func:`causal_mask` to build the usual ones.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

__all__ = [
    "scaled_dot_product_attention",
    "padding_mask",
    "causal_mask",
    "MultiHeadAttention",
]


def _check_mask(mask: Tensor, scores_shape: torch.Size) -> None:
    if mask.dtype != torch.bool:
        raise TypeError(
            f"mask must be a boolean tensor (True = may attend), got dtype {mask.dtype}. "
            "Convert a 0/1 mask with `mask.bool()`."
        )
    try:
        torch.broadcast_shapes(mask.shape, scores_shape)
    except RuntimeError:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to the attention scores "
            f"{tuple(scores_shape)} (..., queries, keys)"
        ) from None


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """``softmax(q kᵀ / √d_k) v``, returning the output and the attention weights.

    Args:
        q: queries ``(..., n, d_k)``.
        k: keys ``(..., s, d_k)``.
        v: values ``(..., s, d_v)``.
        mask: optional boolean mask broadcastable to ``(..., n, s)``; True = may attend.
        dropout_p: dropout on the weights (only applied when > 0; pass 0.0 at evaluation).

    Returns:
        ``(out, weights)`` with ``out`` of shape ``(..., n, d_v)`` and ``weights`` of shape
        ``(..., n, s)``. ``weights`` are taken *before* dropout, so each row sums to 1.

    A query whose every key is masked has no defined softmax (PyTorch returns NaN there). Here
    such a row gets **all-zero weights and a zero output**, and no NaN reaches the gradients.
    """
    if q.dim() < 2 or k.dim() < 2 or v.dim() < 2:
        raise ValueError("q, k and v need at least 2 dimensions (..., positions, features)")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must have the same last dimension d_k, got {q.shape[-1]} and {k.shape[-1]}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must have the same number of positions, got {k.shape[-2]} and {v.shape[-2]}"
        )
    d_k = q.shape[-1]

    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (..., n, s)
    if mask is not None:
        _check_mask(mask, scores.shape)
        scores = scores.masked_fill(~mask, float("-inf"))
        # Rows with no allowed key would be softmax(-inf, ..., -inf) = NaN. Give them finite
        # scores for the softmax, then zero their weights below (documented behaviour).
        empty_rows = ~mask.any(dim=-1, keepdim=True)  # (..., n, 1)
        scores = scores.masked_fill(empty_rows, 0.0)

    weights = scores.softmax(dim=-1)  # (..., n, s)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)  # exact zeros; also empties the empty rows

    dropped = F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights
    out = dropped @ v  # (..., n, d_v)
    return out, weights


def padding_mask(attention_mask: Tensor) -> Tensor:
    """Key-padding mask ``(b, 1, 1, s)`` from a ``(b, s)`` mask with 1/True = real token.

    The two singleton dimensions broadcast over heads and queries, so the result can be passed
    straight to :func:`scaled_dot_product_attention` or :class:`MultiHeadAttention`.
    """
    if attention_mask.dim() != 2:
        raise ValueError(
            f"attention_mask must be (batch, seq_len) with 1 = real token, got shape "
            f"{tuple(attention_mask.shape)}"
        )
    return rearrange(attention_mask.bool(), "b s -> b 1 1 s")


def causal_mask(n: int, s: int | None = None, device: torch.device | str | None = None) -> Tensor:
    """Boolean ``(n, s)`` mask where query ``i`` may attend to keys ``0..i`` (lower triangle).

    With ``s > n`` (queries are the last ``n`` of ``s`` positions, as with a cache) the diagonal
    is shifted so that the last query sees every key, matching PyTorch's ``is_causal`` only when
    ``n == s``.
    """
    s = n if s is None else s
    if n <= 0 or s <= 0:
        raise ValueError(f"causal_mask needs positive sizes, got n={n}, s={s}")
    return torch.ones(n, s, dtype=torch.bool, device=device).tril(diagonal=s - n)


class MultiHeadAttention(nn.Module):
    """Multi-head attention: ``Concat(head_1, ..., head_h) Wᴼ`` with ``head_i = Attn(Q Wᵢ^Q, K Wᵢ^K, V Wᵢ^V)``.

    The per-head projections are stored as one ``d_model × d_model`` matrix each for Q, K and V
    (the ``h`` blocks of width ``d = d_model / h`` side by side), which is what
    ``nn.MultiheadAttention`` and BERT checkpoints store too.

    Args:
        d_model: model width (input and output features).
        num_heads: number of heads ``h``; must divide ``d_model``.
        dropout: dropout on the attention weights during training.
        bias: whether the four projections have biases.
        fused: if True, use ``F.scaled_dot_product_attention`` (a fused kernel) whenever the
            weights are not requested. Same numbers, faster; the from-scratch path is the default
            so that learners can step through it.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        fused: bool = False,
    ):
        super().__init__()
        if d_model <= 0 or num_heads <= 0:
            raise ValueError(f"d_model and num_heads must be positive, got {d_model}, {num_heads}")
        if d_model % num_heads != 0:
            raise ValueError(
                f"d_model={d_model} is not divisible by num_heads={num_heads}: each head gets "
                "d_model / num_heads features"
            )
        self.d_model = d_model
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.dropout = dropout
        self.fused = fused
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        mask: Tensor | None = None,
        need_weights: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Attend from ``query (b, n, d_model)`` to ``key``/``value (b, s, d_model)``.

        ``key`` defaults to ``query`` (self-attention) and ``value`` to ``key``. ``mask`` is
        boolean (True = may attend), broadcastable to ``(b, h, n, s)``; a 3-D ``(b, n, s)`` mask
        is applied to every head. Returns ``out (b, n, d_model)``, or ``(out, weights)`` with
        ``weights (b, h, n, s)`` when ``need_weights`` is True.
        """
        key = query if key is None else key
        value = key if value is None else value
        for name, x in (("query", query), ("key", key), ("value", value)):
            if x.dim() != 3 or x.shape[-1] != self.d_model:
                raise ValueError(
                    f"{name} must be (batch, seq_len, d_model={self.d_model}), got shape "
                    f"{tuple(x.shape)}"
                )
        if key.shape[:2] != value.shape[:2] or key.shape[0] != query.shape[0]:
            raise ValueError(
                f"batch/length mismatch: query {tuple(query.shape)}, key {tuple(key.shape)}, "
                f"value {tuple(value.shape)}"
            )
        if mask is not None and mask.dim() == 3:
            mask = rearrange(mask, "b n s -> b 1 n s")  # same mask for every head

        # Project, then split the feature axis into heads: (b, n, h*d) -> (b, h, n, d).
        q = rearrange(self.q_proj(query), "b n (h d) -> b h n d", h=self.num_heads)
        k = rearrange(self.k_proj(key), "b s (h d) -> b h s d", h=self.num_heads)
        v = rearrange(self.v_proj(value), "b s (h d) -> b h s d", h=self.num_heads)
        p = self.dropout if self.training else 0.0

        if self.fused and not need_weights:
            if mask is not None:
                _check_mask(mask, torch.Size((*q.shape[:-1], k.shape[-2])))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
            weights = None
        else:
            out, weights = scaled_dot_product_attention(q, k, v, mask=mask, dropout_p=p)
        # (b, h, n, d) -> (b, n, h*d): concatenate the heads, then mix them with Wᴼ.
        out = self.out_proj(rearrange(out, "b h n d -> b n (h d)"))  # (b, n, d_model)
        return (out, weights) if need_weights else out

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """Build a :class:`MultiHeadAttention` holding a copy of ``nn.MultiheadAttention``'s weights."""
        if not mha._qkv_same_embed_dim:
            raise ValueError("only nn.MultiheadAttention with kdim == vdim == embed_dim is supported")
        bias = mha.in_proj_bias is not None
        new = cls(mha.embed_dim, mha.num_heads, dropout=mha.dropout, bias=bias)
        with torch.no_grad():
            # PyTorch packs W_q, W_k, W_v as one (3·d_model, d_model) matrix.
            for proj, w in zip((new.q_proj, new.k_proj, new.v_proj), mha.in_proj_weight.chunk(3)):
                proj.weight.copy_(w)
            new.out_proj.weight.copy_(mha.out_proj.weight)
            if bias:
                for proj, b in zip((new.q_proj, new.k_proj, new.v_proj), mha.in_proj_bias.chunk(3)):
                    proj.bias.copy_(b)
                new.out_proj.bias.copy_(mha.out_proj.bias)
        return new.to(device=mha.in_proj_weight.device, dtype=mha.in_proj_weight.dtype)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, num_heads={self.num_heads}, head_dim={self.head_dim}"
