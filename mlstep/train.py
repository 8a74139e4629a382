"""One plain training loop for every stage: pretraining, fine-tuning and distillation.

The loop is nanoGPT's, in the standard order::

    zero_grad → loss = step_fn(model, batch)  (under autocast) → backward → clip → step → lr step

There are no trainer classes or callbacks: what differs between stages lives in ``step_fn``
(how a batch becomes a loss) and ``eval_fn`` (how the model is measured). Device and mixed
precision are decided in one place (:func:`resolve_precision`), evaluation runs in its own
``@torch.no_grad()`` function, and checkpoints (``mlstep.checkpoint``) resume a run exactly.

Distributed (``torchrun --nproc_per_node=N script.py``): :func:`train` notices the launcher's
environment (``WORLD_SIZE > 1``), initialises ``torch.distributed`` (NCCL on CUDA, gloo on CPU),
puts each process on its own GPU, wraps the model in DistributedDataParallel, and lets only rank 0
show progress and write checkpoints. Sharding the data is the caller's job: build the DataLoader
with ``sampler=DistributedSampler(dataset)`` (the loop calls ``sampler.set_epoch(epoch)`` for you).
``step_fn`` must call ``model(...)`` (DDP synchronises gradients in its ``forward``); the model it
receives is the DDP wrapper, the plain module is ``model.module``.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from mlstep.checkpoint import (
    ResumableBatches,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
    unwrap_model,
)
from mlstep.utils import get_device, set_seed

__all__ = [
    "TrainConfig",
    "History",
    "train",
    "evaluate",
    "lr_schedule",
    "make_optimizer",
    "to_device",
    "resolve_precision",
    "setup_distributed",
    "is_main_process",
    "DistInfo",
]

SCHEDULES = ("linear", "cosine", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    """Everything the loop needs to know. CALIBRATION's pretraining schedule (warmup 6 %, then
    constant, then linear decay over the last 20 %) is ``warmup_ratio=0.06, decay_ratio=0.2``."""

    max_steps: int  # optimizer steps to run; the loop cycles through the data as needed
    lr: float = 1e-3  # peak learning rate (a parameter group may bring its own)
    weight_decay: float = 0.01  # AdamW's decoupled decay, for weight matrices only
    decay_embeddings: bool = False  # decay nn.Embedding tables too? (BERT, GPT-2: no)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW's moment coefficients
    eps: float = 1e-8  # AdamW's denominator epsilon
    warmup_ratio: float = 0.0  # fraction of max_steps with a linear lr warmup from ~0
    warmup_steps: int | None = None  # warmup length in steps; overrides warmup_ratio
    schedule: str = "linear"  # after warmup: "linear" / "cosine" decay, or "constant"
    decay_ratio: float | None = None  # decay over the last fraction only (None: all)
    min_lr_ratio: float = 0.0  # lr at the end of the decay, as a fraction of the peak
    grad_clip: float | None = 1.0  # max global gradient norm; None: no clipping
    eval_every: int | None = None  # call eval_fn every N steps (and after the last)
    log_every: int = 10  # record mean loss, lr, grad norm into History every N steps
    checkpoint_path: str | None = None  # checkpoint file (written atomically); None: none
    checkpoint_every: int | None = None  # save every N steps (and after the last)
    device: str = "auto"  # "auto" (cuda → mps → cpu), "cpu", "cuda", "cuda:1", ...
    precision: str = "auto"  # "auto" (bf16 on CUDA, fp32 elsewhere), "fp32", "bf16", "fp16"
    seed: int | None = 0  # seeds python/numpy/torch at a fresh start; None: leave them
    progress: bool = True  # tqdm progress bar (main process only)

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(self.betas))  # a list from a JSON file works too

        def bad(name: str, must: str) -> ValueError:
            return ValueError(f"TrainConfig.{name} must be {must}, got {getattr(self, name)!r}")

        if not isinstance(self.max_steps, int) or self.max_steps <= 0:
            raise bad("max_steps", "a positive integer")
        if not self.lr > 0:
            raise bad("lr", "> 0")
        if not self.weight_decay >= 0:
            raise bad("weight_decay", ">= 0")
        if not 0 <= self.warmup_ratio <= 1:
            raise bad("warmup_ratio", "in [0, 1]")
        if self.warmup_steps is not None and not 0 <= self.warmup_steps <= self.max_steps:
            raise bad("warmup_steps", f"None or in [0, max_steps={self.max_steps}]")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"one of {SCHEDULES}")
        if self.decay_ratio is not None and not 0 < self.decay_ratio <= 1:
            raise bad("decay_ratio", "None or in (0, 1]")
        if self.decay_ratio is not None and self.schedule == "constant":
            raise bad(
                "decay_ratio", "None with schedule='constant' (use schedule='linear' to decay)"
            )
        if not 0 <= self.min_lr_ratio <= 1:
            raise bad("min_lr_ratio", "in [0, 1]")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise bad("grad_clip", "None or > 0")
        for name in ("eval_every", "checkpoint_every"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise bad(name, "None or a positive integer")
        if not isinstance(self.log_every, int) or self.log_every <= 0:
            raise bad("log_every", "a positive integer")
        if self.precision not in PRECISIONS:
            raise bad("precision", f"one of {PRECISIONS}")

    @property
    def num_warmup_steps(self) -> int:
        if self.warmup_steps is not None:
            return self.warmup_steps
        return round(self.warmup_ratio * self.max_steps)


# --- learning-rate schedule and optimizer -------------------------------------------------------


def lr_schedule(config: TrainConfig) -> Callable[[int], float]:
    """The lr multiplier as a function of ``t``, the optimizer steps already taken (0 = first update).

    Warmup ``W`` steps: ``(t + 1) / W`` (the first update already moves; the W-th reaches the peak).
    Then 1 until the decay starts at ``D`` (``max_steps - decay_ratio·max_steps``, or ``W``), then
    with ``p = (t - D) / (max_steps - D)``: linear ``1 - (1 - m)·p`` or cosine
    ``m + (1 - m)·(1 + cos πp) / 2``, where ``m = min_lr_ratio``. Used as ``LambdaLR``'s lambda, so
    each parameter group's own peak lr is scaled the same way.
    """
    total, warmup, m = config.max_steps, config.num_warmup_steps, config.min_lr_ratio
    decay_start = warmup
    if config.decay_ratio is not None:
        decay_start = max(warmup, total - round(config.decay_ratio * total))

    def factor(t: int) -> float:
        if t < warmup:
            return (t + 1) / warmup
        if config.schedule == "constant" or t < decay_start:
            return 1.0
        # progress through the decay; steps past max_steps (a longer resumed run) stay at m
        p = min(1.0, (t - decay_start) / max(1, total - decay_start))
        if config.schedule == "linear":
            return 1.0 - (1.0 - m) * p
        return m + (1.0 - m) * 0.5 * (1.0 + math.cos(math.pi * p))

    return factor


_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm) + (
    (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()
)


def _no_decay_ids(model: nn.Module, decay_embeddings: bool) -> set[int]:
    """ids of parameters that get no weight decay: biases and norm gains (any tensor with < 2
    dimensions, or owned by a norm layer) and, unless asked, embedding tables. Decaying a norm
    gain towards 0 or a rare token's embedding towards the origin only hurts."""
    ids = set()
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if p.ndim < 2 or isinstance(module, _NORMS):
                ids.add(id(p))
            elif isinstance(module, nn.Embedding) and not decay_embeddings:
                ids.add(id(p))  # a tied MLM decoder shares this tensor and so is not decayed either
    return ids


