"""Checks of what a user passes in, shared by every public entry point so that they read alike.

Each raises a TypeError or ValueError whose message names the argument, what was expected and
what was given. Internal functions trust their callers and check nothing.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_ids", "check_mask", "check_width", "check_rows", "check_probability"]


def check_ids(name: str, x: Tensor, high: int, bound: str, *, shape: tuple | None = None,
              ignore: int | None = None) -> None:
    """``x`` is an integer tensor (of ``shape``) whose values lie in ``[0, high)``, or equal ``ignore``.

    ``bound`` names ``high`` in the message, e.g. ``"vocab_size"``.
    """
    if not isinstance(x, Tensor) or x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if shape is not None and tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(x.shape)}")
    bad = (x < 0) | (x >= high)
    if ignore is not None:
        bad &= x != ignore
    if bad.any():
        allowed = f"[0, {bound}={high})" + ("" if ignore is None else f" or {ignore}")
        raise ValueError(f"{name} must be in {allowed}, got {sorted(set(x[bad].tolist()))[:5]}")


def check_mask(mask: Tensor, scores_shape: tuple) -> None:
    """An attention mask is boolean (True = may attend) and broadcasts to the scores ``(..., T, S)``."""
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a boolean tensor (True = may attend), got {mask.dtype}; "
                        "convert a 0/1 mask with mask.bool()")
    try:
        torch.broadcast_shapes(mask.shape, scores_shape)
    except RuntimeError:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to the attention "
                         f"scores {tuple(scores_shape)} (..., queries, keys)") from None


def check_width(name: str, x: Tensor, width: int) -> None:
    """``x`` is a batch of sequences of vectors ``(B, T, width)``."""
    if x.dim() != 3 or x.shape[-1] != width:
        raise ValueError(f"{name} must be (batch, positions, hidden_size={width}), got {tuple(x.shape)}")


def check_rows(name: str, attention_mask: Tensor, shape: tuple) -> None:
    """A ``(B, T)`` 0/1 attention mask with at least one real token (1) in every row."""
    if tuple(attention_mask.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} (1 = real token, 0 = padding), "
                         f"got {tuple(attention_mask.shape)}")
    if attention_mask.dtype != torch.bool and ((attention_mask != 0) & (attention_mask != 1)).any():
        raise ValueError(f"{name} must hold only 0 (padding) and 1 (real token)")
    if not attention_mask.bool().any(dim=1).all():
        raise ValueError(f"{name} has a row with no real token (all zeros)")


def check_probability(name: str, p: float, *, closed: bool = False) -> None:
    """``p`` lies in ``[0, 1)``, or in ``[0, 1]`` when ``closed``."""
    if not (0.0 <= p <= 1.0 if closed else 0.0 <= p < 1.0):
        raise ValueError(f"{name} must be in [0, 1{']' if closed else ')'}, got {p!r}")
