"""mlstep.train and mlstep.tools.checkpoint: the loop against hand-written references, exact resume,
atomic checkpoints, error messages, and DDP gradients against a single process."""

from __future__ import annotations

import dataclasses
import importlib.util
import multiprocessing
import os
import random
import socket
import sys
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import mlstep.tools.checkpoint as ckpt_mod
from mlstep.tools.checkpoint import load_checkpoint, save_checkpoint
from mlstep.tools.runtime import to_device
from mlstep.train import History, TrainConfig, lr_schedule, make_optimizer, train

HERE = Path(__file__).resolve().parent
QUIET = dict(progress=False, device="cpu")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class TinyNet(nn.Module):
    """A tiny classifier with each kind of parameter the decay rule tells apart (embedding optional)."""

    def __init__(self, d_in=4, d_hidden=16, n_out=3, dropout=0.0, vocab=0):
        super().__init__()
        self.emb = nn.Embedding(vocab, d_in) if vocab else None
        self.lin1 = nn.Linear(d_in, d_hidden)
        self.norm = nn.LayerNorm(d_hidden)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(d_hidden, n_out)

    def forward(self, x):
        return self.head(self.drop(torch.tanh(self.norm(self.lin1(x)))))


def blobs(n=96, seed=0):
    """Three Gaussian blobs in 4-d: a classification problem a tiny MLP solves quickly."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centers = torch.tensor([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    return centers[y] + 0.5 * torch.randn(n, 4, generator=g), y


def ce_step(model, batch):
    x, y = batch
    return F.cross_entropy(model(x), y)


def make(seed=1, **kw):
    torch.manual_seed(seed)
    return TinyNet(**kw)


def losses(h):
    return [(r["step"], r["loss"]) for r in h.train]


# --- learning ---------------------------------------------------------------------------------


def test_loss_decreases_and_metrics_recorded():
    x, y = blobs()
    data = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 96, 16)]

    def step(model, batch):
        logits = model(batch[0])
        return F.cross_entropy(logits, batch[1]), {
            "acc": (logits.argmax(-1) == batch[1]).float().mean()
        }

    h = train(make(), data, step, TrainConfig(max_steps=60, lr=1e-2, log_every=10, **QUIET))
    assert [s for s, _ in losses(h)] == [10, 20, 30, 40, 50, 60]
    assert losses(h)[-1][1] < 0.3 * losses(h)[0][1]
    assert h.train[-1]["step"] == 60 and h.train[-1]["acc"] > 0.95
    assert h.series("acc") == ([r["step"] for r in h.train], [r["acc"] for r in h.train])
    assert h.series("train.loss") == h.series("loss")
    assert History(**dataclasses.asdict(h)) == h


# --- optimizer groups ---------------------------------------------------------------------------


def test_weight_decay_groups():
    model = make(vocab=10)
    model.lin1.bias.requires_grad_(False)  # frozen: must not reach the optimizer
    opt = make_optimizer(model, TrainConfig(max_steps=1, weight_decay=0.05))
    wd = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert wd[id(model.lin1.weight)] == 0.05 and wd[id(model.head.weight)] == 0.05
    for p in (model.head.bias, model.norm.weight, model.norm.bias, model.emb.weight):
        assert wd[id(p)] == 0.0
    assert id(model.lin1.bias) not in wd
    assert len(wd) == sum(1 for p in model.parameters() if p.requires_grad)


def test_caller_param_groups_keep_their_lr():
    model = make(vocab=10)
    groups = [
        {"params": model.emb.parameters(), "lr": 1e-2},
        {"params": [model.head.weight], "lr": 5e-4, "weight_decay": 0.3},
    ]
    opt = make_optimizer(model, TrainConfig(max_steps=1, lr=1e-3), groups)
    by_param = {id(p): g for g in opt.param_groups for p in g["params"]}
    assert by_param[id(model.emb.weight)]["lr"] == 1e-2
    assert (
        by_param[id(model.head.weight)]["lr"] == 5e-4
        and by_param[id(model.head.weight)]["weight_decay"] == 0.3
    )
    assert by_param[id(model.head.bias)]["weight_decay"] == 0.0  # the default group: biases never decay
    assert by_param[id(model.lin1.weight)]["lr"] == 1e-3  # unlisted → default groups
    assert len(by_param) == sum(1 for _ in model.parameters())
    # a foreign or repeated parameter is an error
    with pytest.raises(ValueError, match="not in the model"):
        make_optimizer(model, TrainConfig(max_steps=1), [{"params": [nn.Parameter(torch.ones(2))]}])
    with pytest.raises(ValueError, match="already in an earlier group"):
        make_optimizer(
            model,
            TrainConfig(max_steps=1),
            [{"params": [model.head.weight]}, {"params": [model.head.weight]}],
        )
    frozen = make().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        make_optimizer(frozen, TrainConfig(max_steps=1))


# --- schedule -----------------------------------------------------------------------------------


def test_lr_schedule_formula():
    # the course's pretraining schedule: warmup 6 % → constant → linear decay over the last 20 %
    f = lr_schedule(TrainConfig(max_steps=100, warmup_ratio=0.06, decay_ratio=0.2))
    assert f(0) == pytest.approx(1 / 6) and f(2) == pytest.approx(3 / 6) and f(5) == 1.0
    assert f(6) == f(50) == f(79) == f(80) == 1.0
    assert f(90) == pytest.approx(0.5) and f(99) == pytest.approx(0.05)
    f = lr_schedule(TrainConfig(max_steps=100, warmup_ratio=0.04, decay_ratio=0.0))  # constant
    assert [f(t) for t in (0, 3, 4, 99, 150)] == [0.25, 1.0, 1.0, 1.0, 1.0]
    f = lr_schedule(TrainConfig(max_steps=10))  # no warmup: plain linear decay from the peak
    assert f(0) == 1.0 and f(5) == pytest.approx(0.5) and f(12) == 0.0  # past the end: stays at 0


def test_loop_follows_the_schedule_with_group_lrs():
    x, y = blobs(32)
    config = TrainConfig(
        max_steps=20, lr=2e-3, warmup_ratio=0.2, decay_ratio=0.5, log_every=1, **QUIET
    )
    model = make()
    # the caller's group comes first, so the recorded lr is its own peak (1e-2) under the schedule
    h = train(
        model,
        [(x, y)],
        ce_step,
        config,
        param_groups=[{"params": model.head.parameters(), "lr": 1e-2}],
    )
    f = lr_schedule(config)
    assert h.series("lr") == (list(range(1, 21)), [pytest.approx(1e-2 * f(s - 1), rel=1e-12) for s in range(1, 21)])
    assert f(3) == 1.0 and f(10) == 1.0 and f(19) == pytest.approx(0.1)


# --- against a hand-written loop ------------------------------------------------------------------


def test_matches_reference_loop_with_clipping_and_decay():
    """train() = zero_grad, forward, backward, clip_grad_norm_, AdamW step, LambdaLR step."""
    x, y = blobs(64)
    data = [(x[:32], y[:32]), (x[32:], y[32:])]
    config = TrainConfig(
        max_steps=6, lr=5e-2, weight_decay=0.1, warmup_ratio=1 / 3, grad_clip=0.3, **QUIET
    )
    model = make()
    h = train(model, data, ce_step, config)

    ref = make()
    decay = [ref.lin1.weight, ref.head.weight]
    no_decay = [ref.lin1.bias, ref.head.bias, ref.norm.weight, ref.norm.bias]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=5e-2
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: (t + 1) / 2 if t < 2 else 1 - (t - 2) / 4
    )
    norms = []
    for t in range(6):
        opt.zero_grad()
        ce_step(ref, data[t % 2]).backward()
        norms.append(nn.utils.clip_grad_norm_(ref.parameters(), 0.3).item())
        opt.step()
        sched.step()
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-6)
    assert max(norms) > 0.3  # clipping was active
    assert h.train[-1]["grad_norm"] == pytest.approx(sum(norms[:6]) / 6)  # log_every=10 → one record


def test_grad_clipping_clips():
    torch.manual_seed(0)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    model = make()
    with torch.no_grad():
        model.head.weight.mul_(30)  # large logits → large gradients
    ref = make()
    ref.load_state_dict(model.state_dict())
    h = train(model, [(x, y)], ce_step, TrainConfig(max_steps=1, grad_clip=0.5, **QUIET))

    ce_step(ref, (x, y)).backward()
    norm = nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
    assert norm > 1.0  # the test would pass trivially with small gradients
    for p, q in zip(
        model.parameters(), ref.parameters(), strict=True
    ):  # the loop leaves the clipped grads in .grad
        torch.testing.assert_close(p.grad, q.grad, atol=1e-6, rtol=1e-6)
    total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert total == pytest.approx(0.5, rel=1e-5)
    assert h.series("grad_norm") == ([1], [pytest.approx(norm.item(), rel=1e-6)])


# --- evaluation ---------------------------------------------------------------------------------


def test_eval_fn_called_at_the_right_steps_under_no_grad():
    x, y = blobs(32)
    seen = []

    def eval_fn(model):
        assert not torch.is_grad_enabled() and not model.training
        seen.append(len(seen))
        return {"loss": ce_step(model, (x, y)), "n": 3}

    model = make(dropout=0.5)
    h = train(
        model, [(x, y)], ce_step, TrainConfig(max_steps=10, eval_every=4, **QUIET), eval_fn=eval_fn
    )
    assert [r["step"] for r in h.evals] == [4, 8, 10]
    assert all(isinstance(r["loss"], float) and r["n"] == 3.0 for r in h.evals)
    assert model.training  # back in train mode
    assert h.series("train.loss")[0] == [10]  # the training loss...
    assert h.series("eval.loss") == ([4, 8, 10], [r["loss"] for r in h.evals])  # ...and eval_fn's
    assert h.series("loss") == h.series("eval.loss")  # a plain name looks at the evaluations first
    with pytest.raises(KeyError, match="no series 'train.n'"):
        h.series("train.n")


# --- exact resume -------------------------------------------------------------------------------


def _loader(generator_seed):
    x, y = blobs(24, seed=3)
    gen = None if generator_seed is None else torch.Generator().manual_seed(generator_seed)
    return DataLoader(
        TensorDataset(x, y), batch_size=4, shuffle=True, generator=gen
    )  # 6 batches per epoch


@pytest.mark.parametrize("generator_seed", [None, 123])
@pytest.mark.parametrize(
    "interrupt_at", [8, 11]
)  # last checkpoint at an epoch end (6) / mid-epoch (9)
def test_resume_reproduces_the_uninterrupted_run(tmp_path, generator_seed, interrupt_at):
    def eval_fn(model):
        return {"w": model.head.weight.sum()}

    cfg = TrainConfig(max_steps=14, lr=1e-2, warmup_ratio=0.2, log_every=1, eval_every=5, **QUIET)
    full_model = make(dropout=0.3)
    full = train(full_model, _loader(generator_seed), ce_step, cfg, eval_fn=eval_fn)

    path = str(tmp_path / "run.pt")
    cfg_ckpt = dataclasses.replace(cfg, checkpoint_path=path, checkpoint_every=3)
    calls = []

    def interrupting_step(model, batch):
        calls.append(1)
        if len(calls) == interrupt_at:
            raise KeyboardInterrupt
        return ce_step(model, batch)

    part = train(
        make(dropout=0.3), _loader(generator_seed), interrupting_step, cfg_ckpt, eval_fn=eval_fn
    )
    assert part.interrupted and len(part.train) == interrupt_at - 1

    torch.manual_seed(999)  # disturb every global generator: resuming must not depend on them
    random.seed(999)
    resumed_model = make(seed=7, dropout=0.3)  # other initial weights: they must be overwritten
    resumed = train(
        resumed_model, _loader(generator_seed), ce_step, cfg_ckpt, eval_fn=eval_fn, resume=True
    )

    assert resumed.train == full.train  # bit for bit, step by step (losses, lrs, grad norms)
    assert resumed.evals == full.evals
    for p, q in zip(resumed_model.parameters(), full_model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_resume_true_without_checkpoint_starts_fresh(tmp_path):
    x, y = blobs(16)
    cfg = TrainConfig(max_steps=2, checkpoint_path=str(tmp_path / "c.pt"), **QUIET)
    h = train(make(), [(x, y)], ce_step, cfg, resume=True)
    assert len(h.train) == 1 and (tmp_path / "c.pt").exists()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(make(), [(x, y)], ce_step, cfg, resume=str(tmp_path / "missing.pt"))


# --- checkpoints --------------------------------------------------------------------------------


def _saved(tmp_path, step=5):
    model = make()
    opt = torch.optim.AdamW(model.parameters())
    path = tmp_path / "ckpt.pt"
    history = dataclasses.asdict(History(train=[{"step": 1, "loss": 2.0}]))
    save_checkpoint(path, model, opt, step=step, history=history, extra={"note": "x"})
    return model, path


def test_checkpoint_loads_with_weights_only(tmp_path):
    model, path = _saved(tmp_path)
    raw = torch.load(path, weights_only=True)  # no pickled code needed
    assert (
        raw["step"] == 5
        and raw["history"]["train"] == [{"step": 1, "loss": 2.0}]
        and raw["extra"] == {"note": "x"}
    )
    assert isinstance(raw["rng"]["torch"], torch.Tensor)
    other = make(seed=9)
    ck = load_checkpoint(path, other)
    assert ck["step"] == 5
    for p, q in zip(other.parameters(), model.parameters(), strict=True):
        assert torch.equal(p, q)
    # RNG states survive the round trip
    state = ckpt_mod.rng_state()
    a = (random.random(), torch.rand(3), np.random.rand())
    ckpt_mod.set_rng_state(state)
    b = (random.random(), torch.rand(3), np.random.rand())
    assert a[0] == b[0] and torch.equal(a[1], b[1]) and a[2] == b[2]


def test_atomic_save_keeps_the_old_file(tmp_path, monkeypatch):
    _, path = _saved(tmp_path, step=5)
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, make(), step=6)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["step"] == 5
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pt"]  # no temporary file left behind


def test_mismatched_config_names_keys_and_shapes(tmp_path):
    _, path = _saved(tmp_path)
    other = TinyNet(d_hidden=32, vocab=5)
    with pytest.raises(ValueError) as err:
        load_checkpoint(path, other)
    msg = str(err.value)
    assert "lin1.weight: checkpoint (16, 4) vs model (32, 4)" in msg
    assert "missing in checkpoint (1): emb.weight" in msg
    (tmp_path / "junk.pt").write_bytes(b"")
    torch.save({"a": 1}, tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="not an mlstep checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_keyboard_interrupt_leaves_a_loadable_checkpoint(tmp_path, capsys):
    x, y = blobs(16)
    path = tmp_path / "ck.pt"

    def step(model, batch):
        if step.calls == 6:
            raise KeyboardInterrupt
        step.calls += 1
        return ce_step(model, batch)

    step.calls = 0
    cfg = TrainConfig(
        max_steps=20, log_every=1, checkpoint_path=str(path), checkpoint_every=4, **QUIET
    )
    h = train(make(), [(x, y)], step, cfg)
    assert h.interrupted and [s for s, _ in losses(h)] == [1, 2, 3, 4, 5, 6]
    assert "Interrupted at step 6/20; last checkpoint: step 4" in capsys.readouterr().out
    raw = torch.load(path, weights_only=True)
    assert raw["step"] == 4 and len(raw["history"]["train"]) == 4
    assert sorted(os.listdir(tmp_path)) == ["ck.pt"]


# --- precision ---------------------------------------------------------------------------------

BF16_TOLERANCE = 0.05  # relative gap in every logged loss; measured 0.06-1.2 % over seeds 0-3


def _tiny_gpt_run(precision: str, seen: list | None = None) -> list[float]:
    """20 steps of a tiny GPT (mlstep.GPT, 2 layers, d=32) learning to count mod 64, seed 0."""
    from mlstep.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(64, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=128,
                          max_position=32))
    starts = torch.randint(0, 64, (64, 1), generator=torch.Generator().manual_seed(0))
    ids = (starts + torch.arange(32)) % 64  # (64, 32): each row counts on from a random start
    data = [ids[i : i + 16] for i in range(0, 64, 16)]

    def step(model, batch):
        out = model(batch, batch)
        if seen is not None:
            seen.append((out.logits.dtype, out.loss.dtype))
        return out.loss

    config = TrainConfig(max_steps=20, lr=1e-2, precision=precision, log_every=1, **QUIET)
    history = train(model, data, step, config)
    if seen is not None:
        seen.append(("weights", {p.dtype for p in model.parameters()}))
    return [r["loss"] for r in history.train]


def test_bf16_on_the_cpu_trains_like_fp32():
    """``precision="bf16"`` on a CPU: autocast runs the matmuls in bfloat16 and the run follows the
    float32 one to within BF16_TOLERANCE at every step (on a CPU without bf16 matrix units,
    PyTorch emulates them: the same numbers, usually slower than float32)."""
    fp32, bf16 = _tiny_gpt_run("fp32"), _tiny_gpt_run("bf16")
    assert len(fp32) == len(bf16) == 20
    assert bf16[-1] < 0.6 * bf16[0] and fp32[-1] < 0.6 * fp32[0]  # both learn (4.17 -> 1.83)
    gaps = [abs(a - b) / a for a, b in zip(fp32, bf16)]
    assert max(gaps) <= BF16_TOLERANCE, f"bf16 drifted from fp32 by {max(gaps):.1%}"
    assert bf16 != fp32  # bf16 really ran: the rounding shows in the losses


def test_bf16_on_the_cpu_is_autocast_and_fp32_stays_the_default():
    """Asked for bf16 on a CPU, the loop trains under CPU autocast: the matmuls' outputs (the
    logits) are bfloat16, the loss is float32 (autocast runs cross-entropy in float32), and the
    weights stay float32. ``"auto"`` on a CPU means float32: no autocast at all."""
    seen: list = []
    _tiny_gpt_run("bf16", seen)
    assert seen[0] == (torch.bfloat16, torch.float32)
    assert seen[-1] == ("weights", {torch.float32})
    seen.clear()
    _tiny_gpt_run("auto", seen)
    assert seen[0] == (torch.float32, torch.float32)
    assert TrainConfig(max_steps=1).precision == "auto"


def test_bf16_without_bf16_matrix_units_still_runs():
    """On a CPU without bf16 matrix instructions (AVX512-BF16, AMX), PyTorch falls back to
    emulating bf16 matmuls: the same training, but large matmuls run far slower than in float32
    (README, "bf16 on a CPU"). Simulated here by capping oneDNN at AVX2 (``ONEDNN_MAX_CPU_ISA``,
    x86 only) in a fresh process."""
    import platform
    import subprocess

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("ONEDNN_MAX_CPU_ISA only caps x86 CPUs")
    code = ("import sys, torch; torch.set_num_threads(1); sys.path.insert(0, sys.argv[1]); import test_train as t; "
            "f = getattr(torch.ops.mkldnn, '_is_mkldnn_bf16_supported', lambda: None); print(f()); "
            "a, b = t._tiny_gpt_run('fp32'), t._tiny_gpt_run('bf16'); "
            "print(max(abs(x - y) / x for x, y in zip(a, b)))")
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2")
    result = subprocess.run([sys.executable, "-c", code, str(HERE)], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    supported, gap = result.stdout.split()[-2:]
    assert supported in ("False", "None")  # oneDNN no longer offers bf16 kernels
    assert float(gap) <= BF16_TOLERANCE


# --- errors and data handling -------------------------------------------------------------------


def test_clear_errors():
    x, y = blobs(16)
    cfg = TrainConfig(max_steps=3, **QUIET)
    with pytest.raises(ValueError, match="data yielded no batches"):
        train(make(), [], ce_step, cfg)
    with pytest.raises(ValueError, match="no batches in epoch 1.*read only once"):
        train(make(), iter([(x, y)]), ce_step, cfg)
    with pytest.raises(ValueError, match="scalar loss that requires grad.*got float at step 1"):
        train(make(), [(x, y)], lambda m, b: 1.0, cfg)
    with pytest.raises(ValueError, match=r"shape \(16,\) with requires_grad=True at step 1"):
        train(make(), [(x, y)], lambda m, b: F.cross_entropy(m(b[0]), b[1], reduction="none"), cfg)

    def nan_at_2(model, batch, calls=[]):  # noqa: B006 - a call counter
        calls.append(1)
        loss = ce_step(model, batch)
        return loss * float("nan") if len(calls) == 2 else loss

    with pytest.raises(FloatingPointError, match="nan at step 2"):
        train(make(), [(x, y)], nan_at_2, cfg)
    with pytest.raises(ValueError, match="requires_grad=False at step 1"):
        train(make(), [(x, y)], lambda m, b: ce_step(m, b).detach(), cfg)
    for bad, named in (
        (dict(max_steps=0), "max_steps=0"),
        (dict(max_steps=10, precision="fp16"), "precision='fp16'"),
        (dict(max_steps=10, decay_ratio=1.5), "decay_ratio=1.5"),
        (dict(max_steps=10, warmup_ratio=-0.1, lr=0), "lr=0, warmup_ratio=-0.1"),
    ):
        with pytest.raises(ValueError, match=f"TrainConfig got invalid values: {named}"):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="resume=True needs config.checkpoint_path"):
        train(make(), [(x, y)], ce_step, cfg, resume=True)


def test_distributed_sampler_is_told_the_epoch():
    # without set_epoch, a DistributedSampler repeats epoch 0's order forever
    x = torch.arange(8.0).unsqueeze(1)
    ds = TensorDataset(x, torch.zeros(8, dtype=torch.long))
    sampler = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=5)
    seen = []

    def step(model, batch):
        seen.extend(batch[0].squeeze(1).long().tolist())
        return model(batch[0].expand(-1, 4)).sum() * 0.0 + model.head.bias.sum()

    train(
        make(),
        DataLoader(ds, batch_size=4, sampler=sampler),
        step,
        TrainConfig(max_steps=4, **QUIET),
    )
    expected = [
        torch.randperm(8, generator=torch.Generator().manual_seed(5 + e)).tolist() for e in (0, 1)
    ]
    assert seen == expected[0] + expected[1] and expected[0] != expected[1]


def test_to_device_moves_nested_tensors():
    Pair = namedtuple("Pair", "a b")
    t = torch.ones(2)
    out = to_device({"x": t, "rest": [t, "text", 3], "pair": Pair(t, None), "tup": (t,)}, "meta")
    assert out["x"].is_meta and out["rest"][0].is_meta and out["rest"][1:] == ["text", 3]
    assert isinstance(out["pair"], Pair) and out["pair"].a.is_meta and out["pair"].b is None
    assert isinstance(out["tup"], tuple) and out["tup"][0].is_meta


# --- distributed --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(sys.platform != "linux", reason="forks worker processes (safe on Linux only)")
def test_ddp_gradients_equal_single_process(tmp_path):
    """2 gloo processes, each on half of a batch: DDP's averaged gradients = the full batch's."""
    spec = importlib.util.spec_from_file_location("ddp_worker", HERE / "ddp_worker.py")
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)

    # fork: the children reuse this process's imported torch (a fresh interpreter spends seconds
    # importing it); each sets torchrun's environment variables and calls mlstep.train
    ctx = multiprocessing.get_context("fork")
    port = _free_port()
    procs = [ctx.Process(target=worker.run, args=(r, 2, port, str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    for p in procs:
        if p.is_alive():
            p.kill()
    assert [p.exitcode for p in procs] == [0, 0], (
        "a DDP worker failed (its traceback is in the captured stderr)"
    )

    ref = worker.make_model()
    x, y = worker.global_batch()
    worker.step_fn(ref, (x, y)).backward()
    results = [torch.load(tmp_path / f"grads{r}.pt", weights_only=True) for r in range(2)]
    assert [r["main"] for r in results] == [True, False]
    for rank_result in results:
        for name, p in ref.named_parameters():
            torch.testing.assert_close(rank_result["grads"][name], p.grad, atol=1e-6, rtol=0)
    # the comparison has power: one shard alone gives other gradients
    half = worker.make_model()
    worker.step_fn(half, (x[:4], y[:4])).backward()
    assert not torch.allclose(half[0].weight.grad, ref[0].weight.grad, atol=1e-3)
    assert os.listdir(tmp_path).count("ckpt.pt") == 1  # written once, by rank 0


