"""One training loop for every stage: pretraining, fine-tuning and distillation.

The loop is nanoGPT's, in the standard order::

    batch → zero_grad → loss = step_fn(model, batch) → backward → clip → optimizer step → lr step

What differs between stages lives in ``step_fn`` (how a batch becomes a loss) and ``eval_fn``
(how the model is measured): no trainer classes, no callbacks. What a run needs around the loop
stays out of its way: the device, bf16 autocast and ``torchrun`` processes are decided in
:mod:`mlstep.tools.runtime`; exact resume (weights, optimizer, random generators, data position) lives in
:mod:`mlstep.tools.checkpoint`.

Under ``torchrun --nproc_per_node=N`` the loop joins the process group, wraps the model in
DistributedDataParallel and lets rank 0 alone show progress and save. Give each process its shard
of the data with ``DataLoader(..., sampler=DistributedSampler(dataset))``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from mlstep.tools.checkpoint import ResumableBatches, load_checkpoint, save_checkpoint
from mlstep.tools.runtime import (
    autocast,
    eval_mode,
    set_seed,
    setup_distributed,
    to_device,
    unwrap_model,
)

__all__ = ["TrainConfig", "History", "train", "evaluate", "lr_schedule", "make_optimizer"]


@dataclass(frozen=True)
class TrainConfig:
    """What a run is asked to do. The lr rises linearly over the warmup, stays at its peak, then
    falls linearly to 0 over the last ``decay_ratio`` of the steps (1.0: right after the warmup)."""

    max_steps: int  # optimizer steps; the loop cycles through the data as often as needed
    lr: float = 1e-3  # peak learning rate (a parameter group may bring its own)
    weight_decay: float = 0.01  # AdamW's decoupled decay, on weight matrices only
    warmup_ratio: float = 0.0  # fraction of the steps spent warming the lr up from ~0
    decay_ratio: float = 1.0  # fraction of the steps, at the end, spent decaying the lr to 0
    grad_clip: float | None = 1.0  # largest global gradient norm; None: no clipping
    eval_every: int | None = None  # run eval_fn every N steps, and after the last
    log_every: int = 10  # record the mean loss (and step_fn's values) every N steps
    checkpoint_path: str | None = None  # where to save (atomically) for resuming; None: never
    checkpoint_every: int | None = None  # save every N steps, and after the last
    device: str = "auto"  # "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:1", ...
    precision: str = "auto"  # "auto" (bf16 on CUDA, float32 elsewhere), "bf16" or "fp32"
    seed: int | None = 0  # seeds Python, NumPy and PyTorch at a fresh start; None: leave them
    progress: bool = True  # show a progress bar (on the main process)

    def __post_init__(self) -> None:
        valid = {
            "max_steps": isinstance(self.max_steps, int) and self.max_steps > 0,
            "lr": self.lr > 0, "weight_decay": self.weight_decay >= 0,
            "warmup_ratio": 0 <= self.warmup_ratio <= 1, "decay_ratio": 0 <= self.decay_ratio <= 1,
            "grad_clip": self.grad_clip is None or self.grad_clip > 0,
            "eval_every": self.eval_every is None or self.eval_every > 0,
            "checkpoint_every": self.checkpoint_every is None or self.checkpoint_every > 0,
            "log_every": self.log_every > 0, "precision": self.precision in ("auto", "bf16", "fp32"),
        }
        bad = [f"{k}={getattr(self, k)!r}" for k, ok in valid.items() if not ok]
        if bad:
            raise ValueError(f"TrainConfig got invalid values: {', '.join(bad)} (see the field comments)")


def lr_schedule(config: TrainConfig) -> Callable[[int], float]:
    """The lr multiplier after ``t`` optimizer steps: ``(t + 1) / W`` during the ``W`` warmup steps,
    then 1 until the decay starts, then linear down to 0 at ``max_steps``."""
    total = config.max_steps
    warmup = round(config.warmup_ratio * total)
    decay_start = max(warmup, total - round(config.decay_ratio * total))

    def factor(t: int) -> float:
        if t < warmup:
            return (t + 1) / warmup
        if t < decay_start or decay_start == total:  # (decay_ratio=0: no decay at all)
            return 1.0
        return max(0.0, 1.0 - (t - decay_start) / max(1, total - decay_start))

    return factor


def make_optimizer(model: nn.Module, config: TrainConfig,
                   param_groups: list[Mapping[str, Any]] | None = None) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; biases, norm gains and embedding tables get no decay.

    ``param_groups``: groups with options of their own, e.g. ``[{"params": emb.parameters(),
    "lr": 1e-2}]``; the parameters they leave out form a group at ``config.lr``. Each group is
    split into a decayed part (at the group's own ``"weight_decay"``, else the config's) and an
    undecayed one: pulling a LayerNorm gain or a rare token's embedding towards 0 only hurts.
    """
    no_decay = {id(p) for m in model.modules() for p in m.parameters(recurse=False)
                if p.ndim < 2 or isinstance(m, (nn.LayerNorm, nn.Embedding))}  # a tied decoder too
    in_model, seen, groups = {id(p) for p in model.parameters()}, set(), []
    for i, group in enumerate([*(param_groups or []), None]):
        if group is None:  # everything the given groups left out
            group = {"params": [p for p in model.parameters() if id(p) not in seen]}
        params = list(group["params"])
        if any(id(p) not in in_model or id(p) in seen for p in params):
            raise ValueError(f"param_groups[{i}] holds a parameter that is not in the model or is "
                             "already in an earlier group")
        seen.update(id(p) for p in params)
        options = {k: v for k, v in group.items() if k != "params"}
        for decayed, weight_decay in ((True, options.get("weight_decay", config.weight_decay)), (False, 0.0)):
            part = [p for p in params if p.requires_grad and (id(p) not in no_decay) == decayed]
            if part:
                groups.append({**options, "params": part, "weight_decay": weight_decay})
    if not groups:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    fused = all(p.is_cuda for g in groups for p in g["params"]) or None  # one kernel per step on GPU
    return torch.optim.AdamW(groups, lr=config.lr, fused=fused)


