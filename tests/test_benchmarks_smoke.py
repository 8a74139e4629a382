"""Smoke tests of benchmarks/: the scripts run, print a ratio table, and compare like with like.

No timing threshold is asserted (speed depends on the machine and on what else runs on it);
what is asserted is that the comparison is fair: both BERTs compute the same loss from the same
weights and batch, and the FLOP count used for MFU matches the matmuls the model really runs.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    """Import benchmarks/<name>.py as a module (benchmarks/ is not a package)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # the scripts import their sibling _timing
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _linear_flops(model: nn.Module, run) -> int:
    """The FLOPs of every ``nn.Linear`` call while ``run()`` runs, counted with forward hooks."""
    flops = []

    def hook(module: nn.Linear, inputs, output) -> None:
        rows = inputs[0].numel() // module.in_features
        flops.append(2 * rows * module.in_features * module.out_features)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Linear)]
    run()
    for h in handles:
        h.remove()
    return sum(flops)


def _ratios(table: str) -> list[float]:
    """The numbers written as ``1.23×`` in a markdown table."""
    return [float(x) for x in re.findall(r"([0-9]+\.[0-9]+)×", table)]


@pytest.fixture(scope="module")
def pretrain():
    pytest.importorskip("transformers")
    return _load("pretrain_step")


@pytest.fixture(scope="module")
def pretrain_quick(pretrain):
    torch_threads = torch.get_num_threads()
    try:
        return pretrain.main(["--quick", "--threads", "1", "--no-eager"])
    finally:
        torch.set_num_threads(torch_threads)


def test_pretrain_quick_prints_a_ratio_table(pretrain_quick, capsys):
    out = pretrain_quick
    table = out["table"]
    assert table.startswith("| config |") and "mlstep ms/step" in table and "hf-sdpa ms/step" in table
    assert len(table.splitlines()) == 3  # header, rule, one size
    ratios = _ratios(table)
    assert len(ratios) == 2 and all(r > 0 for r in ratios)  # wall and CPU-time speed-ups
    (result,) = out["results"]
    assert set(result["ms_per_step"]) == {"mlstep", "hf-sdpa"}
    assert all(ms > 0 for ms in result["ms_per_step"].values())
    assert result["speedup"]["hf-sdpa"] == pytest.approx(
        result["ms_per_step"]["hf-sdpa"] / result["ms_per_step"]["mlstep"])
    assert result["masked_positions"] > 0


def test_pretrain_same_loss_at_step0(pretrain_quick):
    """HF weights copied into mlstep (bert_from_hf), dropout 0: the same loss on the same batch."""
    losses = pretrain_quick["step0_loss"]
    assert losses["mlstep"] == pytest.approx(losses["hf"], rel=1e-5, abs=1e-5)
    assert losses["mlstep"] > 1.0  # an untrained model over a 300-token vocabulary: ~ln 300 + ln 2


def test_pretrain_models_start_identical_and_batch_is_masked(pretrain):
    size = pretrain.QUICK_SIZES[0]
    models = pretrain.build_models(size, torch.device("cpu"), dropout=0.0, eager=True)
    batch = pretrain.make_batch(size, torch.device("cpu"))
    with torch.no_grad():
        losses = {name: float(pretrain.loss_fn(name, m, batch)) for name, m in models.items()}
    assert losses["hf-eager"] == pytest.approx(losses["hf-sdpa"], rel=1e-5)
    assert losses["mlstep"] == pytest.approx(losses["hf-sdpa"], rel=1e-5)
    # The timed models (default dropout) really train with dropout 0.1 in both libraries.
    timed = pretrain.build_models(size, torch.device("cpu"), eager=False)
    assert timed["mlstep"].config.dropout == pytest.approx(0.1)
    assert timed["hf-sdpa"].config.hidden_dropout_prob == pytest.approx(0.1)
    assert timed["hf-sdpa"].config.attention_probs_dropout_prob == pytest.approx(0.1)
    assert timed["hf-sdpa"].config.hidden_act == "gelu"
    labels = batch.mlm_labels
    chosen = labels != -100
    assert 0 < chosen.float().mean() < 0.4  # ~15 % of the ordinary tokens
    assert (labels[chosen] >= len(pretrain.SPECIAL_IDS)).all()  # specials are never targets


def test_train_flops_counts_the_matmuls_the_model_runs(pretrain):
    """train_flops (used for MFU on a GPU) = 3 × the forward matmul FLOPs counted with hooks."""
    size = pretrain.Size("t", layers=2, hidden=32, heads=4, seq_len=16, batch=3, vocab=200, repeats=1)
    model = pretrain.build_models(size, torch.device("cpu"), dropout=0.0, eager=False)["mlstep"]
    batch = pretrain.make_batch(size, torch.device("cpu"))
    linear = _linear_flops(model, lambda: pretrain.loss_fn("mlstep", model, batch))
    # Attention matmuls (QKᵀ and AV) are not nn.Linear: 2 · 2 · T · T · d per sequence and layer.
    attention = size.layers * size.batch * 4 * size.seq_len * size.seq_len * size.hidden
    masked = int((batch.mlm_labels != -100).sum())
    assert pretrain.train_flops(size, masked) == pytest.approx(3 * (linear + attention))


