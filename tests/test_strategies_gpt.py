"""Every fine-tuning strategy on a GPT classifier as well as a BERT one: they find the model's
embeddings and stack through one helper (mlstep.transformer.find_backbone). Freezing, gradual
unfreezing, discriminative learning rates, LoRA (the task head stays trainable), pruning and the
layer copying of distillation, each checked on what it must touch and what it must leave alone."""

import copy

import pytest
import torch

from mlstep.bert import BertConfig, BertModel
from mlstep.distill import init_embeddings_by_projection, init_student_from_teacher
from mlstep.finetune import (
    BertForSequenceClassification,
    GradualUnfreezer,
    classification_step,
    freeze_encoder,
    layerwise_lr_groups,
    unfreezing_stages,
)
from mlstep.gpt import GPT, GPTConfig, GPTForSequenceClassification
from mlstep.lora import LoRALinear, apply_lora
from mlstep.multistage.prune import (
    prunable_weights,
    prune_heads,
    prune_neurons,
    structured_importance,
)
from mlstep.train import TrainConfig, train
from mlstep.transformer import find_backbone

SIZE = dict(hidden_size=16, num_layers=3, num_heads=2, intermediate_size=32, dropout=0.0)


def gpt_classifier(seed=0, **size):
    torch.manual_seed(seed)
    return GPTForSequenceClassification(GPTConfig(50, max_position=16, **{**SIZE, **size}), num_labels=3)


def bert_classifier(seed=0):
    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(50, max_position=16, pre_norm=True, **SIZE), num_labels=3)


def batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(0, 50, (n, 10), generator=g), "labels": torch.randint(0, 3, (n,), generator=g)}


def trainable(model):
    return {name for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("make", [gpt_classifier, bert_classifier])
def test_find_backbone_names_the_parts(make):
    model = make()
    backbone = find_backbone(model)
    assert backbone.model is (model.gpt if isinstance(model, GPTForSequenceClassification) else model.bert)
    assert len(backbone.stack.layers) == 3 and find_backbone(backbone.model).stack is backbone.stack
    assert all(isinstance(m, torch.nn.Module) for m in backbone.embeddings + backbone.top)
    with pytest.raises(TypeError, match="holds no mlstep.BertModel or mlstep.GPT"):
        find_backbone(torch.nn.Linear(2, 2))


def test_freezing_a_gpt_classifier_trains_only_its_head():
    model = freeze_encoder(gpt_classifier())
    assert trainable(model) == {"classifier.weight", "classifier.bias"}


def test_gradual_unfreezing_wakes_a_gpt_from_the_top():
    model = gpt_classifier()
    stages = unfreezing_stages(model)
    ids = [{id(p) for p in stage} for stage in stages]
    assert ids[0] == {id(model.classifier.weight), id(model.classifier.bias)}  # the head first
    assert ids[1] == {id(p) for p in model.gpt.decoder.layers[2].parameters()} | {
        id(p) for p in model.gpt.decoder.final_norm.parameters()}  # then the top block with the final LayerNorm
    assert ids[-1] == {id(model.gpt.wte.weight), id(model.gpt.wpe.weight)}  # the embeddings last
    assert sum(len(s) for s in stages) == len(list(model.parameters()))  # every parameter exactly once
    unfreezer = GradualUnfreezer(model, steps_per_stage=1)
    step = unfreezer.wrap(classification_step)
    step(model, batch())
    assert trainable(model) == {"classifier.weight", "classifier.bias"}
    step(model, batch())
    assert "gpt.decoder.layers.2.attn.q_proj.weight" in trainable(model)
    assert "gpt.decoder.layers.1.attn.q_proj.weight" not in trainable(model)


def test_discriminative_rates_on_a_gpt_decay_downwards():
    model = gpt_classifier()
    groups = {g["name"]: g for g in layerwise_lr_groups(model, base_lr=1.0, decay=0.5)}
    assert [round(groups[n]["lr"], 4) for n in ("embeddings", "layer0", "layer1", "layer2", "top", "head")] == \
        [0.125, 0.25, 0.5, 1.0, 1.0, 1.0]
    assert {id(p) for p in groups["head"]["params"]} == {id(model.classifier.weight), id(model.classifier.bias)}
    assert sum(len(g["params"]) for g in groups.values()) == len(list(model.parameters()))


@pytest.mark.parametrize("make", [gpt_classifier, bert_classifier])
def test_lora_keeps_every_task_head_trainable_and_the_head_learns(make):
    model = make()
    adapters = apply_lora(model, rank=2, alpha=4)
    assert len(adapters) == 2 * 3 and all(isinstance(a, LoRALinear) for a in adapters)
    names = trainable(model)
    assert {"classifier.weight", "classifier.bias"} <= names
    assert all("lora_" in n or n.startswith("classifier.") for n in names)
    head = model.classifier.weight.detach().clone()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    train(model, [batch()], classification_step, TrainConfig(max_steps=3, lr=1e-2, progress=False, device="cpu"))
    assert not torch.equal(model.classifier.weight, head)  # the GPT classifier's head trained
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)


