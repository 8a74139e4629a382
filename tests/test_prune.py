"""mlstep.multistage.prune: magnitude masks equal torch.nn.utils.prune's (global and per layer), pruned weights
stay zero through training, head and neuron removal against Hugging Face's prune_linear_layer and
against zeroing the removed units' outputs, nothing removed = the same outputs, and the importance
scores against gates on each head's output."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.utils.prune as torch_prune
from torch import nn

from mlstep.bert import BertConfig
from mlstep.finetune import BertForSequenceClassification, classification_step
from mlstep.multistage.prune import (
    apply_masks,
    keep_columns,
    keep_rows,
    lowest,
    magnitude_masks,
    prunable_weights,
    prune_heads,
    prune_neurons,
    sparsity,
    structured_importance,
)
from mlstep.tools.runtime import count_parameters
from mlstep.train import TrainConfig, train

V, C = 30, 2
CFG = BertConfig(vocab_size=V, hidden_size=16, num_layers=2, num_heads=4, intermediate_size=32,
                 max_position=12, dropout=0.0, pre_norm=True)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def model(seed=0, config=CFG):
    torch.manual_seed(seed)
    return BertForSequenceClassification(config, C, dropout=0.0).eval()


def batch(n=6, T=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    am = torch.ones(n, T, dtype=torch.long)
    am[0, 5:] = 0
    return {"input_ids": torch.randint(0, V, (n, T), generator=g), "attention_mask": am,
            "labels": torch.randint(0, C, (n,), generator=g)}


def logits(m, b):
    with torch.no_grad():
        return m(**{k: v for k, v in b.items() if k != "labels"}).logits


# --- magnitude pruning ----------------------------------------------------------------------------

@pytest.mark.parametrize("amount", [0.0, 0.3, 0.75, 1.0])
def test_global_masks_equal_torch_global_unstructured(amount):
    ours, theirs = model(), model()
    masks = magnitude_masks(prunable_weights(ours), amount, scope="global")
    modules = [(m, "weight") for m in theirs.bert.encoder.layers.modules() if isinstance(m, nn.Linear)]
    torch_prune.global_unstructured(modules, pruning_method=torch_prune.L1Unstructured, amount=amount)
    names = list(prunable_weights(ours))
    assert len(names) == len(modules) == 12
    for name, (m, _) in zip(names, modules):
        assert torch.equal(masks[name], m.weight_mask), name
    removed = sum(int((m == 0).sum()) for m in masks.values())
    assert removed == round(amount * sum(m.numel() for m in masks.values()))


@pytest.mark.parametrize("amount", [0.2, 0.5, 0.9])
def test_layer_masks_equal_torch_l1_unstructured(amount):
    ours, theirs = model(), model()
    masks = magnitude_masks(prunable_weights(ours), amount, scope="layer")
    modules = [m for m in theirs.bert.encoder.layers.modules() if isinstance(m, nn.Linear)]
    for name, m in zip(prunable_weights(ours), modules):
        torch_prune.l1_unstructured(m, "weight", amount=amount)
        assert torch.equal(masks[name], m.weight_mask), name


def test_pruned_weights_stay_zero_while_training_and_outputs_follow_the_masks():
    m, reference = model(), model()
    masks = magnitude_masks(prunable_weights(m), 0.6)
    handles = apply_masks(m, masks)
    assert sparsity(m) == pytest.approx(0.6, abs=1e-3)
    torch_prune.global_unstructured([(x, "weight") for x in reference.bert.encoder.layers.modules()
                                     if isinstance(x, nn.Linear)], torch_prune.L1Unstructured, amount=0.6)
    torch.testing.assert_close(logits(m, batch()), logits(reference, batch()))
    before = {k: w.detach().clone() for k, w in prunable_weights(m).items()}
    train(m, [batch()], classification_step, TrainConfig(max_steps=4, lr=1e-2, progress=False, device="cpu"))
    for name, w in prunable_weights(m).items():
        assert not w[masks[name] == 0].any(), name  # still exactly zero
        assert not torch.equal(w, before[name]), name  # the kept ones trained
    for h in handles:
        h.remove()
    with pytest.raises(KeyError, match="no prunable weight"):
        apply_masks(m, {"bert.nothing": torch.ones(1)})
    with pytest.raises(ValueError, match="amount"):
        magnitude_masks(prunable_weights(m), 1.5)


# --- structured pruning ---------------------------------------------------------------------------

def test_keep_rows_and_columns_equal_hugging_face_prune_linear_layer():
    pytorch_utils = pytest.importorskip("transformers.pytorch_utils")
    torch.manual_seed(0)
    linear, index = nn.Linear(6, 5), torch.tensor([0, 2, 3])
    for ours, dim in ((keep_rows(linear, index), 0), (keep_columns(linear, index), 1)):
        theirs = pytorch_utils.prune_linear_layer(linear, index, dim=dim)
        torch.testing.assert_close(ours.state_dict(), theirs.state_dict())


def test_removing_nothing_keeps_every_output():
    m = model()
    before = logits(m, batch())
    prune_heads(m, {0: [], 1: []})
    prune_neurons(m, {0: [], 1: []})
    assert torch.equal(logits(m, batch()), before)


def test_removed_heads_and_neurons_equal_zeroed_outputs():
    """A pruned model computes what the full one does with those heads' and neurons' outputs zeroed."""
    pruned, zeroed = model(), model()
    heads, neurons = {0: [1, 3], 1: [0]}, {0: [0, 5, 31], 1: list(range(16))}
    prune_heads(pruned, heads)
    prune_neurons(pruned, neurons)
    K = CFG.hidden_size // CFG.num_heads
    with torch.no_grad():
        for layer, hs in heads.items():
            for h in hs:
                zeroed.bert.encoder.layers[layer].attn.out_proj.weight[:, h * K:(h + 1) * K] = 0
        for layer, js in neurons.items():
            zeroed.bert.encoder.layers[layer].ffn.fc2.weight[:, js] = 0
    torch.testing.assert_close(logits(pruned, batch()), logits(zeroed, batch()))
    attn = pruned.bert.encoder.layers[0].attn
    assert attn.num_heads == 2 and attn.q_proj.weight.shape == (8, 16) and attn.out_proj.weight.shape == (16, 8)
    assert pruned.bert.encoder.layers[1].ffn.fc1.out_features == 16
    per_head, per_neuron = 3 * (16 * K + K) + K * 16, 16 + 1 + 16  # q, k, v rows and out_proj columns; fc1 row, fc2 column
    removed = 3 * per_head + (3 + 16) * per_neuron
    assert count_parameters(zeroed) - count_parameters(pruned) == removed
    loss, _ = classification_step(pruned, batch())  # the smaller model still trains
    loss.backward()


@pytest.mark.parametrize("call, match", [
    (lambda m: prune_heads(m, {0: [0, 1, 2, 3]}), "keep at least one"),
    (lambda m: prune_heads(m, {1: [4]}), "heads 0..3"),
    (lambda m: prune_neurons(m, {0: [-1]}), "neurons 0..31"),
    (lambda m: lowest([torch.ones(3)], 1.0), "keep at least one"),
])
def test_bad_structured_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call(model())


def test_importance_equals_the_gradient_of_a_gate_on_each_unit():
    """|∂L/∂ξ| for a gate ξ = 1 multiplying each head's output (Michel et al.) and each neuron's."""
    m, b = model(), batch()
    heads, neurons = structured_importance(m, [b, batch(seed=2)], classification_step)
    assert [h.shape for h in heads] == [(4,), (4,)] and [n.shape for n in neurons] == [(32,), (32,)]
    gated = copy.deepcopy(m)
    K = CFG.hidden_size // CFG.num_heads
    expected_heads, expected_neurons = [torch.zeros(4), torch.zeros(4)], [torch.zeros(32), torch.zeros(32)]
    for data in (b, batch(seed=2)):
        gates = [(torch.ones(4, requires_grad=True), torch.ones(32, requires_grad=True)) for _ in range(2)]
        hooks = []
        for layer, (g_head, g_neuron) in zip(gated.bert.encoder.layers, gates):
            hooks.append(layer.attn.out_proj.register_forward_pre_hook(
                lambda mod, args, g=g_head: (args[0] * g.repeat_interleave(K),)))
            hooks.append(layer.ffn.fc2.register_forward_pre_hook(lambda mod, args, g=g_neuron: (args[0] * g,)))
        loss, _ = classification_step(gated, data)
        loss.backward()
        for i, (g_head, g_neuron) in enumerate(gates):
            expected_heads[i] += g_head.grad.abs()
            expected_neurons[i] += g_neuron.grad.abs()
        for h in hooks:
            h.remove()
    for i in range(2):
        torch.testing.assert_close(heads[i], expected_heads[i])
        torch.testing.assert_close(neurons[i], expected_neurons[i])
    assert all(p.grad is None for p in m.parameters())  # gradients cleared
    assert lowest(heads, 0.5) == {i: sorted(torch.argsort(heads[i])[:2].tolist()) for i in range(2)}


@pytest.mark.gpu
def test_structured_pruning_on_cuda_keeps_outputs():
    m = model().cuda()
    b = {k: v.cuda() for k, v in batch().items()}
    before = logits(m, b)
    heads, neurons = structured_importance(m, [b], classification_step)
    prune_heads(m, {0: []})
    prune_neurons(m, lowest(neurons, 0.0))
    torch.testing.assert_close(logits(m, b), before)
    prune_heads(m, lowest(heads, 0.5))
    assert m.bert.encoder.layers[0].attn.q_proj.weight.is_cuda