ParamGroups = list[Mapping[str, Any]] | Callable[[nn.Module], list[Mapping[str, Any]]]


def make_optimizer(
    model: nn.Module, config: TrainConfig, param_groups: ParamGroups | None = None
) -> torch.optim.AdamW:
    """AdamW over the model's trainable parameters, split into weight-decay / no-decay groups.

    Args:
        model: the (unwrapped) model; parameters with ``requires_grad=False`` are left out.
        config: lr, betas, eps, weight_decay and decay_embeddings come from here.
        param_groups: optional groups with their own options, e.g.
            ``[{"params": model.embeddings.parameters(), "lr": 1e-2}]``, or a function
            ``model -> groups``. Each group without its own ``"weight_decay"`` is split into a decay
            and a no-decay part. Trainable parameters not listed in any group form the default
            groups (config.lr); to leave parameters untouched, freeze them.

    Returns:
        ``torch.optim.AdamW``; each group carries a ``"name"`` such as ``"group0/no_decay"``.
    """
    all_ids = {id(p) for p in model.parameters()}
    no_decay = _no_decay_ids(model, config.decay_embeddings)
    groups_in = param_groups(model) if callable(param_groups) else list(param_groups or [])
    seen: set[int] = set()
    groups: list[dict[str, Any]] = []

    def add(params: list[torch.Tensor], options: dict[str, Any], name: str) -> None:
        if "weight_decay" in options:  # the caller decided: one group as given
            if params:
                groups.append({"params": params, **options, "name": name})
            return
        for suffix, wd, keep in (("decay", config.weight_decay, False), ("no_decay", 0.0, True)):
            part = [p for p in params if (id(p) in no_decay) == keep]
            if part:
                groups.append(
                    {"params": part, **options, "weight_decay": wd, "name": f"{name}/{suffix}"}
                )

    for i, group in enumerate(groups_in):
        if not isinstance(group, Mapping) or "params" not in group:
            raise TypeError(
                f"param_groups[{i}] must be a dict with a 'params' entry, got {type(group).__name__}"
            )
        params = group["params"]
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        chosen = []
        for p in params:
            if not isinstance(p, torch.Tensor):
                raise TypeError(
                    f"param_groups[{i}]['params'] holds a {type(p).__name__}, not a parameter"
                )
            if id(p) not in all_ids:
                raise ValueError(
                    f"param_groups[{i}] holds a parameter of shape {tuple(p.shape)} that is not in the model"
                )
            if id(p) in seen:
                raise ValueError(
                    f"param_groups[{i}] repeats a parameter of shape {tuple(p.shape)} already in a group"
                )
            seen.add(id(p))
            if p.requires_grad:  # frozen parameters are excluded
                chosen.append(p)
        options = {k: v for k, v in group.items() if k not in ("params", "name")}
        add(chosen, options, str(group.get("name", f"group{i}")))
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in seen]
    add(rest, {}, "default")
    if not groups:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    # fused AdamW is one kernel per step on CUDA; elsewhere PyTorch's default (foreach) is used
    fused = True if all(p.is_cuda for g in groups for p in g["params"]) else None
    return torch.optim.AdamW(
        groups,
        lr=config.lr,
        betas=config.betas,
        eps=config.eps,
        weight_decay=config.weight_decay,
        fused=fused,
    )


