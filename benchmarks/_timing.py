"""Shared helpers of the benchmarks: interleaved timing, markdown tables, environment facts.

Why interleaved: on a shared machine the speed of the cores drifts (other processes, turbo,
thermal limits) on the scale of seconds. Timing all of A, then all of B, puts the drift into the
ratio. Alternating A, B, A, B, ... (and reversing the order every other round, A B B A ...) lets
both candidates see the same conditions, and the median of each discards the stalls.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["Size", "interleaved", "Timing", "markdown_table", "environment", "cpu_model", "busy_warning",
           "common_arguments", "start", "write_json", "training_step"]


class Timing(dict):
    """``name -> list of wall-clock seconds`` (one entry per repetition) with summary helpers.

    ``cpu`` holds the same samples measured in process CPU time (all threads of this process).
    On a machine shared with other processes, wall time includes the time our threads waited
    for a core, CPU time does not; with one thread, CPU time is the most stable measure of the
    work itself (with several, it also counts threads spinning at barriers).
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.cpu: dict[str, list[float]] = {name: [] for name in self}

    def median_ms(self, name: str, clock: str = "wall") -> float:
        samples = self[name] if clock == "wall" else self.cpu[name]
        return 1e3 * statistics.median(samples)

    def spread(self, name: str) -> float:
        """Interquartile range / median: 0.05 = quiet, > 0.3 = very noisy."""
        xs = sorted(self[name])
        if len(xs) < 4:
            return float("nan")
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
        return (q3 - q1) / statistics.median(xs)


def interleaved(
    fns: dict[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 2,
    sync: Callable[[], None] | None = None,
    inner: int = 1,
) -> Timing:
    """Time several zero-argument functions alternately.

    Args:
        fns: ``name -> fn``; each call of ``fn`` is one unit of work (e.g. one training step).
        repeats: rounds; each round times every function once (``inner`` calls each).
        warmup: untimed calls of each function first (allocator, caches, lazy init, autotuning).
        sync: called before reading the clock (``torch.cuda.synchronize`` on a GPU, where kernels
            run asynchronously and the clock would otherwise stop before the work is done).
        inner: calls per timed sample (for functions so short that the clock's resolution and
            Python overhead matter); the sample is divided by ``inner``.

    Returns:
        :class:`Timing` with ``repeats`` samples (seconds per call) for each name.
    """
    if repeats < 1 or warmup < 0 or inner < 1:
        raise ValueError(f"need repeats >= 1, warmup >= 0, inner >= 1; got {repeats}, {warmup}, {inner}")
    sync = sync or (lambda: None)
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    sync()
    out = Timing({name: [] for name in names})
    for r in range(repeats):
        # A B C, then C B A: neither candidate always runs right after the other's caches.
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            fn = fns[name]
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(inner):
                fn()
            sync()
            out[name].append((time.perf_counter() - t0) / inner)
            out.cpu[name].append((time.process_time() - c0) / inner)
    return out


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-markdown table; floats are written with 2 decimals (3 below 1)."""

    def cell(x: Any) -> str:
        if isinstance(x, float):
            return f"{x:.3f}" if abs(x) < 1 else f"{x:.2f}"
        return str(x)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    """What a reader needs to interpret the numbers: versions, threads, hardware."""
    env: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY") or "default",
    }
    if hasattr(os, "getloadavg"):
        env["load_avg_1min"] = round(os.getloadavg()[0], 2)
    try:
        import transformers

        env["transformers"] = transformers.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def busy_warning(env: dict[str, Any]) -> str | None:
    """A warning when other processes keep the cores busy (the timings are then unreliable).

    With more runnable threads than cores, OpenMP worker threads that spin-wait at barriers (the
    default policy) lose whole scheduler slices: we measured 2-thread steps 5-10x slower than
    1-thread steps on a loaded 2-core machine. ``OMP_WAIT_POLICY=PASSIVE`` (set before Python
    starts) or ``--threads 1`` makes such measurements much steadier.
    """
    load, cores = env.get("load_avg_1min"), env.get("cores")
    if load is None or not cores or load <= cores:
        return None
    return (f"warning: load average {load} > {cores} cores: other processes share the CPU, so "
            "timings are noisy (ratios from alternated runs are more robust than absolute ms); "
            "consider --threads 1 or OMP_WAIT_POLICY=PASSIVE")


@dataclass(frozen=True)
class Size:
    """One benchmarked transformer configuration (the same numbers build both models compared)."""

    name: str  # label in the tables
    layers: int  # blocks L
    hidden: int  # width d (the FFN is 4 d wide, as in BERT and GPT-2)
    heads: int  # attention heads; must divide hidden
    seq_len: int  # tokens per sequence T (generation: max positions)
    batch: int  # sequences per step B (generation: prompts decoded together)
    vocab: int  # vocabulary size V
    repeats: int  # timed rounds on CPU (the GPU paths use --repeats or their own default)

    @property
    def intermediate(self) -> int:
        return 4 * self.hidden

    def label(self) -> str:
        return (f"{self.name}: L={self.layers} d={self.hidden} h={self.heads} T={self.seq_len} "
                f"B={self.batch} V={self.vocab}")


def common_arguments(description: str) -> argparse.ArgumentParser:
    """A parser with the options every benchmark takes: --device, --threads, --quick, --repeats,
    --warmup, --json."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, or auto")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU); default 2")
    p.add_argument("--quick", action="store_true", help="tiny configurations, 2 repetitions (smoke run)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default: the benchmark's own)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of each candidate first")
    p.add_argument("--json", type=Path, default=None, help="write the results to this file")
    return p


def training_step(model: nn.Module, loss: Callable[[], torch.Tensor], device: torch.device,
                  precision: str = "auto") -> Callable[[], None]:
    """One optimizer step as a closure: zero_grad, ``loss()`` under autocast, backward, AdamW step
    (fused on CUDA: one kernel for all parameters; the default foreach path on CPU).
    ``precision``: as in ``TrainConfig`` ("auto": bf16 on CUDA, fp32 elsewhere; "bf16"; "fp32")."""
    from mlstep.tools.runtime import autocast

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda" or None)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(device, precision):
            value = loss()
        value.backward()
        opt.step()

    return step


def start(args: argparse.Namespace, needs_transformers: bool = True) -> tuple[torch.device | None, dict[str, Any]]:
    """``(device, environment)`` for the parsed arguments: the device named by ``--device``, with
    ``--threads`` set and the environment printed (with a warning when the machine is busy).
    ``(None, {"skipped": reason})`` with a printed ``skipped: ...`` line when the device or Hugging
    Face ``transformers`` is missing."""
    from mlstep.tools.runtime import get_device

    try:
        device = get_device(args.device)
    except RuntimeError as err:  # e.g. --device cuda on a machine without a GPU
        print(f"skipped: {err}")
        return None, {"skipped": str(err)}
    if needs_transformers:
        try:
            import transformers  # noqa: F401
        except ImportError:
            print("skipped: Hugging Face transformers is not installed (pip install -e '.[dev]')")
            return None, {"skipped": "transformers missing"}
    torch.set_num_threads(args.threads)
    env = environment(device)
    print("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    if (warning := busy_warning(env)) is not None:
        print(warning)
    return device, env


def write_json(out: dict[str, Any], path: Path | None) -> None:
    """Write a benchmark's results to ``path`` (``--json``), if one was given."""
    if path:
        path.write_text(json.dumps(out, indent=2))
        print(f"wrote {path}")
