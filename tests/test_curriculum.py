"""mlstep.multistage.curriculum: stages in order with their step counts, cycling short stages, one lr schedule
through the whole curriculum, resuming into the right stage, and easy-to-hard pools."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mlstep.multistage.curriculum import Curriculum, growing_pools
from mlstep.tasks.labeled import TensorDataset
from mlstep.train import TrainConfig, train


def tagged(stage, n):
    return [{"x": torch.full((2, 1), float(stage)), "i": torch.tensor(i)} for i in range(n)]


def test_stages_in_order_with_their_steps():
    c = Curriculum([(tagged(0, 3), 5), (tagged(1, 10), 2)])
    got = [(int(b["x"][0, 0]), int(b["i"])) for b in c]
    assert got == [(0, 0), (0, 1), (0, 2), (0, 0), (0, 1), (1, 0), (1, 1)]  # stage 0 cycles
    assert len(c) == 7 and c.boundaries() == [5]
    assert list(c) == list(c)  # re-iterable
    with pytest.raises(ValueError, match="steps > 0"):
        Curriculum([(tagged(0, 3), 0)])
    with pytest.raises(ValueError, match="no batches"):
        list(Curriculum([([], 2)]))


def step_fn(model, batch):
    return model(batch["x"]).pow(2).mean(), {"stage": batch["x"][0, 0].item()}


def test_one_run_through_every_stage_and_resume_lands_in_the_right_stage(tmp_path):
    c = Curriculum([(tagged(0, 2), 4), (tagged(1, 3), 4)])
    config = TrainConfig(max_steps=len(c), lr=0.1, warmup_ratio=0.25, log_every=1, progress=False, device="cpu")
    torch.manual_seed(0)
    full_model = nn.Linear(1, 1)
    full = train(full_model, c, step_fn, config)
    assert [r["stage"] for r in full.train] == [0] * 4 + [1] * 4
    lrs = [r["lr"] for r in full.train]
    assert lrs[:2] == pytest.approx([0.05, 0.1]) and lrs[-1] < lrs[4]  # one warmup, one decay

    calls = []

    def interrupting(model, batch):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return step_fn(model, batch)

    ckpt = TrainConfig(**{**config.__dict__, "checkpoint_path": str(tmp_path / "c.pt"), "checkpoint_every": 5})
    torch.manual_seed(0)
    train(nn.Linear(1, 1), c, interrupting, ckpt)
    resumed_model = nn.Linear(1, 1)
    resumed = train(resumed_model, c, step_fn, ckpt, resume=True)
    assert resumed.train == full.train
    assert torch.equal(resumed_model.weight, full_model.weight)


def test_growing_pools_take_the_easiest_rows_first():
    data = TensorDataset({"input_ids": torch.arange(10).view(10, 1), "labels": torch.zeros(10, dtype=torch.long)})
    difficulty = [5, 1, 9, 1, 0, 7, 3, 8, 2, 6]
    pools = growing_pools(data, difficulty, fractions=(0.3, 0.6, 1.0))
    assert [len(p) for p in pools] == [3, 6, 10]
    assert pools[0].tensors["input_ids"].flatten().tolist() == [4, 1, 3]  # ties keep the order
    assert pools[1].tensors["input_ids"].flatten().tolist() == [4, 1, 3, 8, 6, 0]
    with pytest.raises(ValueError, match="one difficulty per row"):
        growing_pools(data, [1, 2])
    with pytest.raises(ValueError, match="fractions"):
        growing_pools(data, difficulty, fractions=(0.5, 0.2))
