"""Checks for the chapters' exercises: run a learner's function against mlstep's reference.

Each ``check_*(fn)`` calls the learner's function on a few fresh random inputs (seeded from its own
``torch.Generator``, so the global RNG of the notebook is left alone), compares the result with the
reference implementation in mlstep, prints **one** line and returns True/False::

    ✅ check_attention_weights: passed (4 cases)
    ❌ check_attention_weights: looks unscaled: ... (case 1/4: q (5, 8), k (7, 8))

A check never raises because of the learner's code: an exception inside ``fn`` (the student
edition's ``NotImplementedError`` included) is reported as a failure. When the plain comparison
fails, the output is compared with the typical wrong answers (no √d_k, mask ignored, heads merged
in the wrong order, ...) so the message can say *what* is wrong, not only that something is.

If the environment variable ``MLSTEP_GRADE_REPORT`` names a file, every check also appends one
JSON line ``{"check": name, "passed": bool, "message": str}`` to it (``python -m mlstep.teaching
grade`` reads them).

Adding a check: build a list of :class:`_Case` (inputs, the reference output, the outputs of known
wrong variants with a diagnosis each) and decorate a function returning ``_run_cases(...)`` with
``@_register``; it then appears in :data:`CHECKS`.

Shape legend:
    b  batch            h  heads
    n  query positions  s  key/value positions
    d  head dimension   (h * d = d_model)
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from einops import rearrange
from torch import Tensor

from mlstep.attention import causal_mask, padding_mask, scaled_dot_product_attention

__all__ = [
    "CHECKS",
    "REPORT_ENV",
    "check_attention_weights",
    "check_attention",
    "check_causal_mask",
    "check_split_heads",
    "check_merge_heads",
]

REPORT_ENV = "MLSTEP_GRADE_REPORT"
# name -> check function; every check registered with @_register (the grader lists these).
CHECKS: dict[str, Callable[[Callable[..., Any]], bool]] = {}

# float32 leaves room for a different order of operations (q/√d before the matmul, a hand-written
# softmax); float64 cases are compared tightly.
_TOL = {torch.float32: dict(atol=1e-5, rtol=1e-4), torch.float64: dict(atol=1e-9, rtol=1e-7)}
_MAX_ERROR_CHARS = 300


# --- reporting ------------------------------------------------------------------------------------

def _report(name: str, passed: bool, message: str) -> bool:
    """Print the one-line verdict, append it to the grade report if one is requested, return it."""
    print(f"{'✅' if passed else '❌'} {name}: {message}")
    path = os.environ.get(REPORT_ENV)
    if path:
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"check": name, "passed": passed, "message": message},
                                   ensure_ascii=False) + "\n")
        except OSError as e:  # a grading problem must not look like the learner's mistake
            print(f"(could not write the grade report {path!r}: {e})", file=sys.stderr)
    return passed


def _register(check: Callable[[Callable[..., Any]], tuple[bool, str]]) -> Callable[..., bool]:
    """Turn ``check(fn) -> (passed, message)`` into a public, registered ``check_*(fn) -> bool``."""
    name = check.__name__

    @functools.wraps(check)
    def wrapper(fn: Callable[..., Any]) -> bool:
        if not callable(fn):
            return _report(name, False, f"expected your function, got {type(fn).__name__} "
                                        f"(pass the function itself, without calling it)")
        try:
            passed, message = check(fn)
        except Exception as e:  # a bug in the check itself: still one line, never a traceback
            passed, message = False, f"internal error in the check ({type(e).__name__}: {e})"
        return _report(name, passed, message)

    CHECKS[name] = wrapper
    return wrapper


# --- comparing one case ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Case:
    args: tuple                    # positional arguments for the learner's function
    expected: Tensor               # the reference output
    label: str                     # how the case is described in messages
    arg_names: tuple[str, ...] = ()                    # names of args, to report in-place changes
    wrong: tuple[tuple[str, Tensor], ...] = ()         # (diagnosis, output of a typical mistake)
    extra: dict = field(default_factory=dict)          # whatever the check's diagnose() needs


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."


def _fmt(x: float | bool) -> str:
    return str(x) if isinstance(x, bool) else f"{x:.4g}"


def _same(a: Tensor, b: Tensor) -> bool:
    """Equal shape and dtype, and values equal (bool) or close (float, NaN == NaN)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype == torch.bool:
        return bool(torch.equal(a, b))
    return bool(torch.isclose(a, b, equal_nan=True, **_TOL.get(a.dtype, _TOL[torch.float32])).all())


