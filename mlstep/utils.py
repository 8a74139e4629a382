"""Small helpers every chapter needs: device choice, seeding, autocast, parameter counts."""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch
from torch import nn

__all__ = ["get_device", "set_seed", "count_parameters", "autocast", "set_threads"]


def get_device(device: str | torch.device = "auto") -> torch.device:
    """The device to run on: ``"auto"`` picks CUDA, then Apple MPS, then the CPU.

    Any other value (``"cpu"``, ``"cuda:1"``, a ``torch.device``) is returned as a device, after
    checking that it exists, so a typo fails here rather than deep inside a training step.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)  # raises on a malformed string
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"device {device!r} requested but Apple MPS is not available here")
    return dev


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators (all devices) in one call."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def set_threads(n: int | None = None) -> int:
    """Pin PyTorch's CPU thread count and return it.

    ``n`` defaults to the ``MLSTEP_THREADS`` environment variable, else 1. The course's models are
    small: a second thread gains ~1.3x on an idle machine, but threads that must wait for a busy
    core (Jupyter, a browser, another run) can make a training step ten times slower. One thread
    also gives the same numbers on every machine, whatever its core count. Set
    ``MLSTEP_THREADS=2`` (or more) on an idle multi-core machine for a little more speed.
    """
    if n is None:
        n = int(os.environ.get("MLSTEP_THREADS", "1"))
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    torch.set_num_threads(n)
    return n


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters in ``model`` (tied weights counted once: ``.parameters()`` deduplicates)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def autocast(device: torch.device | str, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA, nothing elsewhere: the one place mixed precision is decided.

    CPU training stays in float32 (bf16 matmuls on most laptop CPUs are slower, not faster).
    """
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if enabled and dev.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
