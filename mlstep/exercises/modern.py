"""Checks for chapter 12: rotary positions applied to queries and keys, RMSNorm, and an experiment
on how much of a query-key match RoPE keeps as the two move apart.

The references are :func:`mlstep.attention.rotate` (the half-split convention of Llama and
Hugging Face: feature i pairs with feature i + K/2) and ``torch.nn.functional.rms_norm`` (what
``nn.RMSNorm`` computes). The typical mistakes are named: pairs taken as neighbours (2i, 2i + 1),
the wrong frequency exponent, the turn the wrong way round, values rotated too, the key left
unturned; for RMSNorm the mean subtracted (that is LayerNorm), the mean instead of the mean
square, eps left out or outside the root, the gain forgotten.

Shape legend (the package's): B batch, H heads, T positions, K head size, D features.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mlstep.attention import rotate
from mlstep.exercises._core import _Case, _randn, _register, _run_cases, _shape_str
from mlstep.exercises.experiments import _Experiment, _run_experiment

__all__ = ["check_rope", "check_rms_norm", "check_rope_match_at"]


# --- rotary positions on queries and keys ------------------------------------------------------------

def _turn(x: Tensor, positions: Tensor, theta: float, *, exponent: float = 2.0, interleaved: bool = False,
          sign: float = 1.0) -> Tensor:
    """RoPE as a typical mistake writes it (the defaults are right: it equals :func:`rotate`)."""
    K = x.shape[-1]
    inv_freq = theta ** (-exponent * torch.arange(K // 2, dtype=torch.float64) / K)  # (K/2,)
    angles = (positions[:, None].double() * inv_freq * sign).to(x.dtype)  # (T, K/2)
    cos, sin = angles.cos(), angles.sin()
    if interleaved:
        x1, x2 = x[..., 0::2], x[..., 1::2]  # (B, H, T, K/2): neighbours paired
        return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
    x1, x2 = x.chunk(2, dim=-1)  # (B, H, T, K/2): feature i with feature i + K/2
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def _wrong_ropes(q: Tensor, k: Tensor, v: Tensor, positions: Tensor, theta: float) -> list[tuple[str, Tensor]]:
    def qkv(turn: Callable[[Tensor], Tensor], on_v: bool = False, on_k: bool = True) -> Tensor:
        return torch.stack([turn(q), turn(k) if on_k else k, turn(v) if on_v else v])

    right = lambda x: rotate(x, positions, theta)  # noqa: E731
    return [
        ("the values are rotated too: RoPE turns only the queries and keys (their dot product is what must "
         "see the offset); the values pass through unchanged", qkv(right, on_v=True)),
        ("the keys are not rotated: turn q AND k, each by its own position, so that q·k sees m - n",
         qkv(right, on_k=False)),
        ("the pairs are neighbours (2i, 2i + 1): mlstep, Llama and Hugging Face pair feature i with feature "
         "i + K/2 (x.chunk(2, dim=-1))", qkv(lambda x: _turn(x, positions, theta, interleaved=True))),
        ("the frequency exponent is off: pair i turns by position · θ^(-2i/K), i = 0 … K/2 - 1",
         qkv(lambda x: _turn(x, positions, theta, exponent=1.0))),
        ("the turn goes the wrong way: (x1, x2) -> (x1 cos - x2 sin, x1 sin + x2 cos)",
         qkv(lambda x: _turn(x, positions, theta, sign=-1.0))),
        ("the positions are not used: each position p turns by the angle p · θ^(-2i/K)",
         torch.stack([q, k, v])),
    ]


@_register
def check_rope(fn: Callable[..., Any]) -> tuple[bool, str]:
    """Check ``fn(q, k, v, positions, theta) -> (q, k, v)``: the three as attention should use them
    with rotary positions, for q, k, v ``(B, H, T, K)`` and ``positions (T,)``.

    Cases: positions 0 … T - 1, positions further on (as generation with a cache sees them), θ = 500.
    (float32 only: :func:`~mlstep.attention.rotate` computes its angles in float32.)
    """
    g = torch.Generator().manual_seed(1212)
    cases = []
    for B, H, T, K, start, theta in ((2, 3, 5, 8, 0, 1e4), (1, 2, 4, 16, 37, 1e4), (2, 2, 6, 8, 3, 500.0),
                                     (1, 4, 3, 4, 11, 1e4)):
        q, k, v = (_randn(g, B, H, T, K) for _ in range(3))  # (B, H, T, K) each
        positions = torch.arange(start, start + T)  # (T,)
        expected = torch.stack([rotate(q, positions, theta), rotate(k, positions, theta), v])  # (3, B, H, T, K)
        label = f"q {_shape_str(q)}, positions {start}…{start + T - 1}, θ {theta:g}"
        cases.append(_Case((q, k, v, positions, theta), expected, label, ("q", "k", "v", "positions"),
                           tuple(_wrong_ropes(q, k, v, positions, theta))))

    def output(result: Any) -> Tensor:
        if not isinstance(result, (tuple, list)) or len(result) != 3:
            raise ValueError("return three tensors, (q, k, v)")
        return torch.stack(list(result))

    return _run_cases(fn, cases, output=output)


# --- RMSNorm -----------------------------------------------------------------------------------------

def _wrong_norms(x: Tensor, weight: Tensor, eps: float) -> list[tuple[str, Tensor]]:
    ms = x.pow(2).mean(-1, keepdim=True)  # (..., 1)
    centred = x - x.mean(-1, keepdim=True)
    return [
        ("the mean is subtracted: that is LayerNorm (without its bias); RMSNorm divides x itself by "
         "√(mean(x²) + eps)", centred / (centred.pow(2).mean(-1, keepdim=True) + eps).sqrt() * weight),
        ("divided by the mean of |x|, not the root of the mean SQUARE: √(mean(x²) + eps)",
         x / (x.abs().mean(-1, keepdim=True) + eps) * weight),
        ("the square root is missing: divide by √(mean(x²) + eps), not by mean(x²) + eps", x / (ms + eps) * weight),
        ("eps is missing: √(mean(x²) + eps) keeps a near-zero row finite", x / ms.sqrt() * weight),
        ("eps is outside the root: √(mean(x²) + eps), not √mean(x²) + eps", x / (ms.sqrt() + eps) * weight),
        ("normalised over the wrong dimension: each position's D features, dim=-1",
         x / (x.pow(2).mean(0, keepdim=True) + eps).sqrt() * weight),
        ("the gain is not applied: multiply by weight (D,) at the end", x / (ms + eps).sqrt()),
    ]


@_register
def check_rms_norm(fn: Callable[..., Any]) -> tuple[bool, str]:
    """Check ``fn(x, weight, eps) -> x / √(mean(x²) + eps) · weight`` over the last dimension of
    ``x (..., D)``, ``weight (D,)``. The reference is ``F.rms_norm`` (``nn.RMSNorm``).

    Cases: (B, T, D) activations with a nonzero mean, a row of tiny values (where eps matters), float64.
    """
    g = torch.Generator().manual_seed(1213)
    cases = []
    for shape, scale, eps, dtype in (((2, 3, 8), 1.0, 1e-6, torch.float32), ((4, 6), 0.01, 1e-3, torch.float32),
                                     ((3, 5, 16), 3.0, 1e-5, torch.float64)):
        x = _randn(g, *shape, dtype=dtype) * scale + 0.5 * scale  # a mean away from 0, so centring shows
        weight = 0.5 + torch.rand(shape[-1], generator=g, dtype=dtype)  # (D,)
        label = f"{'float64 ' if dtype == torch.float64 else ''}x {_shape_str(x)} of scale {scale:g}, eps {eps:g}"
        cases.append(_Case((x, weight, eps), F.rms_norm(x, (shape[-1],), weight, eps), label, ("x", "weight"),
                           tuple(_wrong_norms(x, weight, eps))))
    return _run_cases(fn, cases)


# --- an experiment: how much of a match does RoPE keep at a distance? ------------------------------------

def _rope_match(head_size: int, distance: int, n: int, generator: torch.Generator, *, exponent: float = 2.0,
                same_position: bool = False, normalise: bool = True) -> float:
    """The mean over ``n`` random vectors x of q·k / x·x, with q = x turned to ``distance``, k = x at 0."""
    x = torch.randn(n, 1, 1, head_size, generator=generator, dtype=torch.float64)  # (n, H=1, T=1, K)
    q = _turn(x, torch.tensor([distance]), 1e4, exponent=exponent)
    k = q if same_position else x  # a key at position 0 is not turned
    score = (q * k).sum(-1)  # (n, 1, 1)
    return (score / (x * x).sum(-1) if normalise else score).mean().item()


def _match_case(distance: int) -> Callable[[], tuple]:
    return lambda: (16, distance, 4000, torch.Generator().manual_seed(distance))


_MATCH = _Experiment(
    cases=tuple((_match_case(d), f"K = 16, distance {d}") for d in (1, 16, 64, 1000)),
    reference=_rope_match,
    variants=(
        ("that is 1 at every distance: the key must sit at position 0 and the query at `distance` (turning "
         "both to the same position changes nothing, RoPE sees only the offset)",
         lambda *a: _rope_match(*a, same_position=True)),
        ("the scores are not divided by x·x: return the share of the distance-0 score that is left",
         lambda *a: _rope_match(*a, normalise=False)),
        ("the frequencies are off: pair i turns by distance · 10000^(-2i/K)", lambda *a: _rope_match(*a, exponent=1.0)),
    ),
    tolerance=0.02, key=3, stated=(0.15, 0.25),
    lesson="the match fades with distance, slowly and not steadily (about 0.53 at 16 positions, 0.61 at 64): "
           "the fast pairs spin to angles that average out, while the slowest pair turns by less than a "
           "radian over 1,000 positions, so a query can still find matching content far away",
)


@_register
def check_rope_match_at(fn: Callable[..., Any], prediction: Any = None) -> tuple[bool, str]:
    """``fn(head_size, distance, n, generator)``: the mean share of q·k left when x is turned to ``distance``."""
    return _run_experiment(fn, _MATCH, prediction)
