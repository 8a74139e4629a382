"""Smoke test of benchmarks/realdata.py: the real-data pipeline runs end to end on a tiny config.

The real data (WikiText-2, SST-2) are not part of the project: they live in ``../shared/realdata``
next to the repository on the development machine only. Without them these tests skip (the
``skipped`` path of the script is still checked). No accuracy threshold is asserted: the quick
config trains for seconds. What is asserted is that the pipeline is wired correctly: the data are
cleaned and split as documented, padding is trimmed without cutting tokens, pretraining lowers the
held-out loss, both SST-2 models see the same data, and the tables come out.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load():
    """Import benchmarks/realdata.py as a module (benchmarks/ is not a package)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # the script imports its sibling _timing
    spec = importlib.util.spec_from_file_location("bench_realdata", BENCH / "realdata.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def realdata():
    return _load()


def test_missing_data_is_skipped_cleanly(realdata, tmp_path, capsys):
    result = realdata.main(["--quick", "--data", str(tmp_path / "nowhere")])
    assert "skipped" in result
    assert capsys.readouterr().out.startswith("skipped: real data not found")
    # a folder with only one of the two datasets counts as absent too
    (tmp_path / "wikitext2").mkdir()
    for name in ("train.txt", "valid.txt"):
        (tmp_path / "wikitext2" / name).write_text("a . b .\n")
    assert realdata.find_data(tmp_path) is None


def test_wikitext_cleaning_and_documents(realdata):
    lines = [" = Heading = ", "", " The cat sat . It was 1 @.@ 5 m @-@ long . A <unk> came . ",
             " Only one sentence here . ", " = = Sub = = "]
    docs = realdata.wikitext_documents(lines)
    assert docs == [["The cat sat .", "It was 1.5 m-long .", "A [UNK] came ."]]
    assert realdata.wikitext_documents(lines * 3, limit=2) == docs * 2


def test_trimmed_loader_cuts_padding_only(realdata):
    ids = torch.tensor([[2, 7, 3, 0, 0, 0], [2, 7, 8, 9, 3, 0]])
    mask = (ids != 0).long()
    data = realdata.TensorDataset({"input_ids": ids, "token_type_ids": torch.zeros_like(ids),
                                   "attention_mask": mask, "labels": torch.tensor([0, 1])})
    batch = next(iter(realdata.trimmed_loader(data, batch_size=2, seed=0)))
    assert batch["input_ids"].shape == (2, 5)  # the longest row has 5 real tokens
    order = batch["labels"].tolist()
    assert torch.equal(batch["input_ids"], ids[order, :5])
    assert batch["attention_mask"].sum().item() == mask.sum().item()  # no real token was cut


@pytest.fixture(scope="module")
def quick_run(realdata):
    data = realdata.find_data()
    if data is None:
        pytest.skip(f"real data not found at {realdata.DEFAULT_DATA}")
    threads = torch.get_num_threads()
    try:
        return realdata.main(["--quick", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)


def test_quick_run_end_to_end(quick_run, realdata):
    cfg = realdata.QUICK
    pre = quick_run["pretraining"]
    points = pre["checkpoints"]
    # step 0 (before training), then evenly spaced evaluations ending at the last step
    assert [c["step"] for c in points] == [0, 10, 20, 30]
    assert all(b["cpu_min"] >= a["cpu_min"] for a, b in zip(points, points[1:]))
    assert pre["valid_pairs_evaluated"] == cfg.eval_pairs
    # an untrained model is near-uniform over the vocabulary; 30 steps must already beat that
    assert points[0]["perplexity"] > 0.5 * quick_run["vocab_size"]
    assert points[-1]["mlm_loss"] < points[0]["mlm_loss"]
    for name in ("finetune_pretrained", "finetune_scratch"):
        acc = quick_run[name]["dev_accuracy"]
        assert 0.0 <= acc <= 1.0 and quick_run[name]["cpu_min"] > 0
    assert quick_run["sst2_train_sentences"] == cfg.sst2_train
    assert 0.5 <= quick_run["dev_majority"] < 0.6  # SST-2 dev: 444 positive of 872
    assert quick_run["pretrain_table"].count("\n") == 1 + len(points)
    assert "from scratch" in quick_run["finetune_table"]
    assert quick_run["total_cpu_min"] < 1.0
