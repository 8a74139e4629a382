"""What every experiment shares: mean ± sd over seeds, the committed JSON files the chapters
read (``chapters/results/``), and the check that a live run lands inside the committed spread."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["RESULTS", "results_path", "summary", "seed_summary", "inside_spread", "compare", "write_results",
           "load_results"]

RESULTS = Path(__file__).resolve().parents[2] / "chapters" / "results"  # of the source checkout


def results_path(name: str) -> Path:
    """``chapters/results/<name>`` of the source checkout."""
    return RESULTS / name


def summary(values: Sequence[float]) -> dict:
    """The values (rounded to 4 places), their mean and sample standard deviation (0 for one value)."""
    if not values:
        raise ValueError("summary needs at least one value")
    return {"values": [round(v, 4) for v in values], "mean": round(statistics.mean(values), 4),
            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}


def seed_summary(results: dict[str, dict[str, Any]]) -> dict[str, tuple[float, float, int]]:
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
    mean, sd, _ = seed_summary(results)[key]
    return abs(value - mean) <= max(sds * sd, floor)


def compare(live: dict[str, Any], results: dict[str, Any], keys: Sequence[str]) -> str:
    """A table of ``keys``: this run's value next to the seeds' mean ± sd."""
    stats = seed_summary(results)
    lines = [f"{'':32} {'this run':>9} {'seeds: mean ± sd':>18}"]
    for key in keys:
        mean, sd, n = stats[key]
        lines.append(f"{key:32} {live[key]:9.3f} {mean:10.3f} ± {sd:.3f} (n={n})")
    return "\n".join(lines)


def write_results(name: str, result: dict, path: Path | None = None) -> Path:
    """Write ``result`` as indented JSON to ``path`` (default ``chapters/results/<name>``) and say where."""
    path = Path(path) if path is not None else results_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
    return path


def load_results(name: str) -> dict[str, Any]:
    """A committed result file, ``chapters/results/<name>``."""
    return json.loads(results_path(name).read_text())
