"""Checks for chapters 01–02: attention weights, attention, the causal mask, splitting and merging heads.

Shape legend:
    b  batch            h  heads
    n  query positions  s  key/value positions
    d  head dimension   (h * d = d_model)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from einops import rearrange
from torch import Tensor

from mlstep.attention import causal_mask, padding_mask, scaled_dot_product_attention
from mlstep.exercises._core import _Case, _randn, _register, _run_cases, _shape_str

__all__ = [
    "MERGE_HEADS",
    "SPLIT_HEADS",
    "check_attention",
    "check_attention_weights",
    "check_causal_mask",
    "check_merge_heads",
    "check_split_heads",
]


# --- attention -----------------------------------------------------------------------------------

_MSG_UNSCALED = ("looks unscaled: your result matches softmax(q kᵀ), the scores not divided by √d_k "
                 "(divide them by math.sqrt(d_k) before the softmax)")
_MSG_BY_DK = "scaled by d_k instead of √d_k: divide the scores by math.sqrt(d_k), not by d_k"
_MSG_WRONG_D = ("scaled by the square root of the sequence length instead of √d_k: d_k is the LAST "
                "dimension of q and k (q.shape[-1])")
_MSG_AXIS = ("softmax over the wrong axis: each query's row must sum to 1 over the keys "
             "(softmax(dim=-1)); yours normalises over the queries (dim=-2)")
_MSG_IGNORED = ("mask ignored: keys where the mask is False still get weight; fill their scores with "
                "float('-inf') before the softmax, e.g. scores.masked_fill(~mask, float('-inf'))")
_MSG_FILL_ZERO = ("masked scores set to 0 instead of -inf: exp(0) = 1, so masked keys still get weight; "
                  "fill them with float('-inf')")
_MSG_AFTER = ("mask applied after the softmax: zeroing the masked weights without renormalising leaves "
              "rows that no longer sum to 1; fill the masked scores with -inf before the softmax")
_MSG_POLARITY = ("mask polarity inverted: True means 'may attend', but you blocked the keys where the mask "
                 "is True; block where it is False (~mask)")


def _attention_cases(seed: int) -> list[tuple[Tensor, Tensor, Tensor, Tensor | None, str]]:
    """``(q, k, v, mask, mask_label)`` for the attention checks: 2-D, batched, padding mask, causal float64.

    n, s, d_k and d_v differ within each case so that a swapped dimension shows up in the shape, and
    no query has every key masked (PyTorch gives NaN there; mlstep gives zeros; both are fine).
    """
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    lengths = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4])  # 3 sequences, 6 slots
    return [
        (_randn(g, 5, 8), _randn(g, 7, 8), _randn(g, 7, 3), None, "no mask"),
        (_randn(g, 2, 3, 4, 16), _randn(g, 2, 3, 6, 16), _randn(g, 2, 3, 6, 5), None, "no mask"),
        (_randn(g, 3, 2, 5, 8), _randn(g, 3, 2, 6, 8), _randn(g, 3, 2, 6, 4),
         padding_mask(lengths), "padding mask (3, 1, 1, 6)"),
        (_randn(g, 2, 6, 4, dtype=f64), _randn(g, 2, 6, 4, dtype=f64), _randn(g, 2, 6, 3, dtype=f64),
         causal_mask(6), "causal mask (6, 6)"),
    ]


def _attention_label(mask_label: str, **tensors: Tensor) -> str:
    """E.g. ``float64 q (2, 6, 4), k (2, 6, 4), causal mask (6, 6)``."""
    first = next(iter(tensors.values()))
    prefix = "float64 " if first.dtype == torch.float64 else ""
    return prefix + ", ".join(f"{name} {_shape_str(t)}" for name, t in tensors.items()) + f", {mask_label}"


def _softmax_masked(scores: Tensor, mask: Tensor | None, fill: float = float("-inf"), dim: int = -1) -> Tensor:
    if mask is not None:
        scores = scores.masked_fill(~mask, fill)
    return scores.softmax(dim=dim)


def _wrong_weights(q: Tensor, k: Tensor, mask: Tensor | None) -> list[tuple[str, Tensor]]:
    """Attention weights as the typical mistakes compute them (deliberately wrong)."""
    d_k, n, s = q.shape[-1], q.shape[-2], k.shape[-2]
    scores = q @ k.transpose(-2, -1)  # (..., n, s), not yet scaled
    scaled = scores / math.sqrt(d_k)
    wrong = [
        (_MSG_UNSCALED, _softmax_masked(scores, mask)),
        (_MSG_BY_DK, _softmax_masked(scores / d_k, mask)),
        (_MSG_WRONG_D, _softmax_masked(scores / math.sqrt(n), mask)),
        (_MSG_WRONG_D, _softmax_masked(scores / math.sqrt(s), mask)),
        (_MSG_AXIS, _softmax_masked(scaled, mask, dim=-2)),
        (_MSG_AXIS, _softmax_masked(scaled, mask, fill=-1e9, dim=-2)),
    ]
    if mask is not None:
        wrong += [
            (_MSG_IGNORED, scaled.softmax(dim=-1)),
            (_MSG_FILL_ZERO, _softmax_masked(scaled, mask, fill=0.0)),
            (_MSG_AFTER, scaled.softmax(dim=-1).masked_fill(~mask, 0.0)),
            (_MSG_POLARITY, _softmax_masked(scaled, ~mask)),
            (_MSG_POLARITY, _softmax_masked(scaled, ~mask, fill=-1e9)),
        ]
    return wrong


def _batched_hint(case: _Case, err: str) -> str | None:
    """The 2-D case passed but a batched one raised: usually ``k.T``, which reverses ALL dimensions."""
    if case.args[0].dim() > 2 and not err.startswith("NotImplementedError"):
        return "these inputs have batch dimensions; `k.T` only transposes 2-D matrices, use k.transpose(-2, -1)"
    return None


def _diagnose_weights(case: _Case, got: Tensor) -> str | None:
    """Generic symptoms of wrong attention weights, when no known mistake matched."""
    if not torch.isfinite(got).all():
        idx = tuple(int(i) for i in (~torch.isfinite(got)).nonzero()[0])
        return f"NaN or inf in your weights (first at index {idx}); softmax of a row of -inf is NaN"
    sums = got.sum(dim=-1)  # (..., n) every row has at least one allowed key in these cases
    bad = ~torch.isclose(sums, torch.ones_like(sums), atol=1e-4)
    if bad.any():
        idx = tuple(int(i) for i in bad.nonzero()[0])
        return f"rows don't sum to 1: the weights of query {idx} sum to {sums[idx].item():.4g} (softmax over the keys, dim=-1)"
    mask = case.extra.get("mask")
    if mask is not None:
        leak = (got != 0) & ~mask.expand_as(got)
        if leak.any():
            idx = tuple(int(i) for i in leak.nonzero()[0])
            return f"masked keys get nonzero weight: {got[idx].item():.3g} at index {idx} where the mask is False"
    return None


@_register
def check_attention_weights(fn: Callable[..., Any]) -> tuple[bool, str]:
    """Check ``fn(q, k, mask=None) -> weights (..., n, s)`` = softmax(q kᵀ/√d_k) over allowed keys.

    ``mask`` is boolean, True = may attend, broadcastable to ``(..., n, s)``. The reference is
    :func:`mlstep.scaled_dot_product_attention`.

    Returns:
        True if every case matches (a ✅/❌ line is printed either way).
    """
    cases = []
    for q, k, _, mask, mask_label in _attention_cases(seed=101):
        label = _attention_label(mask_label, q=q, k=k)
        expected = scaled_dot_product_attention(q, k, k[..., :1], mask=mask)[1]
        args, names = ((q, k), ("q", "k")) if mask is None else ((q, k, mask), ("q", "k", "mask"))
        cases.append(_Case(args, expected, label, names, tuple(_wrong_weights(q, k, mask)), {"mask": mask}))

    return _run_cases(fn, cases, error_hint=_batched_hint, diagnose=_diagnose_weights)


@_register
def check_attention(fn: Callable[..., Any]) -> tuple[bool, str]:
    """Check ``fn(q, k, v, mask=None) -> out (..., n, d_v)`` = softmax(q kᵀ/√d_k) v.

    ``fn`` may also return ``(out, weights)``; only ``out`` is compared. The reference is
    :func:`mlstep.scaled_dot_product_attention`.

    Returns:
        True if every case matches (a ✅/❌ line is printed either way).
    """
    cases = []
    for q, k, v, mask, mask_label in _attention_cases(seed=202):
        label = _attention_label(mask_label, q=q, k=k, v=v)
        expected = scaled_dot_product_attention(q, k, v, mask=mask)[0]
        wrong = tuple((msg, w @ v) for msg, w in _wrong_weights(q, k, mask))
        args, names = ((q, k, v), ("q", "k", "v")) if mask is None else ((q, k, v, mask), ("q", "k", "v", "mask"))
        cases.append(_Case(args, expected, label, names, wrong, {"mask": mask}))

    def output(result: Any) -> Any:
        if isinstance(result, (tuple, list)):
            if len(result) == 0:
                raise ValueError("your function returned an empty tuple; return out (or (out, weights))")
            return result[0]
        return result

    def shape_hint(case: _Case, shape: tuple) -> str | None:
        q, k, v = case.args[:3]
        if shape == (*q.shape[:-1], k.shape[-2]):
            return "that is the shape of the attention weights; the output is weights @ v (return out first)"
        if shape == (*q.shape[:-1], k.shape[-1]):
            return "that has d_k features; did you multiply the weights by k instead of v?"
        return None

    def diagnose(case: _Case, got: Tensor) -> str | None:
        if not torch.isfinite(got).all():
            idx = tuple(int(i) for i in (~torch.isfinite(got)).nonzero()[0])
            return f"NaN or inf in your output (first at index {idx}); softmax of a row of -inf is NaN"
        return None

    return _run_cases(fn, cases, output=output, shape_hint=shape_hint, error_hint=_batched_hint, diagnose=diagnose)


@_register
def check_causal_mask(fn: Callable[..., Any]) -> tuple[bool, str]:
    """Check ``fn(n) -> (n, n)`` boolean mask, True on and below the diagonal (query i sees keys 0..i).

    The reference is :func:`mlstep.causal_mask`.

    Returns:
        True if every case matches (a ✅/❌ line is printed either way).
    """
    cases = []
    for n in (4, 1, 7):
        ones = torch.ones(n, n, dtype=torch.bool)
        wrong = (
            ("upper triangle: True above the diagonal lets query i see the future keys j > i; "
             "keep the lower triangle (torch.tril)", ones.triu()),
            ("the diagonal is False: each position must be allowed to attend to itself "
             "(torch.tril with diagonal=0)", ones.tril(diagonal=-1)),
            ("mask polarity inverted: True must mark the keys a query MAY attend to (on and below the "
             "diagonal); yours marks the future keys", ones.triu(diagonal=1)),
            ("nothing is masked: query i must not see keys j > i", ones),
        )
        cases.append(_Case((n,), causal_mask(n), f"n = {n}", (), wrong))
    return _run_cases(fn, cases)


# --- heads ---------------------------------------------------------------------------------------
# The layout of mlstep.MultiHeadAttention (and nn.MultiheadAttention, BERT checkpoints): head i owns
# the contiguous features [i*d:(i+1)*d]. tests/test_exercises.py checks these two patterns against
# MultiHeadAttention itself, so they cannot drift apart.
SPLIT_HEADS = "b n (h d) -> b h n d"
MERGE_HEADS = "b h n d -> b n (h d)"

_MSG_SPLIT_VIEW = ("x.view(b, h, n, d) without transposing mixes positions into the heads: split the "
                   "features first, x.view(b, n, h, d), then swap n and h with .transpose(1, 2)")
_MSG_SPLIT_ORDER = ("heads take interleaved features ((d h) order): head i must take the contiguous "
                    "features [i*d:(i+1)*d], i.e. view(b, n, h, d), not view(b, n, d, h)")
_MSG_MERGE_VIEW = ("heads merged in the wrong order: reshaping (b, h, n, d) straight to (b, n, h*d) mixes "
                   "heads and positions; .transpose(1, 2) first to (b, n, h, d), then reshape")
_MSG_MERGE_ORDER = ("heads merged in the wrong order ((d h) interleaved): the features must be head 0's d "
                    "features, then head 1's, ... ((h d) order, the inverse of split_heads)")


@_register
def check_split_heads(fn: Callable[..., Any]) -> tuple[bool, str]:
    """Check ``fn(x (b, n, h*d), num_heads) -> (b, h, n, d)``, head i taking features [i*d:(i+1)*d].

    Returns:
        True if every case matches (a ✅/❌ line is printed either way).
    """
    g = torch.Generator().manual_seed(303)
    cases = []
    for (b, n, h, d), dtype in (((2, 5, 3, 4), torch.float32), ((3, 6, 4, 2), torch.float32),
                                ((1, 7, 5, 6), torch.float64)):
        x = _randn(g, b, n, h * d, dtype=dtype)
        wrong = (
            (_MSG_SPLIT_VIEW, x.reshape(b, h, n, d)),
            (_MSG_SPLIT_ORDER, rearrange(x, "b n (d h) -> b h n d", h=h)),
        )
        label = f"{'float64 ' if dtype == torch.float64 else ''}x {_shape_str(x)}, num_heads = {h}"
        cases.append(_Case((x, h), rearrange(x, SPLIT_HEADS, h=h), label, ("x",), wrong))

    def shape_hint(case: _Case, shape: tuple) -> str | None:
        x, h = case.args
        b, n, f = x.shape
        if shape == (b, n, h, f // h):
            return "the heads are split but still after the positions; .transpose(1, 2) to (b, h, n, d)"
        return None

    return _run_cases(fn, cases, shape_hint=shape_hint)


@_register
def check_merge_heads(fn: Callable[..., Any]) -> tuple[bool, str]:
    """Check ``fn(x (b, h, n, d)) -> (b, n, h*d)``, the inverse of ``split_heads``.

    Returns:
        True if every case matches (a ✅/❌ line is printed either way).
    """
    g = torch.Generator().manual_seed(404)
    cases = []
    for (b, h, n, d), dtype in (((2, 3, 5, 4), torch.float32), ((3, 4, 6, 2), torch.float32),
                                ((1, 5, 7, 6), torch.float64)):
        x = _randn(g, b, h, n, d, dtype=dtype)
        wrong = (
            (_MSG_MERGE_VIEW, x.reshape(b, n, h * d)),
            (_MSG_MERGE_ORDER, rearrange(x, "b h n d -> b n (d h)")),
        )
        label = f"{'float64 ' if dtype == torch.float64 else ''}x {_shape_str(x)}"
        cases.append(_Case((x,), rearrange(x, MERGE_HEADS), label, ("x",), wrong))

    def shape_hint(case: _Case, shape: tuple) -> str | None:
        b, h, n, d = case.args[0].shape
        if shape == (b, n, h, d):
            return "the heads are moved after the positions but not yet concatenated; reshape to (b, n, h*d)"
        if shape == (b, h, n * d):
            return "that flattens positions with features; move the heads after the positions first (.transpose(1, 2))"
        return None

    def error_hint(case: _Case, err: str) -> str | None:
        if "view" in err and ("stride" in err or "contiguous" in err):
            return ".view needs a contiguous tensor after .transpose; use .reshape (or .contiguous().view)"
        return None

    return _run_cases(fn, cases, shape_hint=shape_hint, error_hint=error_hint)
