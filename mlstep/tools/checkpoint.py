"""Checkpoints that are written atomically, contain no code, and resume a run exactly.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python values (dicts,
lists, ints, floats, strings, None), so it loads with ``torch.load(path, weights_only=True)``:
opening a checkpoint can never run code. It is written to a temporary file in the same folder
and then renamed over the old one (``os.replace`` is atomic on POSIX and Windows), so a crash or
Ctrl-C in the middle of a save leaves the previous checkpoint intact, never a half-written file.

What a checkpoint holds (keys of the saved dict)::

    format     "mlstep-checkpoint/1"
    step       optimizer steps completed
    model      model.state_dict() (unwrapped from DistributedDataParallel)
    optimizer  optimizer.state_dict()            (optional)
    scheduler  lr scheduler state_dict()          (optional)
    rng        python / numpy / torch (and CUDA) generator states, as tensors
    history    the run's History as plain lists and numbers (optional)
    extra      anything else the caller stores (the training loop: its data position, its
               running means and its config)

The data position is what makes a resumed run see the same batches: :class:`ResumableBatches`
cycles through any iterable of batches and records, per epoch, the RNG states the epoch started
from, so resuming can rebuild the same shuffled order and skip the batches already used.
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from mlstep.tools.runtime import atomic_write, unwrap_model

__all__ = [
    "save_tensors",
    "save_checkpoint",
    "load_checkpoint",
    "check_state_dict",
    "rng_state",
    "set_rng_state",
    "ResumableBatches",
]

FORMAT = "mlstep-checkpoint/1"
_END = object()  # marks an exhausted iterator (a batch may be anything, even None)


# --- random generator states ----------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Every global random generator's state, as tensors and numbers (``weights_only``-loadable).

    Covers Python's ``random``, NumPy's legacy global generator, PyTorch's CPU generator and, when
    CUDA is already in use, every CUDA device's generator (dropout on GPU draws from those).
    """
    version, internal, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {
            "version": version,
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss": gauss,
        },
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    # Only when CUDA is initialised: asking for the state would otherwise start CUDA for nothing.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            npy["keys"].numpy().astype(np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # A checkpoint from a machine with more GPUs restores the devices this one has.
        for i, s in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)


# --- saving -------------------------------------------------------------------------------------