# --- device, precision, distributed ---------------------------------------------------------------


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly single-process) run."""

    rank: int  # global rank; 0 is the main process
    local_rank: int  # rank on this machine (picks the GPU)
    world_size: int  # number of processes; 1 = not distributed
    device: torch.device  # the device this process trains on


def setup_distributed(device: str | torch.device = "auto") -> DistInfo:
    """Initialise ``torch.distributed`` when launched by ``torchrun`` (``WORLD_SIZE > 1``).

    Uses NCCL when this process will train on CUDA and gloo otherwise, and pins each process to
    GPU ``LOCAL_RANK``. A process group the caller already initialised is used as it is. Without
    a launcher it returns rank 0 of 1 on ``get_device(device)``.
    """
    env_world = int(os.environ.get("WORLD_SIZE", "1"))
    initialised = dist.is_available() and dist.is_initialized()
    if not initialised and env_world <= 1:
        return DistInfo(0, 0, 1, get_device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
    want_cuda = torch.cuda.is_available() and str(device) in ("auto", "cuda")
    dev = torch.device("cuda", local_rank) if want_cuda else get_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not initialised:
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), local_rank, dist.get_world_size(), dev)


def is_main_process() -> bool:
    """True in a single-process run and on rank 0 of a distributed one."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The autocast dtype for ``precision`` on ``device`` (float32 means: no autocast)."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("precision='bf16' but this GPU has no bfloat16 support; use 'fp16'")
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise ValueError(
                f"precision='fp16' needs a CUDA device, got {device}; use 'bf16' or 'fp32'"
            )
        return torch.float16
    raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def to_device(batch: Any, device: torch.device | str) -> Any:
    """Move every tensor in a (nested) dict / list / tuple / named tuple to ``device``."""
    if isinstance(batch, torch.Tensor):
        # non_blocking only host → GPU (it overlaps the copy when memory is pinned); GPU → host
        # must block, or the host could read the tensor before the copy lands
        to_gpu = batch.device.type == "cpu" and torch.device(device).type == "cuda"
        return batch.to(device, non_blocking=to_gpu)
    if isinstance(batch, Mapping):
        moved = {k: to_device(v, device) for k, v in batch.items()}
        if type(batch) is dict:
            return moved
        try:  # keep the mapping's own type (e.g. a Hugging Face BatchEncoding) when it allows
            return type(batch)(moved)
        except Exception:
            return moved
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # named tuple
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch  # strings, numbers, None: left alone


