"""mlstep.experiments.modern (chapter 12's ablation): equal parameters per arm, the measurements
(KV cache, per-position loss), the lr grid that grows at a winning edge, a tiny run end to end,
and the committed result file the chapter reads."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

import mlstep.experiments.modern as mod
from mlstep.experiments.results import load_results
from mlstep.gpt import GPT
from mlstep.tasks.causal_lm import evaluate_lm
from mlstep.tools.runtime import count_parameters

TINY = replace(mod.ModernSetup(), steps=3, lrs=(1e-3,), samples=2, block_size=16)


@pytest.fixture(scope="module")
def data():
    return mod.load_data(TINY)


@pytest.mark.parametrize("name", list(mod.ARMS))
def test_every_arm_has_the_gpt2_blocks_parameters_within_one_step_of_F(name):
    setup = mod.ModernSetup()
    base, arm = (GPT(mod.arm_config(mod.ARMS[n], 2000, setup)) for n in ("GPT-2 block", name))
    per_unit_of_F = setup.num_layers * (2 * setup.hidden_size + 1)  # fc1 and fc2: a row, a column and a bias
    if arm.config.ffn == "swiglu":
        per_unit_of_F = setup.num_layers * (3 * setup.hidden_size + 2 * arm.config.bias)
    assert abs(count_parameters(arm.decoder) - count_parameters(base.decoder)) <= per_unit_of_F / 2
    assert arm.config.max_position == 2 * setup.block_size
    assert all(getattr(arm.config, k) == v for k, v in mod.ARMS[name].items() if k != "ffn_init")
    assert (arm.wpe is None) == (arm.config.positions == "rope")


def test_ffn_init_redraws_only_the_feed_forward_input_projections():
    torch.manual_seed(0)
    plain = mod.build_arm(mod.ARMS["+ SwiGLU"], 50, TINY)
    torch.manual_seed(0)
    scaled = mod.build_arm(mod.ARMS["+ SwiGLU, FFN init 1/√D"], 50, TINY)
    for name, p in plain.named_parameters():
        redrawn = name.endswith(("ffn.fc1.weight", "ffn.up.weight"))
        assert torch.equal(p, dict(scaled.named_parameters())[name]) != redrawn, name
        if redrawn:
            assert dict(scaled.named_parameters())[name].std().item() == pytest.approx(TINY.hidden_size ** -0.5, rel=0.1)


def test_kv_cache_bytes_are_k_and_v_for_every_layer_kv_head_and_position():
    for kv_heads in (4, 2, 1):
        model = GPT(mod.arm_config({"num_kv_heads": kv_heads}, 50, TINY))
        c = model.config
        expected = 2 * c.num_layers * kv_heads * (c.hidden_size // c.num_heads) * 3 * 20 * 4  # float32
        assert mod.kv_cache_bytes(model, 3, 20) == expected


def test_position_losses_average_to_the_held_out_loss():
    torch.manual_seed(0)
    model = GPT(mod.arm_config({"positions": "rope"}, 50, TINY)).eval()
    blocks = torch.randint(0, 50, (5, 2 * TINY.block_size))
    losses = mod.position_losses(model, blocks, batch_size=2)
    assert losses.shape == (2 * TINY.block_size - 1,)
    assert losses.mean().item() == pytest.approx(evaluate_lm(model, blocks)["loss"], rel=1e-5)


def test_the_lr_grid_grows_while_an_edge_wins(monkeypatch):
    best = 0.1
    monkeypatch.setattr(mod, "run_arm", lambda name, lr, seed, data, setup: {"valid_perplexity": abs(math.log(lr / best))})
    lr, grid = mod.tune_lr("GPT-2 block", {}, replace(TINY, lrs=(1e-3, 3e-3, 1e-2)))
    assert sorted(grid) == pytest.approx([1e-3, 3e-3, 1e-2, 3e-2, 9e-2, 0.27])  # 9e-2 wins inside the grid
    assert lr == pytest.approx(9e-2)


def test_a_tiny_sweep_runs_end_to_end(data, tmp_path, monkeypatch):
    monkeypatch.setattr(mod, "ModernSetup", lambda: TINY)
    monkeypatch.setattr(mod, "load_data", lambda setup: data)
    out = tmp_path / "12.json"
    mod.main(["--quick", "--out", str(out)])
    arms = json.loads(out.read_text())["arms"]
    assert list(arms) == ["GPT-2 block", "Llama block"]
    for arm in arms.values():
        assert set(arm["seeds"]) == {"0"} and arm["kv_cache_bytes"] > 0
        assert all(math.isfinite(v) for v in arm["seeds"]["0"].values())
        assert 0 <= arm["grammatical"]["mean"] <= 1
    assert arms["Llama block"]["kv_cache_bytes"] == arms["GPT-2 block"]["kv_cache_bytes"] // 2


def test_the_committed_sweep_has_every_arm_three_seeds_and_an_interior_lr():
    result = load_results("12_modern.json")
    assert list(result["arms"]) == list(mod.ARMS) and result["seeds"] == [0, 1, 2]
    base = result["arms"]["GPT-2 block"]["decoder_parameters"]
    for name, arm in result["arms"].items():
        assert len(arm["perplexity"]["values"]) == 3, name
        lrs = sorted(float(lr) for lr in arm["lr_grid"])
        assert lrs[0] < arm["lr"] < lrs[-1], f"{name}: lr {arm['lr']} at the edge of its grid {lrs}"
        assert abs(arm["decoder_parameters"] - base) / base < 0.01, name
