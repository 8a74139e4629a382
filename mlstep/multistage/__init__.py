"""Chapter 09's experiments: each multi-stage strategy against its baseline, one seed per call.

Every experiment is one controlled comparison on the offline corpus, built from the package's
pieces (:mod:`mlstep.layerwise`, :mod:`mlstep.curriculum`, :mod:`mlstep.multitask`,
:mod:`mlstep.prune`, :mod:`mlstep.pipeline`, :mod:`mlstep.distill`, :func:`mlstep.tasks.fit`),
and returns a flat dict of numbers. The sweep over seeds (about 14 CPU minutes for three)::

    python -m mlstep.multistage --seeds 0 1 2       # writes chapters/results/09_multistage.json

runs each experiment for each seed and writes every number; :func:`summary` gives mean ± sd.
Chapter 09 plots the committed file and reruns seed 0 of the experiments that fit its time budget.

- :mod:`~mlstep.multistage.common`: the inputs every experiment shares (course model, data)
- :mod:`~mlstep.multistage.strategies`: layer-wise losses, curriculum, multi-task learning
- :mod:`~mlstep.multistage.adaptation`: domain adaptation
- :mod:`~mlstep.multistage.compression`: pruning, and the pipeline of stages
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mlstep.multistage.adaptation import domain_experiment
from mlstep.multistage.compression import pipeline_experiment, pruning_experiment
from mlstep.multistage.strategies import (
    curriculum_experiment,
    layerwise_experiment,
    multitask_experiment,
)

__all__ = ["EXPERIMENTS", "run_sweep", "summary", "inside_spread", "compare", "load_results",
           "default_results_path"]

EXPERIMENTS: dict[str, Callable[..., dict[str, Any]]] = {
    "layerwise": layerwise_experiment,
    "curriculum": curriculum_experiment,
    "multitask": multitask_experiment,
    "domain": domain_experiment,
    "pruning": pruning_experiment,
    "pipeline": pipeline_experiment,
}


def default_results_path() -> Path:
    """``chapters/results/09_multistage.json`` of the source checkout (committed)."""
    return Path(__file__).resolve().parents[2] / "chapters" / "results" / "09_multistage.json"


def run_sweep(seeds: Sequence[int], experiments: Sequence[str] | None = None) -> dict[str, Any]:
    """Every experiment for every seed: ``{experiment: {seed: result}}``, with CPU seconds."""
    results: dict[str, Any] = {}
    for name in experiments or EXPERIMENTS:
        results[name] = {}
        for seed in seeds:
            start = time.process_time()
            result = EXPERIMENTS[name](seed=seed)
            result["cpu_seconds_total"] = time.process_time() - start
            results[name][str(seed)] = result
            print(f"{name} seed {seed}: {time.process_time() - start:.0f} CPU s", flush=True)
    return results


def summary(results: dict[str, dict[str, Any]]) -> dict[str, tuple[float, float, int]]:
    """``{key: (mean, sd, n)}`` over the seeds of one experiment's ``{seed: result}`` (entries
    whose name starts with ``_`` are notes, not seeds) for every number the experiment returned."""
    runs = [r for seed, r in results.items() if not seed.startswith("_")]
    keys = {k for r in runs for k, v in r.items() if isinstance(v, (int, float))}
    out = {}
    for key in sorted(keys):
        values = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
        out[key] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))
    return out


def inside_spread(results: dict[str, Any], key: str, value: float, sds: float = 3.0, floor: float = 0.03) -> bool:
    """Does ``value`` (a run made now) land within ``max(sds · sd, floor)`` of the seeds' mean?"""
    mean, sd, _ = summary(results)[key]
    return abs(value - mean) <= max(sds * sd, floor)


def compare(live: dict[str, Any], results: dict[str, Any], keys: Sequence[str]) -> str:
    """A table of ``keys``: this run's value next to the seeds' mean ± sd."""
    stats = summary(results)
    lines = [f"{'':32} {'this run':>9} {'seeds: mean ± sd':>18}"]
    for key in keys:
        mean, sd, n = stats[key]
        lines.append(f"{key:32} {live[key]:9.3f} {mean:10.3f} ± {sd:.3f} (n={n})")
    return "\n".join(lines)


def load_results(path: str | Path | None = None) -> dict[str, Any]:
    """The committed sweep (``chapters/results/09_multistage.json``)."""
    return json.loads(Path(path or default_results_path()).read_text())