def test_pruning_a_gpt_classifier_removes_heads_and_neurons_as_zeroing_them_would():
    model = gpt_classifier().eval()
    weights = prunable_weights(model)
    assert len(weights) == 3 * 6 and all(n.startswith(("2.", "1.", "0.")) for n in weights)
    heads, neurons = structured_importance(model, [batch()], classification_step)
    assert [h.shape for h in heads] == [(2,)] * 3 and [n.shape for n in neurons] == [(32,)] * 3
    ids = batch()["input_ids"]
    zeroed = copy.deepcopy(model)
    with torch.no_grad():
        zeroed.gpt.decoder.layers[1].attn.out_proj.weight[:, 8:] = 0  # head 1 of layer 1 silenced
        zeroed.gpt.decoder.layers[0].ffn.fc2.weight[:, :5] = 0  # neurons 0-4 of layer 0 silenced
    prune_neurons(prune_heads(model, {1: [1]}), {0: [0, 1, 2, 3, 4]})
    assert model.gpt.decoder.layers[1].attn.num_heads == 1 and model.gpt.decoder.layers[0].ffn.fc1.out_features == 27
    torch.testing.assert_close(model(ids).logits, zeroed(ids).logits)


def test_distillation_copies_a_gpt_teachers_layers_into_a_shallower_student():
    teacher = gpt_classifier(seed=0)
    student = gpt_classifier(seed=1, num_layers=2)
    report = init_student_from_teacher(student, teacher)
    assert report.layer_map == (0, 2) and not report.skipped
    for s, t in zip(student.gpt.decoder.layers, (teacher.gpt.decoder.layers[0], teacher.gpt.decoder.layers[2])):
        assert all(torch.equal(a, b) for a, b in zip(s.state_dict().values(), t.state_dict().values()))
    assert torch.equal(student.gpt.wte.weight, teacher.gpt.wte.weight)
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)  # the head matched by name
    assert "gpt.decoder.layers.1.attn.q_proj.weight" in report.copied


def test_projected_embeddings_for_a_narrower_gpt_student():
    teacher = gpt_classifier(seed=0)
    student = gpt_classifier(seed=1, hidden_size=8, intermediate_size=16)
    projection = init_embeddings_by_projection(student, teacher)
    assert projection.shape == (16, 8)
    torch.testing.assert_close(student.gpt.wte.weight, teacher.gpt.wte.weight @ projection)
    torch.testing.assert_close(student.gpt.wpe.weight, teacher.gpt.wpe.weight @ projection)
    with pytest.raises(ValueError, match="wider"):
        init_embeddings_by_projection(teacher, student)


def test_a_bert_head_cannot_be_put_on_a_gpt():
    with pytest.raises(TypeError, match="GPTForSequenceClassification.from_pretrained"):
        BertForSequenceClassification.from_pretrained(GPT(GPTConfig(50, **SIZE)), num_labels=2)
    assert isinstance(find_backbone(BertModel(BertConfig(50, **SIZE))).model, BertModel)