# --- history ------------------------------------------------------------------------------------


@dataclass
class History:
    """What a run recorded, ready to plot: ``plt.plot(*history.series("loss"))``."""

    # (step, mean training loss since the previous record)
    losses: list[tuple[int, float]] = field(default_factory=list)
    # (step, lr of the first parameter group: your first group, if you passed any)
    lrs: list[tuple[int, float]] = field(default_factory=list)
    # (step, mean global gradient norm before clipping); empty when grad_clip is None
    grad_norms: list[tuple[int, float]] = field(default_factory=list)
    # step_fn's extra values, averaged like the loss, each record with its "step"
    metrics: list[dict[str, float]] = field(default_factory=list)
    # eval_fn's results, each record with its "step"
    evals: list[dict[str, float]] = field(default_factory=list)
    # True when the run stopped on Ctrl-C
    interrupted: bool = False

    def series(self, name: str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` of "loss", "lr", "grad_norm", or a key of the evals (then metrics).

        "eval.KEY" / "metric.KEY" pick the source explicitly, e.g. ``"eval.loss"`` when eval_fn
        returns a "loss" too.
        """
        source, key = "", name
        if name.startswith(("eval.", "metric.")):
            source, _, key = name.partition(".")
        train_series = {"loss": self.losses, "lr": self.lrs, "grad_norm": self.grad_norms}
        pairs = None if source else train_series.get(key)
        if pairs is None:
            evals = [r for r in self.evals if key in r] if source in ("", "eval") else []
            metrics = [r for r in self.metrics if key in r] if source in ("", "metric") else []
            records = evals or metrics
            if not records:
                raise KeyError(f"no series {name!r} in this history")
            pairs = [(r["step"], r[key]) for r in records]
        return [s for s, _ in pairs], [v for _, v in pairs]

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers (JSON- and ``weights_only``-safe)."""
        return {
            "losses": [list(p) for p in self.losses],
            "lrs": [list(p) for p in self.lrs],
            "grad_norms": [list(p) for p in self.grad_norms],
            "metrics": [dict(r) for r in self.metrics],
            "evals": [dict(r) for r in self.evals],
            "interrupted": self.interrupted,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> History:
        pairs = lambda key: [(int(s), float(v)) for s, v in d.get(key, [])]  # noqa: E731
        return cls(
            pairs("losses"),
            pairs("lrs"),
            pairs("grad_norms"),
            [dict(r) for r in d.get("metrics", [])],
            [dict(r) for r in d.get("evals", [])],
            bool(d.get("interrupted", False)),
        )


# --- the loop -----------------------------------------------------------------------------------


def _split_output(out: Any, step: int) -> tuple[torch.Tensor, Mapping[str, Any]]:
    loss, metrics = out, {}
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], Mapping):
        loss, metrics = out
    if not isinstance(loss, torch.Tensor):
        raise TypeError(
            f"step_fn must return a scalar loss tensor or (loss, dict_of_floats); got "
            f"{type(out).__name__} at step {step}"
        )
    if loss.ndim != 0:
        raise ValueError(
            f"step_fn must return a scalar loss, got shape {tuple(loss.shape)} at step {step} "
            "(reduce it, e.g. with .mean())"
        )
    if not loss.requires_grad:
        raise ValueError(
            f"the loss at step {step} does not require grad: was it computed under "
            "torch.no_grad(), or detached, or are all parameters frozen?"
        )
    return loss, metrics


@torch.no_grad()
def evaluate(
    model: nn.Module,
    eval_fn: Callable[[nn.Module], Mapping[str, float]],
    autocast_ctx: contextlib.AbstractContextManager | None = None,
) -> dict[str, float]:
    """Run ``eval_fn(model)`` in eval mode without gradients, then restore the model's mode.

    Returns:
        ``eval_fn``'s dict with every value converted to a Python float.
    """
    was_training = model.training
    model.eval()  # dropout off
    try:
        with autocast_ctx or contextlib.nullcontext():
            result = eval_fn(model)
    finally:
        model.train(was_training)
    if not isinstance(result, Mapping):
        raise TypeError(f"eval_fn must return a dict of floats, got {type(result).__name__}")
    return {str(k): float(v) for k, v in result.items()}


def train(
    model: nn.Module,
    data: Iterable,
    step_fn: Callable[[nn.Module, Any], Any],
    config: TrainConfig,
    *,
    eval_fn: Callable[[nn.Module], Mapping[str, float]] | None = None,
    param_groups: ParamGroups | None = None,
    resume: bool | str = False,
) -> History:
    """Train ``model`` for ``config.max_steps`` optimizer steps and return the :class:`History`.

    Args:
        model: any ``nn.Module``; it is moved to the chosen device (and wrapped in DDP under torchrun).
        data: any re-iterable of batches (a list, a DataLoader); cycled through until max_steps.
            Tensors in each batch (also inside dicts / tuples) are moved to the device.
        step_fn: ``step_fn(model, batch) -> loss`` (a scalar tensor) or ``(loss, dict_of_floats)``;
            it runs under autocast. Extra values are averaged into ``History.metrics``.
        config: a :class:`TrainConfig`.
        eval_fn: ``eval_fn(model) -> dict[str, float]``, called every ``eval_every`` steps and after
            the last, on every process, under ``torch.no_grad()`` with ``model.eval()``.
        param_groups: extra optimizer groups (own lr, ...), see :func:`make_optimizer`.
        resume: ``True`` continues from ``config.checkpoint_path`` if that file exists (else starts
            fresh); a path continues from that file. The model, optimizer, scheduler, RNG states,
            data position and history are restored, so the run continues exactly as if never stopped.

    Returns:
        The :class:`History`. The last step's (clipped) gradients stay in ``.grad``. On Ctrl-C
        the loop stops, prints one line, and returns the history so far; the last complete
        checkpoint stays intact (none is written mid-step).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not isinstance(data, Iterable):
        raise TypeError(
            f"data must be an iterable of batches (a list or DataLoader), got {type(data).__name__}"
        )
    if resume is True and not config.checkpoint_path:
        raise ValueError("resume=True needs config.checkpoint_path (or pass resume='path/to/file')")
    resume_path = resume if isinstance(resume, (str, os.PathLike)) else None
    if resume is True and os.path.exists(config.checkpoint_path):
        resume_path = config.checkpoint_path

    info = setup_distributed(config.device)
    device, main = info.device, info.rank == 0
    if resume_path is None and config.seed is not None:
        set_seed(config.seed)  # every rank the same: dropout is reproducible and resumable
    raw_model = unwrap_model(model).to(device)
    model = raw_model
    if info.world_size > 1:
        model = nn.parallel.DistributedDataParallel(
            raw_model, device_ids=[device.index] if device.type == "cuda" else None
        )

    optimizer = make_optimizer(raw_model, config, param_groups)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(config))
    dtype = resolve_precision(config.precision, device)
    autocast_ctx = contextlib.nullcontext()
    if dtype != torch.float32:
        autocast_ctx = torch.autocast(device.type, dtype=dtype)
    # fp16 gradients underflow without loss scaling; bf16 has float32's range and needs none
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    params = [p for g in optimizer.param_groups for p in g["params"]]

    history, batches, step = History(), ResumableBatches(data), 0
    # sums since the last History record (saved in checkpoints, so a resumed run averages alike)
    window = {"n": 0, "loss": 0.0, "grad_norm": 0.0, "metrics": {}}
    ema, last_saved = None, None
    if resume_path is not None:
        ckpt = load_checkpoint(resume_path, raw_model, optimizer, scheduler, scaler=scaler)
        step, last_saved = int(ckpt["step"]), int(ckpt["step"])
        history = History.from_dict(ckpt.get("history", {}))
        loop = ckpt.get("extra", {})
        window, ema = loop.get("window", window), loop.get("ema")
        if "data" in loop:
            batches.restore(loop["data"], ckpt["rng"])
        else:  # a checkpoint written by save_checkpoint directly: no data position
            set_rng_state(ckpt["rng"])

    def checkpoint() -> None:
        extra = {"data": batches.state(), "window": window, "ema": ema, "config": asdict(config)}
        path = config.checkpoint_path
        save_checkpoint(
            path, raw_model, optimizer, scheduler, step, history, scaler=scaler, extra=extra
        )

    def due(every: int | None) -> bool:
        return step == config.max_steps or (every is not None and step % every == 0)

    show = config.progress and main
    bar = tqdm(
        total=config.max_steps, initial=step, desc="train", disable=not show, dynamic_ncols=True,
        mininterval=0.5,  # at most 2 redraws a second: a notebook's output channel stays responsive
    )
    postfix: dict[str, str] = {}  # what the bar shows: running loss, lr, latest evaluation
    model.train()
    try:
        while step < config.max_steps:
            batch = to_device(batches.next(), device)
            optimizer.zero_grad(set_to_none=True)
            with autocast_ctx:
                loss, metrics = _split_output(step_fn(model, batch), step + 1)
            # one host sync per step: it catches a NaN before the NaN reaches the weights
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise FloatingPointError(
                    f"loss is {loss_value} at step {step + 1}: lower the lr, check the "
                    "inputs, or keep grad_clip on"
                )
            (scaler.scale(loss) if scaler else loss).backward()
            if scaler:
                scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            grad_norm = None
            if config.grad_clip:
                # returns the norm before clipping: History.grad_norms shows how often it bites
                grad_norm = nn.utils.clip_grad_norm_(params, config.grad_clip)
            lr = optimizer.param_groups[0]["lr"]
            if scaler:
                scaler.step(optimizer)  # skipped when fp16 gradients overflowed
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            step += 1

            window["n"] += 1
            window["loss"] += loss_value
            if grad_norm is not None:
                window["grad_norm"] += grad_norm.item()
            for k, v in metrics.items():
                window["metrics"][k] = window["metrics"].get(k, 0.0) + float(v)
            ema = loss_value if ema is None else 0.9 * ema + 0.1 * loss_value
            bar.update(1)
            if due(config.log_every):
                n = window["n"]
                history.losses.append((step, window["loss"] / n))
                history.lrs.append((step, lr))
                if grad_norm is not None:
                    history.grad_norms.append((step, window["grad_norm"] / n))
                if window["metrics"]:
                    means = {k: v / n for k, v in window["metrics"].items()}
                    history.metrics.append({"step": step, **means})
                window = {"n": 0, "loss": 0.0, "grad_norm": 0.0, "metrics": {}}
                postfix.update(loss=f"{ema:.4f}", lr=f"{lr:.2e}")
                bar.set_postfix(postfix, refresh=False)
            if eval_fn is not None and due(config.eval_every):
                history.evals.append({"step": step, **evaluate(raw_model, eval_fn, autocast_ctx)})
                postfix.update({k: f"{v:.4g}" for k, v in history.evals[-1].items() if k != "step"})
                bar.set_postfix(postfix, refresh=False)
            if main and config.checkpoint_path and due(config.checkpoint_every):
                checkpoint()
                last_saved = step
    except KeyboardInterrupt:
        history.interrupted = True
        if main:
            where = "no checkpoint was written"
            if last_saved is not None:
                where = f"last checkpoint: step {last_saved} in {config.checkpoint_path}"
            print(
                f"Interrupted at step {step}/{config.max_steps}; {where}. Returning the history so far."
            )
    finally:
        bar.close()
    return history