def _value_diff(expected: Tensor, got: Tensor) -> str:
    """Where the values first differ, and by how much."""
    if expected.dtype == torch.bool:
        bad = got != expected
    else:
        bad = ~torch.isclose(got, expected, equal_nan=True, **_TOL[expected.dtype])
    idx = tuple(int(i) for i in bad.nonzero()[0])
    msg = f"values differ at index {idx}: expected {_fmt(expected[idx].item())}, got {_fmt(got[idx].item())}"
    if expected.dtype != torch.bool:
        diff = (got - expected).abs().nan_to_num(nan=float("inf")).max().item()
        msg += f" (max abs diff {diff:.3g}; {int(bad.sum())} of {bad.numel()} values differ)"
    else:
        msg += f" ({int(bad.sum())} of {bad.numel()} values differ)"
    return msg


def _run_cases(
    fn: Callable[..., Any],
    cases: Sequence[_Case],
    *,
    output: Callable[[Any], Any] = lambda r: r,
    shape_hint: Callable[[_Case, tuple], str | None] = lambda case, shape: None,
    error_hint: Callable[[_Case, str], str | None] = lambda case, err: None,
    diagnose: Callable[[_Case, Tensor], str | None] = lambda case, got: None,
) -> tuple[bool, str]:
    """Run ``fn`` on every case; stop at the first failure with the most specific message.

    Args:
        fn: the learner's function.
        cases: inputs, reference output and known wrong variants.
        output: picks the tensor to compare out of ``fn``'s return value (e.g. ``out`` from
            ``(out, weights)``).
        shape_hint: extra words for a wrong shape (e.g. "did you return the weights?").
        error_hint: extra words for an exception (e.g. "`.T` only works on 2-D tensors").
        diagnose: generic symptoms checked after the wrong variants (rows don't sum to 1, ...).

    Returns:
        ``(passed, message)``.
    """
    n = len(cases)
    for i, case in enumerate(cases, start=1):
        where = f"(case {i}/{n}: {case.label})"
        # The learner gets copies, so an in-place edit of an input cannot change the reference.
        args = tuple(a.clone() if isinstance(a, Tensor) else a for a in case.args)
        try:
            result = fn(*args)
        except Exception as e:
            err = f"{type(e).__name__}: {_one_line(e)}"
            hint = error_hint(case, err)
            return False, f"your function raised {err} {where}" + (f" — hint: {hint}" if hint else "")
        try:
            got = output(result)
        except Exception as e:
            return False, f"{_one_line(e)} {where}"
        if not isinstance(got, Tensor):
            return False, f"not a tensor: your function returned {type(got).__name__}, expected a torch.Tensor {where}"
        # arg_names may be shorter than args (only tensors are named)
        for name, before, after in zip(case.arg_names, case.args, args, strict=False):
            if isinstance(before, Tensor) and not torch.equal(before, after):
                return False, (f"your function changed its input `{name}` in place (e.g. `{name} /= ...` or "
                               f"a method ending in `_`); compute a new tensor instead {where}")
        expected = case.expected
        if got.shape != expected.shape:
            hint = shape_hint(case, tuple(got.shape))
            return False, (f"wrong output shape: expected {tuple(expected.shape)}, got {tuple(got.shape)}"
                           + (f" — {hint}" if hint else "") + f" {where}")
        if got.dtype != expected.dtype:
            why = ("a mask must be boolean (True = may attend); use dtype=torch.bool or `.bool()`"
                   if expected.dtype == torch.bool else "keep the dtype of the inputs")
            return False, f"wrong dtype: expected {expected.dtype}, got {got.dtype} — {why} {where}"
        got = got.detach().cpu()
        if _same(got, expected):
            continue
        for diagnosis, wrong in case.wrong:
            if _same(got, wrong):
                return False, f"{diagnosis} {where}"
        symptom = diagnose(case, got)
        return False, f"{symptom or _value_diff(expected, got)} {where}"
    return True, f"passed ({n} case{'s' if n != 1 else ''})"


def _randn(g: torch.Generator, *shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.randn(*shape, generator=g, dtype=dtype)


def _shape_str(x: Tensor) -> str:
    return str(tuple(x.shape))


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
