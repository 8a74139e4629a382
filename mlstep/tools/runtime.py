"""What every stage shares: devices, precision, seeds, threads, distributed setup, safe file writes.

Device and mixed precision are decided here and nowhere else; the training loop asks.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "IGNORE_INDEX", "get_device", "set_seed", "set_threads", "count_parameters", "autocast",
    "autocast_dtype", "unwrap_model", "to_device", "setup_distributed", "is_main_process",
    "atomic_write", "hub_available", "eval_mode",
]

IGNORE_INDEX = -100  # the label of positions no loss is computed on (F.cross_entropy's ignore_index)


def get_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then the CPU; any other name is checked to exist."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)  # raises on a malformed name
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"device {device!r} requested but Apple MPS is not available here")
    return dev


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators (every device) in one call."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(n: int | None = None) -> int:
    """Pin PyTorch's CPU threads: ``n``, else ``$MLSTEP_THREADS``, else 1. Returns the number.

    The course's models are small: a second thread gains ~1.3x on an idle machine, while threads
    that wait for a busy core (Jupyter, a browser) can make a step ten times slower. One thread
    also gives the same numbers on every machine.
    """
    n = int(os.environ.get("MLSTEP_THREADS", "1")) if n is None else n
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    torch.set_num_threads(n)
    return n


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode (no dropout) inside the block, and back in the mode it was in after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (a tied weight counts once: ``.parameters()`` deduplicates)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype:
    """``"auto"``: bf16 on a CUDA GPU that has it, float32 elsewhere; or ``"bf16"`` / ``"fp32"``."""
    if precision == "auto":
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16 else torch.float32
    return {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]


def autocast(device: torch.device | str, precision: str = "auto") -> contextlib.AbstractContextManager:
    """The mixed-precision context for ``device`` (none at float32: CPUs train in float32)."""
    device = torch.device(device)
    dtype = autocast_dtype(precision, device)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel, DataParallel or ``torch.compile``."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile's wrapper
            model = model._orig_mod
        else:
            return model


def to_device(batch: Any, device: torch.device | str) -> Any:
    """Every tensor in a (nested) dict / list / tuple moved to ``device``; the rest left alone."""
    if isinstance(batch, torch.Tensor):
        # non_blocking only host -> GPU: it overlaps the copy with compute when memory is pinned
        return batch.to(device, non_blocking=torch.device(device).type == "cuda")
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a named tuple
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a run: rank 0 of 1 unless launched by ``torchrun``."""

    rank: int  # global rank; 0 is the main process (it alone prints and saves)
    world_size: int  # number of processes
    device: torch.device  # the device this process trains on


def setup_distributed(device: str | torch.device = "auto") -> DistInfo:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE > 1``): NCCL with one GPU per
    process (``LOCAL_RANK``), gloo on CPUs. Idempotent; a single process gets rank 0 of 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 and not dist.is_initialized():
        return DistInfo(0, 1, get_device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and str(device) in ("auto", "cuda")
    dev = torch.device("cuda", local_rank) if use_cuda else get_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), dev)


def is_main_process() -> bool:
    """True in a single-process run and on rank 0 of a distributed one."""
    return not dist.is_initialized() or dist.get_rank() == 0


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one.

    The bytes go to a temporary file in the same folder (same filesystem, so the rename is
    atomic), are flushed to disk, made world-readable like any new file, then renamed over ``path``.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes the file private
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def hub_available(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """True when the Hugging Face Hub can be reached (and ``HF_HUB_OFFLINE`` is not set).

    Asking first takes at most ``timeout`` seconds offline, where ``from_pretrained`` would retry
    for half a minute before giving up.
    """
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False
