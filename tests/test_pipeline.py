"""mlstep.multistage.pipeline: stages chained in order on copies, the size on disk of a state dict, and the
interleaved latency timer."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from mlstep.multistage.pipeline import latencies, run_stages, size_on_disk

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_stages_run_in_order_on_copies():
    seen = []

    def add(value):
        def stage(model):
            seen.append(model.weight.item())
            with torch.no_grad():
                model.weight += value
            return model
        return stage

    start = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(start.weight)
    out = run_stages(start, [("one", add(1.0)), ("two", add(2.0)), ("wider", lambda m: nn.Linear(1, 3))],
                     progress=False)
    assert list(out) == ["one", "two", "wider"] and seen == [0.0, 1.0]
    assert float(out["one"].weight.detach()) == 1.0 and float(out["two"].weight.detach()) == 3.0  # each stage's own copy
    assert float(start.weight.detach()) == 0.0 and not out["two"].training
    with pytest.raises(ValueError, match="unique"):
        run_stages(start, [("a", add(1)), ("a", add(1))], progress=False)
    with pytest.raises(TypeError, match="returned dict"):
        run_stages(start, [("bad", lambda m: {})], progress=False)


def test_size_on_disk_is_the_saved_state_dict():
    model = nn.Linear(100, 50)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    assert size_on_disk(model) == len(buffer.getvalue())
    assert (100 * 50 + 50) * 4 < size_on_disk(model) < (100 * 50 + 50) * 4 + 2000


def test_latencies_time_every_model_and_rank_a_bigger_one_slower():
    calls = []

    class Counting(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.layer = nn.Linear(width, width)

        def forward(self, x):
            calls.append(self.layer.in_features)
            return self.layer(x[:, : self.layer.in_features])

    x = torch.randn(256, 512)
    timed = latencies({"small": Counting(16), "big": Counting(512)}, {"x": x}, repeats=5, warmup=1)
    assert set(timed) == {"small", "big"} and timed["big"] > timed["small"] > 0
    assert calls[:4] == [16, 512, 16, 512]  # interleaved, round robin
    per_name = latencies({"a": Counting(4)}, lambda name: {"x": torch.ones(1, 4)}, repeats=2, warmup=0)
    assert per_name["a"] > 0
