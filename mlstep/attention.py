"""Attention from scratch: scaled dot-product attention, the padding and causal masks, and
multi-head attention, with the modern decoder's options: rotary positions (RoPE), grouped-query
attention, and normalised queries and keys.

Shapes follow the package legend (``mlstep/__init__.py``): B batch, T query positions, S key
positions, H heads, G key/value heads, K head size, D hidden size. A mask is boolean and **True means "may attend"**,
PyTorch's convention for ``F.scaled_dot_product_attention``; it broadcasts against the scores
``(..., T, S)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from mlstep.config import TransformerConfig
from mlstep.tools.checks import check_args, check_floating, check_mask, check_tensor, check_width

__all__ = ["scaled_dot_product_attention", "padding_mask", "causal_mask", "rotate", "MultiHeadAttention"]


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None,
                                 dropout_p: float = 0.0) -> tuple[Tensor, Tensor]:
    """``softmax(q kᵀ / √K) v`` for q ``(..., T, K)``, k ``(..., S, K)``, v ``(..., S, K_v)``.

    Returns ``(out (..., T, K_v), weights (..., T, S))``; the weights are taken before dropout, so
    each row sums to 1. A query whose every key is masked gets zero weights and a zero output
    (PyTorch's kernel returns NaN there).
    """
    check_floating(q=q, k=k, v=v)
    check_args(dropout_p=(dropout_p, "in [0, 1]"))
    if min(q.dim(), k.dim(), v.dim()) < 2 or q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"need q (..., T, K), k (..., S, K), v (..., S, K_v) with at least 2 "
                         f"dimensions, the same last dimension K for q and k and the same number of "
                         f"positions S for k and v; got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T, S)
    if mask is not None:
        check_mask(mask, scores.shape)
        scores = scores.masked_fill(~mask, float("-inf"))
        scores = scores.masked_fill(~mask.any(-1, keepdim=True), 0.0)  # no key at all: zeroed below
    weights = scores.softmax(dim=-1)  # (..., T, S)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)
    out = F.dropout(weights, p=dropout_p) @ v  # (..., T, K_v)
    return out, weights


def padding_mask(attention_mask: Tensor) -> Tensor:
    """``(B, S)`` with 1 = real token → boolean ``(B, 1, 1, S)``: it broadcasts over heads and queries."""
    check_tensor("attention_mask", attention_mask, dims=2, what="(batch, seq_len) with 1 = real token")
    return rearrange(attention_mask.bool(), "B S -> B 1 1 S")


def causal_mask(t: int, s: int | None = None, device: torch.device | str | None = None) -> Tensor:
    """``(T, S)``: query i may attend to keys 0..i. With ``s > t`` the queries are the last ``t`` of
    ``s`` positions (generating with a cache), so the last query sees every key."""
    s = t if s is None else s
    check_args(t=(t, "int > 0"), s=(s, "int > 0"))
    return torch.ones(t, s, dtype=torch.bool, device=device).tril(diagonal=s - t)


def rotate(x: Tensor, positions: Tensor, theta: float = 10000.0) -> Tensor:
    """RoPE: ``x (B, H, T, K)`` with each feature pair (i, i + K/2) turned by the angle
    ``position · θ^(−2i/K)``, for ``positions (T,)`` or ``(B, T)``. A query turned by its position m
    and a key by n have the dot product of the unturned pair turned by m − n: attention sees offsets."""
    check_tensor("x", x, dims=4, floating=True, what="(B, H, T, K)")
    check_tensor("positions", positions, dims=(1, 2), what="(T,) or (B, T)")
    K = x.shape[-1]
    inv_freq = 1.0 / theta ** (torch.arange(0, K, 2, device=x.device, dtype=torch.float) / K)  # (K/2,)
    angles = positions[..., None].float() * inv_freq  # (T, K/2) or (B, T, K/2)
    angles = torch.cat([angles, angles], dim=-1)  # (..., T, K): features i and i + K/2 share an angle
    angles = rearrange(angles, "B T K -> B 1 T K") if angles.dim() == 3 else angles
    x1, x2 = x.chunk(2, dim=-1)  # (B, H, T, K/2) each
    turned = torch.cat([-x2, x1], dim=-1)  # (x1, x2) -> (-x2, x1): a quarter turn of each pair
    return x * angles.cos().to(x.dtype) + turned * angles.sin().to(x.dtype)  # (B, H, T, K)


class MultiHeadAttention(nn.Module):
    """``Concat(head_1, …, head_H) Wᴼ`` with ``head_i = Attention(Q W_iᵠ, K W_iᴷ, V W_iⱽ)``.

    The H per-head projections of width K = D / H sit side by side in one ``(D, D)`` matrix each
    (``q_proj``, ``k_proj``, ``v_proj``), as in ``nn.MultiheadAttention`` and BERT checkpoints.

    It runs PyTorch's fused ``F.scaled_dot_product_attention``, which never stores the ``(T, S)``
    weights. Ask for the weights (``need_weights=True``) and it runs the from-scratch
    :func:`scaled_dot_product_attention` instead: the same numbers (tested), and a path you can
    step through. With ``config.causal`` each query attends to itself and the positions before it.

    The options: ``num_kv_heads`` G < H gives ``k_proj`` and ``v_proj`` G heads, each shared by H / G
    query heads (grouped-query attention: a G / H smaller KV cache); ``qk_norm`` RMS-normalises each
    head's q and k; ``positions="rope"`` rotates q and k by their positions (:func:`rotate`).
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        D = self.hidden_size = config.hidden_size
        K = self.head_size = D // config.num_heads
        G = config.num_kv_heads or config.num_heads  # key/value heads
        self.num_heads, self.dropout, self.causal = config.num_heads, config.dropout, config.causal
        self.q_proj, self.k_proj = nn.Linear(D, D, config.bias), nn.Linear(D, G * K, config.bias)
        self.v_proj, self.out_proj = nn.Linear(D, G * K, config.bias), nn.Linear(D, D, config.bias)
        self.q_norm = nn.RMSNorm(K, eps=config.layer_norm_eps) if config.qk_norm else None
        self.k_norm = nn.RMSNorm(K, eps=config.layer_norm_eps) if config.qk_norm else None
        self.rope_theta = config.rope_theta if config.positions == "rope" else None

    def forward(self, query: Tensor, key: Tensor | None = None, value: Tensor | None = None,
                mask: Tensor | None = None, need_weights: bool = False,
                cache: dict | None = None, positions: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """Attend from ``query (B, T, D)`` to ``key`` and ``value (B, S, D)`` (default: ``query``).

        ``mask`` broadcasts to ``(B, H, T, S)``; a ``(B, T, S)`` mask applies to every head.
        ``cache``, a dict kept between calls, holds the keys and values of earlier positions
        (generation): the new ones are appended and attended to. ``positions (T,)`` or ``(B, T)``: of
        the new tokens, for RoPE (default: those after the cached ones). Returns ``out (B, T, D)``, or
        ``(out, weights (B, H, T, S))`` when ``need_weights``.
        """
        key = query if key is None else key
        value = key if value is None else value
        self._check_inputs(query, key, value)
        q, k, v = self.project(query, key, value)  # (B, H, T, K), (B, G, S, K), (B, G, S, K)
        if self.rope_theta is not None:
            q, k = self.rotate_qk(q, k, positions, cache)  # turned by their positions, before caching
        if cache is not None:
            k, v = self.extend_cache(cache, k, v)  # (B, G, S_cached + S, K) each
        out, weights = self.attend(q, k, v, mask, need_weights)  # (B, H, T, K), (B, H, T, S) or None
        out = self.out_proj(rearrange(out, "B H T K -> B T (H K)"))  # concatenate, then mix: (B, T, D)
        return (out, weights) if need_weights else out

    def _check_inputs(self, query: Tensor, key: Tensor, value: Tensor) -> None:
        for name, x in (("query", query), ("key", key), ("value", value)):
            check_width(name, x, self.hidden_size)
        if key.shape[:2] != value.shape[:2] or key.shape[0] != query.shape[0]:
            raise ValueError(f"batch/length mismatch: query {tuple(query.shape)}, key "
                             f"{tuple(key.shape)}, value {tuple(value.shape)}")

    def project(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Every head's queries ``(B, H, T, K)``, keys and values ``(B, G, S, K)`` (G = H unless
        grouped): one matrix product each, then the last dimension split into heads of width K."""
        q = rearrange(self.q_proj(query), "B T (H K) -> B H T K", K=self.head_size)
        k = rearrange(self.k_proj(key), "B S (G K) -> B G S K", K=self.head_size)
        v = rearrange(self.v_proj(value), "B S (G K) -> B G S K", K=self.head_size)
        if self.q_norm is not None:  # qk_norm: each head's q and k RMS-normalised over K
            q, k = self.q_norm(q), self.k_norm(k)
        return q, k, v

    def rotate_qk(self, q: Tensor, k: Tensor, positions: Tensor | None,
                  cache: dict | None) -> tuple[Tensor, Tensor]:
        """RoPE on ``q (B, H, T, K)`` and the new ``k (B, G, T, K)``; ``positions`` by default count
        on from the cached positions."""
        if positions is None:
            past = cache["k"].shape[2] if cache else 0
            positions = torch.arange(past, past + k.shape[2], device=k.device)  # (T,)
        return rotate(q, positions, self.rope_theta), rotate(k, positions, self.rope_theta)

    @staticmethod
    def extend_cache(cache: dict, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """The KV cache: append these positions' keys and values ``(B, G, S, K)`` to the ones kept in
        ``cache`` from earlier calls, keep the result there, and return it (all that is attended to)."""
        if cache:
            k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)  # (B, G, S, K)
        cache["k"], cache["v"] = k, v
        return k, v

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None,
               need_weights: bool) -> tuple[Tensor, Tensor | None]:
        """``softmax(q kᵀ / √K) v`` for every head: ``(B, H, T, K)``, and the weights ``(B, H, T, S)``
        when ``need_weights`` (the from-scratch path), else None (PyTorch's fused kernel). G < H
        key/value heads are repeated, each to the H / G query heads it serves."""
        if k.shape[1] != q.shape[1]:
            r = q.shape[1] // k.shape[1]  # query heads per key/value head
            k, v = (repeat(x, "B G S K -> B (G r) S K", r=r) for x in (k, v))  # (B, H, S, K) each
        if mask is not None:
            mask = rearrange(mask, "B T S -> B 1 T S") if mask.dim() == 3 else mask
            check_mask(mask, (*q.shape[:-1], k.shape[-2]))
        T, S = q.shape[-2], k.shape[-2]
        fused_causal = self.causal and mask is None and T == S and not need_weights
        if self.causal and not fused_causal:
            causal = causal_mask(T, S, device=q.device)  # (T, S)
            mask = causal if mask is None else mask & causal
        p = self.dropout if self.training else 0.0
        if need_weights:
            return scaled_dot_product_attention(q, k, v, mask, p)  # (B, H, T, K), (B, H, T, S)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=fused_causal)
        return out, None  # (B, H, T, K)

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """A copy of a ``torch.nn.MultiheadAttention`` (it packs W_q, W_k, W_v into one matrix)."""
        if mha.in_proj_bias is None or not mha._qkv_same_embed_dim:
            raise ValueError("only nn.MultiheadAttention with biases and kdim == vdim == embed_dim is supported")
        config = TransformerConfig(hidden_size=mha.embed_dim, num_heads=mha.num_heads, dropout=mha.dropout)
        new = cls(config).to(mha.in_proj_weight)
        with torch.no_grad():
            for proj, w, b in zip((new.q_proj, new.k_proj, new.v_proj), mha.in_proj_weight.chunk(3),
                                  mha.in_proj_bias.chunk(3)):
                proj.weight.copy_(w)
                proj.bias.copy_(b)
            new.out_proj.load_state_dict(mha.out_proj.state_dict())
        return new
