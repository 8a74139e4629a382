"""mlstep.multistage.layerwise: the weighted per-layer loss against F.cross_entropy, the heads read the
encoder's hidden states, α = one-hot is the plain last-layer classifier, and with a frozen encoder
the heads train as independent probes."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from mlstep.bert import BertConfig, BertModel
from mlstep.finetune import classification_step, freeze_encoder, mean_pool
from mlstep.multistage.layerwise import LayerwiseClassifier, layer_accuracies, layerwise_loss
from mlstep.tasks.labeled import TensorDataset, finetune_config, fit
from mlstep.train import TrainConfig, train

V, C = 30, 3
CFG = BertConfig(vocab_size=V, hidden_size=16, num_layers=3, num_heads=2, intermediate_size=32,
                 max_position=12, dropout=0.0, pre_norm=True)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def data(n=8, T=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    am = torch.ones(n, T, dtype=torch.long)
    am[0, 4:] = 0
    return {"input_ids": torch.randint(0, V, (n, T), generator=g), "attention_mask": am,
            "labels": torch.randint(0, C, (n,), generator=g)}


def test_layerwise_loss_is_the_weighted_sum_of_cross_entropies():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(4, 6, C, generator=g), torch.randint(0, C, (6,), generator=g)
    weights = torch.tensor([0.1, 0.0, 0.5, 2.0])
    total, per_layer = layerwise_loss(logits, labels, weights)
    expected = [F.cross_entropy(z, labels) for z in logits]
    torch.testing.assert_close(per_layer, torch.stack(expected))
    torch.testing.assert_close(total, sum(w * e for w, e in zip(weights, expected)))


def test_heads_read_each_layers_hidden_state():
    torch.manual_seed(0)
    model = LayerwiseClassifier(CFG, C, layers=[0, 2, 3]).eval()
    batch = data()
    out = model(**batch)
    states = model.bert(batch["input_ids"], attention_mask=batch["attention_mask"]).hidden_states
    for i, layer in enumerate([0, 2, 3]):
        expected = model.heads[i](mean_pool(states[layer], batch["attention_mask"]))
        torch.testing.assert_close(out.layer_logits[i], expected)
    torch.testing.assert_close(out.logits, out.layer_logits[-1])  # the last head predicts by default
    assert out.layer_logits.shape == (3, 8, C) and out.layer_losses.shape == (3,)
    torch.testing.assert_close(out.loss, out.layer_losses.sum())  # default α = 1 each
    model.predict_with = 2
    torch.testing.assert_close(model(**batch).logits, out.layer_logits[1])


def test_one_hot_weights_train_only_the_last_head_like_a_plain_classifier():
    torch.manual_seed(0)
    model = LayerwiseClassifier(CFG, C, weights=[0, 0, 0, 1], dropout=0.0)
    loss, _ = classification_step(model, data())
    loss.backward()
    for head in model.heads[:-1]:
        assert all(p.grad is None or not p.grad.any() for p in head.parameters())
    assert model.heads[-1][2].weight.grad.abs().sum() > 0
    assert model.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    torch.testing.assert_close(loss, F.cross_entropy(model(**data()).logits, data()["labels"]))


def test_frozen_encoder_heads_are_independent_probes():
    """Trained together (α = 1 each) they end where each ends trained alone."""
    torch.manual_seed(0)
    bert = BertModel(CFG)
    rows = TensorDataset(data(n=16))
    together = freeze_encoder(LayerwiseClassifier(copy.deepcopy(bert), C, layers=[1, 3], dropout=0.0))
    start = copy.deepcopy(together.heads.state_dict())
    config = TrainConfig(max_steps=5, lr=1e-2, weight_decay=0.0, grad_clip=None, progress=False, device="cpu")
    batches = [data(n=16)]
    train(together, batches, classification_step, config)
    for i, layer in enumerate([1, 3]):
        alone = freeze_encoder(LayerwiseClassifier(copy.deepcopy(bert), C, layers=[layer], dropout=0.0))
        alone.heads[0].load_state_dict({k[2:]: v for k, v in start.items() if k.startswith(f"{i}.")})
        train(alone, batches, classification_step, config)
        torch.testing.assert_close(alone.heads[0].state_dict(), {k[2:]: v for k, v in together.heads.state_dict().items()
                                                                 if k.startswith(f"{i}.")})
    acc = layer_accuracies(together, rows)
    assert set(acc) == {1, 3} and all(0 <= a <= 1 for a in acc.values())
    assert together.predict_with == 3  # restored


def test_from_pretrained_copies_and_fit_runs():
    torch.manual_seed(0)
    bert = BertModel(CFG)
    model = LayerwiseClassifier.from_pretrained(bert, C, weights=[0.25, 0.25, 0.25, 1.0])
    assert model.bert is not bert
    torch.testing.assert_close(model.bert.state_dict(), bert.state_dict())
    history = fit(model, TensorDataset(data(n=16)), finetune_config(3), batch_size=8)
    assert len(history.train) == 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(layers=[2, 1]), "increasing"), (dict(layers=[0, 4]), r"\[0, 3\]"), (dict(layers=[]), "increasing"),
    (dict(weights=[1, 1]), "4 non-negative"), (dict(weights=[0, 0, 0, 0]), "not all 0"),
    (dict(weights=[1, -1, 1, 1]), "non-negative"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LayerwiseClassifier(CFG, C, **kwargs)


def test_labels_out_of_range():
    with pytest.raises(ValueError, match="labels"):
        LayerwiseClassifier(CFG, C)(**{**data(), "labels": torch.full((8,), C)})
