"""Chapter 09's experiments: each multi-stage strategy against its baseline, one seed per call.

Every experiment is one controlled comparison on the offline corpus, built from the package's
pieces (:mod:`mlstep.layerwise`, :mod:`mlstep.curriculum`, :mod:`mlstep.multitask`,
:mod:`mlstep.prune`, :mod:`mlstep.pipeline`, :mod:`mlstep.distill`, :func:`mlstep.tasks.fit`),
and returns a flat dict of numbers. The chapter runs seed 0 live; the sweep over seeds::

    python -m mlstep.multistage --seeds 0 1 2 3 4       # writes data/results/09_multistage.json

runs each experiment for each seed and writes every number; :func:`summary` gives mean ± sd.

- :mod:`~mlstep.multistage.common`: the inputs every experiment shares (course model, data)
- :mod:`~mlstep.multistage.strategies`: layer-wise losses, curriculum, multi-task, domain adaptation
- :mod:`~mlstep.multistage.compression`: pruning, and the pipeline of stages
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mlstep.multistage.compression import pipeline_experiment, pruning_experiment
from mlstep.multistage.strategies import (
    curriculum_experiment,
    domain_experiment,
    layerwise_experiment,
    multitask_experiment,
)

__all__ = ["EXPERIMENTS", "run_sweep", "summary", "load_results", "default_results_path"]

EXPERIMENTS: dict[str, Callable[..., dict[str, Any]]] = {
    "layerwise": layerwise_experiment,
    "curriculum": curriculum_experiment,
    "multitask": multitask_experiment,
    "domain": domain_experiment,
    "pruning": pruning_experiment,
    "pipeline": pipeline_experiment,
}


def default_results_path() -> Path:
    """``data/results/09_multistage.json`` of the source checkout (committed)."""
    return Path(__file__).resolve().parents[2] / "data" / "results" / "09_multistage.json"


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


def load_results(path: str | Path | None = None) -> dict[str, Any]:
    """The committed sweep (``data/results/09_multistage.json``)."""
    return json.loads(Path(path or default_results_path()).read_text())