@dataclass
class History:
    """What a run recorded, ready to plot: ``plt.plot(*history.series("loss"))``."""

    train: list[dict] = field(default_factory=list)  # every log_every steps: step, loss, lr,
    # grad_norm (before clipping) and step_fn's extra values, each the mean since the last record
    evals: list[dict] = field(default_factory=list)  # step and eval_fn's values
    interrupted: bool = False  # the run was stopped with Ctrl-C

    def series(self, name: str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` of a recorded value: ``"eval.KEY"``, ``"train.KEY"``, or a plain
        ``"KEY"`` (looked up in the evaluations first)."""
        source, _, key = name.rpartition(".")
        sources = {"eval": [self.evals], "train": [self.train], "": [self.evals, self.train]}[source]
        for records in sources:
            found = [(r["step"], r[key]) for r in records if key in r]
            if found:
                return [s for s, _ in found], [v for _, v in found]
        raise KeyError(f"no series {name!r} in this history")


@torch.no_grad()
def evaluate(model: nn.Module, eval_fn: Callable[[nn.Module], Mapping[str, float]]) -> dict[str, float]:
    """``eval_fn(model)`` in eval mode (no dropout) without gradients; the mode is restored after."""
    with eval_mode(model):
        return {k: float(v) for k, v in eval_fn(model).items()}


def _loss_and_values(out: Any, step: int) -> tuple[Tensor, dict[str, float]]:
    """``step_fn``'s loss and its extra values, checked: a scalar that requires grad and is finite."""
    loss, values = out if isinstance(out, tuple) else (out, {})
    if not (isinstance(loss, Tensor) and loss.ndim == 0 and loss.requires_grad):
        got = (f"a tensor of shape {tuple(loss.shape)} with requires_grad={loss.requires_grad}"
               if isinstance(loss, Tensor) else type(loss).__name__)
        raise ValueError(f"step_fn must return a scalar loss that requires grad, or (loss, dict of "
                         f"floats); got {got} at step {step}. Reduce it (.mean()), don't compute it "
                         "under torch.no_grad() or detach it, and keep some parameter trainable")
    loss_value = loss.item()  # one host sync per step: a NaN stops here, not in the weights
    if not math.isfinite(loss_value):
        raise FloatingPointError(f"loss is {loss_value} at step {step}: lower the lr or check the inputs")
    return loss, {"loss": loss_value, **{k: float(v) for k, v in values.items()}}


@dataclass
class _Run:
    """The bookkeeping around the loop: the step, the history, the running means since the last
    record, the data position; all of it is saved in checkpoints and restored on resume."""

    config: TrainConfig
    batches: ResumableBatches
    step: int = 0
    history: History = field(default_factory=History)
    window: list[dict[str, float]] = field(default_factory=list)  # one record per step since the last log
    saved: int | None = None  # the step of the last checkpoint

    def due(self, every: int | None) -> bool:
        return self.step == self.config.max_steps or (every is not None and self.step % every == 0)

    def record(self, values: dict[str, float], lr: float) -> dict[str, float] | None:
        """Count one finished step; every ``log_every`` steps, append the means to the history."""
        self.step += 1
        self.window.append(values)
        if not self.due(self.config.log_every):
            return None
        means = {k: sum(r[k] for r in self.window) / len(self.window) for k in self.window[-1]}
        self.history.train.append({"step": self.step, "lr": lr, **means})
        self.window = []
        return means

    def save(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
        extra = {"data": self.batches.state(), "window": self.window, "config": asdict(self.config)}
        save_checkpoint(self.config.checkpoint_path, model, optimizer, scheduler, self.step,
                        asdict(self.history), extra=extra)
        self.saved = self.step

    def resume(self, resume: bool | str, model: nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: Any) -> bool:
        """Restore the run from a checkpoint if ``resume`` asks for one; True if it did."""
        if resume is True and not self.config.checkpoint_path:
            raise ValueError("resume=True needs config.checkpoint_path (or pass resume='path/to/file')")
        path = self.config.checkpoint_path if resume is True else resume
        if not path or (resume is True and not os.path.exists(path)):
            return False  # a fresh start
        ckpt = load_checkpoint(path, model, optimizer, scheduler)
        if "data" not in ckpt.get("extra", {}):
            raise ValueError(f"{path} was not saved by mlstep.train: it holds no data position to resume from")
        self.step, self.history = ckpt["step"], History(**ckpt["history"])
        self.window, self.saved = ckpt["extra"]["window"], ckpt["step"]
        self.batches.restore(ckpt["extra"]["data"], ckpt["rng"])
        return True


def train(model: nn.Module, data: Iterable, step_fn: Callable[[nn.Module, Any], Any],
          config: TrainConfig, *, eval_fn: Callable[[nn.Module], Mapping[str, float]] | None = None,
          param_groups: list[Mapping[str, Any]] | None = None, resume: bool | str = False) -> History:
    """Train ``model`` for ``config.max_steps`` steps and return its :class:`History`.

    ``data``: a re-iterable of batches (a list, a DataLoader), cycled through; their tensors go to
    the device. ``step_fn(model, batch)`` returns the loss or ``(loss, dict_of_floats)``; it runs
    under autocast. ``eval_fn(model)`` returns a dict of floats, every ``eval_every`` steps.
    ``param_groups``: see :func:`make_optimizer`. ``resume``: True continues from
    ``config.checkpoint_path`` if it exists, a path from that file, exactly as if never stopped.
    Ctrl-C stops the run between steps and returns the history so far.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    dist = setup_distributed(config.device)
    raw = unwrap_model(model).to(dist.device)
    model = raw if dist.world_size == 1 else nn.parallel.DistributedDataParallel(
        raw, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
    optimizer = make_optimizer(raw, config, param_groups)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(config))
    run = _Run(config, ResumableBatches(data))
    if not run.resume(resume, raw, optimizer, scheduler) and config.seed is not None:
        set_seed(config.seed)  # the same on every rank: dropout is reproducible and resumable

    params = [p for group in optimizer.param_groups for p in group["params"]]
    bar = tqdm(total=config.max_steps, initial=run.step, desc="train", mininterval=0.5,
               disable=not (config.progress and dist.rank == 0))
    model.train()
    try:
        while run.step < config.max_steps:
            batch = to_device(run.batches.next(), dist.device)
            optimizer.zero_grad(set_to_none=True)
            with autocast(dist.device, config.precision):
                loss, values = _loss_and_values(step_fn(model, batch), run.step + 1)
            loss.backward()
            if config.grad_clip:  # the norm before clipping is recorded: how often it bites
                values["grad_norm"] = nn.utils.clip_grad_norm_(params, config.grad_clip).item()
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()

            bar.update(1)
            if means := run.record(values, lr):
                bar.set_postfix(loss=f"{means['loss']:.4f}", lr=f"{lr:.2e}", refresh=False)
            if eval_fn is not None and run.due(config.eval_every):
                with autocast(dist.device, config.precision):
                    run.history.evals.append({"step": run.step, **evaluate(raw, eval_fn)})
            if config.checkpoint_path and run.due(config.checkpoint_every) and dist.rank == 0:
                run.save(raw, optimizer, scheduler)
    except KeyboardInterrupt:
        run.history.interrupted = True
        if dist.rank == 0:
            last = "no checkpoint written" if run.saved is None else f"last checkpoint: step {run.saved}"
            print(f"Interrupted at step {run.step}/{config.max_steps}; {last}. Returning the history so far.")
    finally:
        bar.close()
    return run.history