def save_tensors(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)``, written atomically (a crash leaves the old file or the new one)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, buffer.getvalue())


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    step: int = 0,
    history: Mapping[str, Any] | None = None,
    *,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write a training checkpoint atomically (see the module docstring for its contents).

    Args:
        path: file to write; its folder is created if needed.
        model: the model (a DDP-wrapped model is unwrapped, so the keys have no ``module.`` prefix).
        optimizer, scheduler: saved through their ``state_dict()`` when given.
        step: optimizer steps completed.
        history: plain lists and numbers (the loop stores ``dataclasses.asdict(History)``).
        extra: more plain values or tensors to store under ``"extra"``.

    The RNG states are taken at the moment of the call, so call it at the end of a step.
    """
    state: dict[str, Any] = {
        "format": FORMAT,
        "step": int(step),
        "model": unwrap_model(model).state_dict(),
        "rng": rng_state(),
    }
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    if history is not None:
        state["history"] = dict(history)
    if extra is not None:
        state["extra"] = dict(extra)
    save_tensors(state, path)


# --- loading ------------------------------------------------------------------------------------


def check_state_dict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], limit: int = 10
) -> None:
    """Raise ValueError naming every missing key, unexpected key and shape mismatch.

    PyTorch's own ``load_state_dict`` error is long and mixes these; a learner who loads a
    checkpoint from a model of another config needs to see *which* sizes differ.
    """
    own = unwrap_model(model).state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return

    def listed(title: str, items: list[str]) -> str:
        more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
        return f"\n  {title} ({len(items)}): " + ", ".join(items[:limit]) + more

    msg = "checkpoint does not match the model (was it saved from a model of another config?)"
    if shapes:
        msg += listed("shape mismatches", shapes)
    if missing:
        msg += listed("missing in checkpoint", missing)
    if unexpected:
        msg += listed("unexpected in checkpoint", unexpected)
    raise ValueError(msg)


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    *,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)`` and restore the given objects.

    Args:
        path: a file written by :func:`save_checkpoint`.
        model: if given, its weights are replaced (after :func:`check_state_dict`, so a model of
            another config fails with the mismatched keys and shapes named).
        optimizer, scheduler: if given, their states are restored.
        map_location: where tensors are loaded first (``load_state_dict`` then copies them to the
            parameters' own device).

    Returns:
        The whole checkpoint dict (``step``, ``history``, ``rng``, ``extra``, ...). RNG states are
        *not* restored here; call :func:`set_rng_state` with ``ckpt["rng"]`` for that.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not an mlstep checkpoint (expected format {FORMAT!r})")
    if model is not None:
        check_state_dict(model, ckpt["model"])
        unwrap_model(model).load_state_dict(ckpt["model"])
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is None:
            continue
        if name not in ckpt:
            raise ValueError(f"checkpoint {path!r} has no {name} state to restore")
        obj.load_state_dict(ckpt[name])
    return ckpt


# --- data: cycle through epochs, and come back to the same place on resume -----------------------


def _samplers(data: Any) -> list[Any]:
    """The sampler objects of a DataLoader (its sampler and its batch sampler's), if any."""
    found = [
        getattr(data, "sampler", None),
        getattr(getattr(data, "batch_sampler", None), "sampler", None),
    ]
    return [s for i, s in enumerate(found) if s is not None and all(s is not t for t in found[:i])]


def _data_generators(data: Any) -> list[torch.Generator]:
    """The torch.Generators a DataLoader draws its order from (its own and its samplers')."""
    found: list[torch.Generator] = []
    for owner in (data, *_samplers(data)):
        g = getattr(owner, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not h for h in found):
            found.append(g)
    return found


class ResumableBatches:
    """Cycles through ``data`` forever and can come back to the same place after a restart.

    It records (epoch, batches taken in this epoch) and the RNG states the epoch began with: the
    global ones and the DataLoader's / sampler's own ``torch.Generator``. :meth:`restore` sets
    those states, starts the epoch again (so a shuffled DataLoader, seeded or not, draws the same
    order), skips the batches already used, then sets the RNG states of the moment the checkpoint
    was taken. Skipping reads the batches (and runs ``collate_fn``), so it costs up to one epoch
    of data loading. Not exact for ``persistent_workers=True`` with random worker-side
    augmentation, nor for generators of your own that the loop cannot see.

    Args:
        data: a re-iterable of batches (a list, a Dataset, a DataLoader). A sampler with
            ``set_epoch`` (DistributedSampler) is told the epoch before each pass.
    """

    def __init__(self, data: Iterable) -> None:
        self.data, self.epoch, self.index, self.it = data, 0, 0, None
        self.generators = _data_generators(data)
        self.epoch_rng: dict[str, Any] = {}

    def _begin_epoch(self) -> None:
        for sampler in _samplers(self.data):
            if hasattr(sampler, "set_epoch"):  # DistributedSampler reshuffles only when told
                sampler.set_epoch(self.epoch)
        generators = [g.get_state() for g in self.generators]
        self.epoch_rng = {"global": rng_state(), "generators": generators}
        self.it, self.index = iter(self.data), 0

    def next(self) -> Any:
        """The next batch, starting a new epoch when the data is exhausted."""
        if self.it is None:
            self._begin_epoch()
        try:
            batch = next(self.it)
        except StopIteration:
            if self.index == 0:
                raise self._empty() from None
            self.epoch += 1
            self._begin_epoch()
            try:
                batch = next(self.it)
            except StopIteration:
                raise self._empty() from None
        self.index += 1
        return batch

    def _empty(self) -> ValueError:
        hint = ""
        if self.epoch > 0:
            hint = " (an iterator or generator can be read only once: pass a list, Dataset or DataLoader)"
        return ValueError(f"data yielded no batches in epoch {self.epoch}{hint}")

    def state(self) -> dict[str, Any]:
        """The position as plain values: epoch, batches taken, RNG states at the epoch's start."""
        return {"epoch": self.epoch, "index": self.index, "epoch_rng": self.epoch_rng}

    def restore(self, state: Mapping[str, Any], current_rng: Mapping[str, Any]) -> None:
        """Come back to ``state`` (from :meth:`state`), then set the generators to ``current_rng``."""
        self.epoch = int(state["epoch"])
        if state["index"] > 0:  # (with 0, the next call starts the epoch, as in the original run)
            saved = state["epoch_rng"]["generators"]
            if len(saved) != len(self.generators):
                raise ValueError(
                    f"cannot resume: the checkpoint's data had {len(saved)} torch.Generator(s), "
                    f"this data has {len(self.generators)}"
                )
            set_rng_state(state["epoch_rng"]["global"])
            for g, s in zip(self.generators, saved, strict=True):
                g.set_state(s)
            self._begin_epoch()
            for _ in range(int(state["index"])):
                if next(self.it, _END) is _END:
                    raise ValueError(
                        f"cannot resume: the checkpoint is at batch {state['index']} of epoch "
                        f"{self.epoch}, but the data now has only {self.index} batches"
                    )
                self.index += 1
        set_rng_state(current_rng)  # dropout etc. continue from where the checkpoint was taken
