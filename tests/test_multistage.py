"""mlstep.experiments: the sweeps' bookkeeping (seeds, mean ± sd, the spread test, the JSON file
merged experiment by experiment), the one command line, and the committed results file chapter 09
reads. The experiments themselves run in chapter 09 (nbval)."""

from __future__ import annotations

import json
import statistics

import pytest

import mlstep.experiments.multistage as ms
from mlstep.experiments import results as res
from mlstep.experiments.__main__ import main


def fake_experiment(seed: int = 0) -> dict:
    return {"accuracy": 0.8 + 0.01 * seed, "curve": [(1, 2.0)], "missing": None if seed == 1 else 1.0}


def test_summary_inside_spread_and_compare():
    results = {"0": fake_experiment(0), "1": fake_experiment(1), "2": fake_experiment(2), "_run": {"threads": 1}}
    stats = res.seed_summary(results)
    assert set(stats) == {"accuracy", "missing"}  # lists and notes are not summarised
    mean, sd, n = stats["accuracy"]
    assert (mean, n) == (pytest.approx(0.81), 3) and sd == pytest.approx(statistics.stdev([0.8, 0.81, 0.82]))
    assert stats["missing"] == (1.0, 0.0, 2)  # None (no value for that seed) is skipped
    assert res.inside_spread(results, "accuracy", 0.83)  # within 3 sd = 0.03
    assert not res.inside_spread(results, "accuracy", 0.90)
    assert res.inside_spread(results, "accuracy", 0.90, floor=0.1)
    table = res.compare({"accuracy": 0.805}, results, ["accuracy"])
    assert "0.805" in table and "0.810 ± 0.010 (n=3)" in table


def test_sweep_writes_each_experiment_and_keeps_the_others(tmp_path, monkeypatch):
    monkeypatch.setitem(ms.EXPERIMENTS, "fake", fake_experiment)
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"other": {"0": {"x": 1}}}))
    main(["multistage", "--seeds", "0", "2", "--experiments", "fake", "--out", str(path)])
    results = json.loads(path.read_text())
    assert results["other"] == {"0": {"x": 1}}
    assert set(results["fake"]) == {"0", "2", "_run"} and results["fake"]["_run"]["threads"] >= 1
    assert results["fake"]["2"]["accuracy"] == pytest.approx(0.82) and "cpu_seconds_total" in results["fake"]["0"]


def test_committed_results_have_every_experiment_with_three_seeds_or_more():
    results = res.load_results(ms.RESULT_FILE)
    for name, experiment in ms.EXPERIMENTS.items():
        assert name in results, f"{name} missing from {res.results_path(ms.RESULT_FILE)}: run python -m mlstep.experiments multistage"
        seeds = [s for s in results[name] if not s.startswith("_")]
        assert len(seeds) >= 3, name
        assert all(set(results[name][s]) == set(results[name][seeds[0]]) for s in seeds), name
        assert experiment.__name__ == f"{name}_experiment"


def test_summary_of_values_and_the_command_line_names_its_sweeps(capsys):
    assert res.summary([0.5, 0.7]) == {"values": [0.5, 0.7], "mean": 0.6, "sd": 0.1414}
    assert res.summary([0.12345]) == {"values": [0.1235], "mean": 0.1235, "sd": 0.0}
    with pytest.raises(ValueError, match="at least one value"):
        res.summary([])
    with pytest.raises(SystemExit, match="sentence-tasks,finetuning,distillation,gpt-finetune,multistage"):
        main(["nonsense"])
