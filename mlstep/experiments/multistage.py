"""Chapter 09's experiments: each multi-stage strategy against its baseline, one seed per call.

Every experiment is one controlled comparison on the offline corpus, built from the package's
pieces (:mod:`mlstep.multistage.layerwise`, :mod:`mlstep.multistage.curriculum`, :mod:`mlstep.multistage.multitask`,
:mod:`mlstep.multistage.prune`, :mod:`mlstep.multistage.pipeline`, :mod:`mlstep.distill`, :func:`mlstep.tasks.labeled.fit`),
and returns a flat dict of numbers. The sweep over seeds (about 14 CPU minutes for three)::

    python -m mlstep.experiments multistage --seeds 0 1 2       # writes chapters/results/09_multistage.json

runs each experiment for each seed and writes every number; :mod:`mlstep.experiments.results`
gives mean ± sd and checks that a live run lands inside the committed spread.
Chapter 09 plots the committed file and reruns seed 0 of the experiments that fit its time budget.

- :mod:`~mlstep.experiments.multistage_setup`: the inputs every experiment shares (course model, data)
- :mod:`~mlstep.experiments.multistage_strategies`: layer-wise losses, curriculum, multi-task learning
- :mod:`~mlstep.experiments.domain`: domain adaptation
- :mod:`~mlstep.experiments.compression`: pruning, and the pipeline of stages
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from mlstep.experiments.compression import pipeline_experiment, pruning_experiment
from mlstep.experiments.domain import domain_experiment
from mlstep.experiments.multistage_strategies import (
    curriculum_experiment,
    layerwise_experiment,
    multitask_experiment,
)
from mlstep.experiments.results import results_path
from mlstep.tools.runtime import atomic_write, set_threads

__all__ = ["EXPERIMENTS", "RESULT_FILE", "run_sweep", "main"]

RESULT_FILE = "09_multistage.json"  # in chapters/results/

EXPERIMENTS: dict[str, Callable[..., dict[str, Any]]] = {
    "layerwise": layerwise_experiment,
    "curriculum": curriculum_experiment,
    "multitask": multitask_experiment,
    "domain": domain_experiment,
    "pruning": pruning_experiment,
    "pipeline": pipeline_experiment,
}


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


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m mlstep.experiments multistage [--seeds 0 1 2] [--experiments pruning ...] [--out FILE]``.

    Each experiment's results are written as soon as all its seeds are done, into the file's entry
    for that experiment (the other entries are kept): a long sweep can be run one experiment at a time.
    """
    parser = argparse.ArgumentParser(prog="python -m mlstep.experiments multistage",
                                     description="Chapter 09's experiments over several seeds.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--experiments", nargs="+", choices=list(EXPERIMENTS), default=list(EXPERIMENTS))
    parser.add_argument("--out", type=Path, default=None, help=f"JSON file (default: chapters/results/{RESULT_FILE})")
    args = parser.parse_args(argv)
    threads = set_threads()
    path = args.out or results_path(RESULT_FILE)
    results = json.loads(path.read_text()) if path.exists() else {}
    for name in args.experiments:
        results[name] = run_sweep(args.seeds, [name])[name]
        results[name]["_run"] = {"threads": threads, "torch": torch.__version__}
        atomic_write(path, (json.dumps(results, indent=1, sort_keys=True) + "\n").encode())
        print(f"wrote {name} to {path}", flush=True)