def test_interleaved_alternates_and_reverses():
    timing_mod = _load("_timing")
    calls: list[str] = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    t = timing_mod.interleaved(fns, repeats=4, warmup=1)
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert len(t["a"]) == len(t["b"]) == len(t.cpu["a"]) == 4
    assert t.median_ms("a") >= 0
    with pytest.raises(ValueError, match="repeats"):
        timing_mod.interleaved(fns, repeats=0)


def test_attention_quick_prints_ratio_tables():
    attention = _load("attention")
    torch_threads = torch.get_num_threads()
    try:
        out = attention.main(["--quick", "--threads", "1"])
    finally:
        torch.set_num_threads(torch_threads)
    ratios = _ratios(out["table"])
    assert len(ratios) == 2 and all(r > 0 for r in ratios)  # one SDPA shape, one MHA shape
    for r in out["sdpa"] + out["mha"]:
        assert r["max_abs_diff"] < 1e-5  # the two paths compute the same attention
        assert all(ms > 0 for ms in r["ms"].values())


def test_gpu_path_skips_gracefully_without_cuda(pretrain, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is present: the GPU path would run instead of skipping")
    out = pretrain.main(["--device", "cuda", "--quick"])
    assert "skipped" in out and out["results"] == []
    assert "skipped" in capsys.readouterr().out


def test_gpu_check_dry_run_on_the_cpu(tmp_path):
    """``gpu_check.py --device cpu --quick`` runs every part end to end (CI's guard against a GPU
    window lost to a typo) and writes its JSON and markdown report."""
    pytest.importorskip("transformers")
    gpu_check = _load("gpu_check")
    threads = torch.get_num_threads()
    try:
        result = gpu_check.main(["--device", "cpu", "--quick", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    for part in ("tests", "bert_step", "recipe", "ddp", "gpt_target"):
        assert "error" not in result[part], result[part].get("traceback")
    assert result["tests"]["ok"] and result["recipe"]["ok"] and result["ddp"]["ok"]
    target = result["gpt_target"]  # time to target: stopped at the first evaluation at or under it
    assert target["ok"] and target["reached"] and target["target_perplexity"] == gpu_check.QUICK_TARGET_PPL
    *before, last = [c["perplexity"] for c in target["curve"]]
    assert last <= target["target_perplexity"] < min(before, default=float("inf"))
    assert target["steps"] == 10 * len(target["curve"]) and 0 < target["train_seconds"] <= target["seconds"]
    assert target["tokens"] == target["steps"] * target["batch_size"] * 128
    assert result["recipe"]["max_abs_gap"] == 0.0  # the CPU against itself: the same run
    assert result["bert_step"]["tokens_per_s"]["mlstep"] > 0
    assert "error" not in result["gpt_step"]
    report = (tmp_path / "gpu_check.md").read_text()
    assert "| bert_step |" in report and (tmp_path / "gpu_check.json").exists()
    assert f"time to target: course GPT, held-out perplexity | ≤ {gpu_check.QUICK_TARGET_PPL} in" in report
    assert gpu_check.peak_tflops(torch.device("cpu"), None) is None
    assert gpu_check.gpt_train_flops(vocab=10, layers=1, hidden=2, seq_len=3, batch=1) == 3.0 * 3 * (
        2 * 12 * 4 + 2 * 2 * 10 + 4 * 3 * 2)


# --- benchmarks/gpt.py ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gpt_bench():
    pytest.importorskip("transformers")
    return _load("gpt")


@pytest.fixture(scope="module")
def gpt_quick(gpt_bench):
    torch_threads = torch.get_num_threads()
    try:
        return gpt_bench.main(["--quick", "--threads", "1"])
    finally:
        torch.set_num_threads(torch_threads)


def test_gpt_quick_prints_both_tables_and_compares_like_with_like(gpt_quick):
    train_table, gen_table = gpt_quick["table"].split("\n\n")
    assert train_table.startswith("| config |") and "HF ms/step" in train_table
    assert "cache speed-up" in gen_table and "HF generate tok/s" in gen_table
    assert len(_ratios(train_table)) == 1 and len(_ratios(gen_table)) == 2
    # the same function of the same batch: HF weights copied into mlstep, dropout 0
    assert gpt_quick["step0_loss"]["mlstep"] == pytest.approx(gpt_quick["step0_loss"]["hf"], rel=1e-5)
    (gen,) = gpt_quick["generation"]
    assert gen["same_tokens"] == {"no cache": True, "hf": True}  # greedy: identical tokens
    assert gen["size"]["new_tokens"] == 24 and all(v > 0 for v in gen["tokens_per_s"].values())


def test_gpt_train_flops_counts_the_matmuls_the_model_runs(gpt_bench):
    """train_flops (used for MFU on a GPU) = 3 × the forward matmul FLOPs counted with hooks."""
    size = gpt_bench.Size("t", layers=2, hidden=32, heads=4, seq_len=16, batch=3, vocab=200, repeats=1)
    model = gpt_bench.build_models(size, torch.device("cpu"), dropout=0.0)["mlstep"]
    ids = gpt_bench.make_batch(size, torch.device("cpu"))
    linear = _linear_flops(model, lambda: gpt_bench.loss_fn("mlstep", model, ids))
    attention = size.layers * size.batch * 4 * size.seq_len * size.seq_len * size.hidden  # QKᵀ and AV
    assert gpt_bench.train_flops(size) == pytest.approx(3 * (linear + attention))


def test_gpt_gpu_path_skips_gracefully_without_cuda(gpt_bench, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is present: the GPU path would run instead of skipping")
    out = gpt_bench.main(["--device", "cuda", "--quick"])
    assert "skipped" in out and out["train"] == [] and "skipped" in capsys.readouterr().out


# --- benchmarks/roofline.py ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def roofline():
    return _load("roofline")


def test_roofline_quick_measures_both_precisions_against_the_peak(roofline, tmp_path):
    threads = torch.get_num_threads()
    try:
        out = roofline.main(["--quick", "--threads", "1", "--out", str(tmp_path / "roofline.json")])
    finally:
        torch.set_num_threads(threads)
    assert out["peak"]["n"] == 256 and out["environment"]["threads"] == 1
    assert all(out["peak"][p]["gflops"] > 0 for p in ("fp32", "bf16"))
    assert [r["case"] for r in out["results"]] == ["gpt-quick", "bert-quick"]
    for r in out["results"]:
        for p in ("fp32", "bf16"):
            assert r["ms_per_step"][p] > 0
            assert r["achieved_gflops"][p] == pytest.approx(r["gflop_per_step"] / (r["ms_per_step"][p] / 1e3))
            assert r["share_of_peak"][p] == pytest.approx(r["achieved_gflops"][p] / out["peak"][p]["gflops"])
    table = out["table"]
    assert table.startswith("| step |") and "% of bf16 peak" in table and len(table.splitlines()) == 5
    assert "mkldnn_bf16" in out["environment"]["bf16_support"]
    assert (tmp_path / "roofline.json").exists()


def test_roofline_formula_equals_the_flop_counter(roofline):
    """The analytic count (GPT and BERT, pre- and post-LN) equals FlopCounterMode's count of one
    forward + backward with attention on the math path (torch >= 2.3; before, the counter cannot
    see attention and counts less)."""
    exact = roofline.sdpa_kernel is not None
    size = roofline.Size("t", layers=2, hidden=32, heads=4, seq_len=16, batch=3, vocab=200, repeats=1)
    for kind, pre_norm in (("gpt", True), ("bert", False), ("bert", True)):
        model, loss, flops = roofline.build(roofline.Case(kind, size, pre_norm), torch.device("cpu"))
        counted = roofline.counted_flops(model, loss)
        if exact:
            assert counted == pytest.approx(flops, rel=1e-9), kind
        else:
            assert 0.5 * flops < counted <= flops


def test_roofline_course_sizes_are_the_committed_models(roofline):
    gpt, bert = roofline.course_case("gpt", 1), roofline.course_case("bert", 1)
    assert (gpt.size.layers, gpt.size.hidden, gpt.size.seq_len, gpt.size.batch, gpt.size.vocab) == (2, 64, 128, 32, 2000)
    assert (bert.size.layers, bert.size.hidden, bert.size.seq_len, bert.size.batch, bert.size.vocab) == (2, 64, 64, 64, 2000)
    assert gpt.pre_norm and bert.pre_norm  # the course BERT is pre-LN too


# --- benchmarks/rollout.py ----------------------------------------------------------------------

def test_rollout_quick_compares_the_same_model_with_hf_generate():
    out = _load("rollout").main(["--quick", "--threads", "1"])
    if "skipped" in out:
        pytest.skip(out["skipped"])
    (r,) = out["rollout"]
    assert r["same_greedy_tokens"]  # the same weights: identical greedy tokens
    assert r["size"]["new_tokens"] == 8 and all(v > 0 for v in r["tokens_per_s"].values())
    assert len(_ratios(out["table"])) == 1 and "HF generate tok/s" in out["table"]
