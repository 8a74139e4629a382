"""``python -m mlstep.multistage [--seeds 0 1 2] [--experiments pruning ...] [--out FILE]``: the sweep.

Each experiment's results are written as soon as all its seeds are done, into the file's entry
for that experiment (the other entries are kept): a long sweep can be run one experiment at a time.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from mlstep.multistage import EXPERIMENTS, default_results_path, run_sweep
from mlstep.utils import atomic_write, set_threads


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Chapter 09's experiments over several seeds.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--experiments", nargs="+", choices=list(EXPERIMENTS), default=list(EXPERIMENTS))
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: chapters/results/09_multistage.json)")
    args = parser.parse_args(argv)
    threads = set_threads()
    path = args.out or default_results_path()
    results = json.loads(path.read_text()) if path.exists() else {}
    for name in args.experiments:
        results[name] = run_sweep(args.seeds, [name])[name]
        results[name]["_run"] = {"threads": threads, "torch": torch.__version__}
        atomic_write(path, (json.dumps(results, indent=1, sort_keys=True) + "\n").encode())
        print(f"wrote {name} to {path}", flush=True)


if __name__ == "__main__":
    main()
