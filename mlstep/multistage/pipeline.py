"""Multi-stage training as a pipeline: each stage starts from the previous stage's model.

The general flow of multi-step training: give each stage its objective, train stage by stage
with each stage's output as the next one's start, measure after every stage, adjust. A stage is
a function ``model -> model`` (it may return a different model: a classifier around the
pretrained encoder, a student distilled from it, a pruned copy). :func:`run_stages` runs them in
order and keeps a copy of every stage's result, so that all of them can be measured side by side:
parameters, :func:`size_on_disk`, and CPU latency with :func:`latencies`, which times the models
in turn (a busy moment of a shared machine slows all of them alike) and reports medians.
"""

from __future__ import annotations

import copy
import io
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = ["run_stages", "size_on_disk", "latencies"]


def run_stages(model: nn.Module, stages: Sequence[tuple[str, Callable[[nn.Module], nn.Module]]],
               progress: bool = True) -> dict[str, nn.Module]:
    """Run ``stages`` ``[(name, fn), ...]`` in order, each on the previous one's result; returns
    ``{name: a copy of that stage's model}`` (the input model is left untouched)."""
    names = [name for name, _ in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be unique, got {names}")
    results = {}
    for name, stage in tqdm(stages, desc="stages", disable=not progress):
        model = stage(copy.deepcopy(model))
        if not isinstance(model, nn.Module):
            raise TypeError(f"stage {name!r} returned {type(model).__name__}, not an nn.Module")
        results[name] = copy.deepcopy(model).eval()
    return results


def size_on_disk(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())`` (float32 weights, plus a little framing)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


@torch.no_grad()
def latencies(models: Mapping[str, nn.Module], inputs: Mapping[str, Any] | Callable[[str], Mapping[str, Any]],
              repeats: int = 20, warmup: int = 3) -> dict[str, float]:
    """Median seconds of one forward pass of each model, the models timed in turn (round robin).

    ``inputs``: the keyword arguments of every forward, or a function ``name -> inputs``. Report
    ratios between models: absolute times depend on the machine and on what else runs on it.
    """
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():
        model.eval()
    for r in range(warmup + repeats):
        for name, model in models.items():
            kwargs = inputs(name) if callable(inputs) else inputs
            start = time.perf_counter()
            model(**kwargs)
            if r >= warmup:  # the first rounds warm caches and allocators up
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}
