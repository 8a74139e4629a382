"""What the sweep scripts share: a mean ± sd summary, and writing the small JSON the chapter reads."""

from __future__ import annotations

import json
import pathlib
import statistics

RESULTS = pathlib.Path(__file__).resolve().parents[1] / "chapters" / "results"


def summary(values: list[float]) -> dict:
    """The values (rounded to 4 places), their mean and sample standard deviation (0 for one value)."""
    return {"values": [round(v, 4) for v in values], "mean": round(statistics.mean(values), 4),
            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}


def write_results(name: str, result: dict) -> None:
    """Write ``chapters/results/<name>`` (indented JSON) and say where."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / name).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {RESULTS / name}")
