"""Smoke test of benchmarks/realdata.py: the label-budget protocol runs end to end on tiny data.

The real data (UD English EWT, SST-2) are not part of the project, so the test writes tiny files
in their formats and uses a tiny random "pretrained" model: no accuracy is asserted, only that the
protocol is wired as documented (tuning on validation, seeds that draw different samples, probe
arms with a frozen encoder, tables, JSON files that runs of other arms add to).
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path

import pytest
import torch

from mlstep.bert import BertConfig, BertForPreTraining
from mlstep.tasks.store import save_model
from mlstep.tokenizers.wordpiece import WordPieceTokenizer

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
WORDS = ["the", "film", "was", "good", "bad", "a", "dog", "ran", "home", "slow", "fun", "."]


def _load():
    """Import benchmarks/realdata.py as a module (benchmarks/ is not a package)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # the script imports its sibling _timing
    spec = importlib.util.spec_from_file_location("bench_realdata", BENCH / "realdata.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def realdata():
    return _load()


def _conllu(rng: random.Random, n: int) -> str:
    blocks = []
    for s in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(2, 6))]
        blocks.append(f"# sent_id = s{s}\n" + "".join(
            f"{i}\t{w}\t{w}\t{'PUNCT' if w == '.' else rng.choice(['NOUN', 'VERB'])}\t_\t_\t0\troot\t_\t_\n"
            for i, w in enumerate(words, start=1)))
    return "\n".join(blocks) + "\n"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    rng = random.Random(0)
    ud = root / "data" / "ud_english_ewt"
    ud.mkdir(parents=True)
    for split, n in (("train", 60), ("dev", 110), ("test", 210)):
        (ud / f"en_ewt-ud-{split}.conllu").write_text(_conllu(rng, n))
    (root / "data" / "sst2").mkdir()
    for split, n in (("train", 2100), ("dev", 210)):
        rows = [f"{' '.join(rng.choice(WORDS) for _ in range(4))}\t{rng.randint(0, 1)}" for _ in range(n)]
        (root / "data" / "sst2" / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    tok = WordPieceTokenizer.train(WORDS * 3, vocab_size=60, min_frequency=1)
    torch.manual_seed(0)
    config = BertConfig(tok.vocab_size, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                        max_position=128, pre_norm=True)
    save_model(root / "model", BertForPreTraining(config), tok, {"recipe": {"steps": 0}})
    return root


def test_missing_data_is_skipped_cleanly(realdata, tmp_path, capsys):
    result = realdata.main(["--quick", "--data", str(tmp_path / "nowhere")])
    assert "skipped" in result
    assert capsys.readouterr().out.startswith("skipped: real data not found")


def test_quick_run_end_to_end(realdata, setup, capsys):
    out = setup / "budgets.json"
    args = ["--quick", "--data", str(setup / "data"), "--model", str(setup / "model"), "--json", str(out)]
    threads = torch.get_num_threads()
    try:
        realdata.main(args + ["--arms", "scratch,scratch_probe", "--seeds", "2"])
        assert "table" not in json.loads(out.read_text())["tasks"]["ud_pos"]  # one arm: no comparison yet
        result = realdata.main(args + ["--arms", "pretrained,pretrained_probe", "--seeds", "2"])
    finally:
        torch.set_num_threads(threads)
    saved = json.loads(out.read_text())
    assert saved["tasks"]["sst2"] == json.loads(json.dumps(result["tasks"]["sst2"]))
    for name in ("ud_pos", "sst2"):
        task = saved["tasks"][name]
        assert sorted(task["arms"]) == ["pretrained", "pretrained_probe", "scratch", "scratch_probe"]
        assert sorted(task["cpu_min"]) == ["pretrained,pretrained_probe", "scratch,scratch_probe"]
        cell = task["arms"]["pretrained"]["20"]
        assert [r["seed"] for r in cell["runs"]] == [0, 1] and cell["setting"] == {
            "lr": 1e-3, "steps": 8, "batch_size": 32}
        assert cell["tuning"][0]["validation"] >= 0 and 0 <= cell["accuracy"]["mean"] <= 1
        assert list(task["arms"]["scratch_probe"]) == ["40"]  # the probe runs at one budget
        assert "| 20 |" in task["table"] and "| 40 |" in task["table"]
    assert "unseen_accuracy" in saved["tasks"]["ud_pos"]["arms"]["scratch"]["40"]
    assert "accuracy on them" in capsys.readouterr().out


def test_a_run_of_some_budgets_adds_them_beside_the_others(realdata, setup):
    out = setup / "one_budget.json"
    args = ["--quick", "--data", str(setup / "data"), "--model", str(setup / "model"), "--json", str(out),
            "--tasks", "ud_pos", "--arms", "pretrained,scratch", "--seeds", "2"]
    threads = torch.get_num_threads()
    try:
        realdata.main(args + ["--budgets", "20"])
        first = json.loads(out.read_text())["tasks"]["ud_pos"]
        realdata.main(args + ["--budgets", "40"])
    finally:
        torch.set_num_threads(threads)
    assert all(list(first["arms"][arm]) == ["20"] for arm in ("pretrained", "scratch"))
    assert "table" not in first  # the 40-sentence cells are missing
    task = json.loads(out.read_text())["tasks"]["ud_pos"]
    assert task["arms"]["pretrained"]["20"] == first["arms"]["pretrained"]["20"]  # kept, not rerun
    assert sorted(task["arms"]["scratch"]) == ["20", "40"] and "| 40 |" in task["table"]
    assert sorted(task["cpu_min"]) == ["pretrained,scratch (budgets 20)", "pretrained,scratch (budgets 40)"]


def test_budgets_are_seeded_samples_and_sst2_validation_is_held_out(realdata, setup):
    from mlstep.tasks.course import load_course_model

    _, tok, _ = load_course_model("realtext", setup / "model")
    task = realdata.sst2_task(setup / "data", tok, quick=False)
    assert len(task.train) == 100 and len(task.validation) == realdata.SST2_VALIDATION
    assert task.budgets == [1000, 5000] and task.probe_budget == 1000
    a, b = task.sample(20, seed=0), task.sample(20, seed=1)
    assert a["text"] == task.sample(20, seed=0)["text"] and a["text"] != b["text"]
    ud = realdata.ud_task(setup / "data", tok, quick=False)
    assert ud.sample(50, 0)["tokens"] == ud.train.select(realdata.sample_order(60, 0)[:50])["tokens"]
