"""mlstep.multistage.multitask: heads share one encoder, a step touches only its task's head, the sampling
probabilities and batch composition, exact resume, and training several tasks at once."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import pytest
import torch

from mlstep.bert import BertConfig, BertModel
from mlstep.finetune import (
    BertForSequenceClassification,
    BertForTokenClassification,
    classification_step,
)
from mlstep.multistage.multitask import (
    MultiTaskBatches,
    MultiTaskModel,
    multitask_step_fn,
    task_probabilities,
)
from mlstep.tasks.labeled import TensorDataset, evaluate_classifier
from mlstep.tools.runtime import count_parameters
from mlstep.train import TrainConfig, train

V = 30
CFG = BertConfig(vocab_size=V, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                 max_position=12, dropout=0.0)
HEADS = {"sentiment": ("sequence", 2), "topic": ("sequence", 5), "tags": ("token", 7)}
QUIET = dict(progress=False, device="cpu")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def rows(n, num_labels, token=False, T=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_labels, (n, T) if token else (n,), generator=g)
    return TensorDataset({"input_ids": torch.randint(0, V, (n, T), generator=g),
                          "attention_mask": torch.ones(n, T, dtype=torch.long), "labels": labels})


DATA = {"sentiment": rows(40, 2), "topic": rows(10, 5, seed=1), "tags": rows(20, 7, token=True, seed=2)}


def model(seed=0):
    torch.manual_seed(seed)
    return MultiTaskModel(BertModel(CFG), HEADS, dropout=0.0)


def test_heads_share_one_encoder():
    m = model()
    assert isinstance(m.tasks["sentiment"], BertForSequenceClassification)
    assert isinstance(m.tasks["tags"], BertForTokenClassification)
    assert all(t.bert is m.bert for t in m.tasks.values())
    heads = sum(count_parameters(t.classifier) for t in m.tasks.values())
    assert count_parameters(m) == count_parameters(m.bert) + heads  # the encoder counted once
    batch = DATA["topic"][:4]
    torch.testing.assert_close(m("topic", **batch).logits, m.tasks["topic"](**batch).logits)
    with pytest.raises(KeyError, match="unknown task 'nli'"):
        m("nli", **batch)
    with pytest.raises(ValueError, match="'sequence' or 'token'"):
        MultiTaskModel(BertModel(CFG), {"x": ("pair", 3)})


def test_a_step_moves_the_encoder_and_its_own_head_only():
    m = model()
    step = multitask_step_fn({"topic": 0.5})
    batch = {"task": "topic", **DATA["topic"][:4]}
    loss, values = step(m, batch)
    single, _ = classification_step(m.tasks["topic"], batch)
    torch.testing.assert_close(loss, 0.5 * single)
    assert set(values) == {"accuracy"}
    loss.backward()
    assert m.tasks["topic"].classifier.weight.grad.abs().sum() > 0
    assert m.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert m.tasks["sentiment"].classifier.weight.grad is None and m.tasks["tags"].classifier.weight.grad is None


def test_task_probabilities():
    sizes = {"a": 900, "b": 100}
    assert task_probabilities(sizes) == pytest.approx({"a": 0.9, "b": 0.1})
    assert task_probabilities(sizes, 2.0) == pytest.approx({"a": 0.75, "b": 0.25})  # 30 : 10
    assert task_probabilities(sizes, math.inf) == pytest.approx({"a": 0.5, "b": 0.5})
    with pytest.raises(ValueError):
        task_probabilities({"a": 0}, 1.0)


def test_batches_follow_the_probabilities_and_cover_each_task():
    batches = MultiTaskBatches(DATA, batch_size=5, temperature=math.inf, seed=3, batches_per_pass=3000)
    drawn = list(batches)
    assert len(drawn) == len(batches) == 3000
    counts = Counter(b["task"] for b in drawn)
    for task in DATA:  # uniform: 1000 each, binomial sd ≈ 26
        assert abs(counts[task] - 1000) < 120, counts
    topic = [b for b in drawn if b["task"] == "topic"]
    assert all(len(b["input_ids"]) == 5 for b in topic)
    epoch = torch.cat([b["input_ids"] for b in topic[:2]])  # 10 rows: one epoch of the task, each row once
    assert sorted(map(tuple, epoch.tolist())) == sorted(map(tuple, DATA["topic"].tensors["input_ids"].tolist()))
    default = MultiTaskBatches(DATA, batch_size=5)
    assert len(default) == 8 + 2 + 4


def test_training_and_exact_resume(tmp_path):
    """Interrupted after 5 steps (checkpoint at 4, in the middle of a pass) and resumed: bit for bit
    the uninterrupted run, because every draw comes from the batches' own generator."""
    config = TrainConfig(max_steps=12, lr=1e-2, log_every=1, checkpoint_path=str(tmp_path / "c.pt"),
                         checkpoint_every=4, **QUIET)

    def batches():
        return MultiTaskBatches(DATA, batch_size=4, temperature=2.0, seed=1, batches_per_pass=7)

    full_model = model()
    full = train(full_model, batches(), multitask_step_fn(), dataclasses.replace(config, checkpoint_path=None))
    calls, step = [], multitask_step_fn()

    def interrupting(m, batch):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return step(m, batch)

    assert train(model(), batches(), interrupting, config).interrupted
    torch.manual_seed(999)
    resumed_model = model(seed=5)
    resumed = train(resumed_model, batches(), multitask_step_fn(), config, resume=True)
    assert resumed.train == full.train
    for p, q in zip(resumed_model.parameters(), full_model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert 0.0 <= evaluate_classifier(full_model.tasks["topic"], DATA["topic"]) <= 1.0
