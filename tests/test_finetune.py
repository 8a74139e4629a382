"""mlstep.finetune and mlstep.lora: heads against Hugging Face and F.cross_entropy, freezing
checked bit for bit after real optimizer steps, unfreezing stages, layer-wise learning rates,
LoRA's exactness (start = base, merged = unmerged), and a short end-to-end fine-tuning run."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlstep.attention import MultiHeadAttention
from mlstep.bert import BertConfig, BertForPreTraining, BertModel, bert_from_hf
from mlstep.finetune import (
    BertForSequenceClassification,
    BertForTokenClassification,
    GradualUnfreezer,
    classification_step,
    freeze_encoder,
    layerwise_lr_groups,
    unfreezing_stages,
)
from mlstep.lora import LoRALinear, apply_lora, merge_lora
from mlstep.tasks.labeled import align_labels_to_pieces, pieces_to_word_predictions
from mlstep.tools.runtime import count_parameters
from mlstep.train import TrainConfig, train

V, C = 40, 3
CFG = BertConfig(vocab_size=V, hidden_size=16, num_layers=3, num_heads=2, intermediate_size=32,
                 max_position=16, dropout=0.0)
QUIET = dict(progress=False, device="cpu")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def batch(B=4, T=10, seed=0, token_labels=False):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (B, T), generator=g)
    types = torch.zeros(B, T, dtype=torch.long)
    types[:, T // 2:] = 1
    am = torch.ones(B, T, dtype=torch.long)
    am[1, 6:] = 0
    if token_labels:
        labels = torch.randint(0, C, (B, T), generator=g)
        labels[:, 0] = -100
        labels[am == 0] = -100
    else:
        labels = torch.randint(0, C, (B,), generator=g)
    return dict(input_ids=ids, token_type_ids=types, attention_mask=am, labels=labels)


def seq_model(seed=0, **kw):
    torch.manual_seed(seed)
    return BertForSequenceClassification(CFG, C, **kw)


def trainable(model):
    return count_parameters(model, trainable_only=True)


def lora_parameters(model):
    return [p for m in model.modules() if isinstance(m, LoRALinear) for p in (m.lora_A, m.lora_B)]


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# --- heads ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_sequence_head_shapes_and_loss(pooling):
    model = seq_model(pooling=pooling).eval()
    b = batch()
    out = model(**b)
    assert out.logits.shape == (4, C) and out.loss.ndim == 0
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, b["labels"]))
    hidden, pooled, _ = model.bert(b["input_ids"], b["token_type_ids"], b["attention_mask"])
    if pooling == "cls":
        summary = pooled
    else:  # hand-written masked mean
        summary = torch.stack([hidden[i, b["attention_mask"][i] == 1].mean(0) for i in range(4)])
    torch.testing.assert_close(out.logits, model.classifier(summary))
    assert model(b["input_ids"]).loss is None


def test_mean_pooling_ignores_padding():
    model = seq_model(pooling="mean").eval()
    b = batch()
    changed = b["input_ids"].clone()
    changed[1, 6:] = (changed[1, 6:] + 1) % V  # padded positions only
    a = model(b["input_ids"], b["token_type_ids"], b["attention_mask"]).logits
    c = model(changed, b["token_type_ids"], b["attention_mask"]).logits
    torch.testing.assert_close(a[1], c[1], atol=1e-6, rtol=1e-6)


def test_pair_classification_uses_token_type_ids():
    model = seq_model().eval()
    b = batch()
    a = model(b["input_ids"], b["token_type_ids"], b["attention_mask"]).logits
    c = model(b["input_ids"], torch.zeros_like(b["token_type_ids"]), b["attention_mask"]).logits
    assert (a - c).abs().max() > 1e-3 * a.abs().max()  # relative: logits start small (std 0.02 init)


def test_token_head_loss_ignores_minus_100():
    torch.manual_seed(0)
    model = BertForTokenClassification(CFG, C).eval()
    b = batch(token_labels=True)
    out = model(**b)
    assert out.logits.shape == (4, 10, C)
    keep = b["labels"] != -100
    by_hand = -out.logits.log_softmax(-1)[keep].gather(1, b["labels"][keep][:, None]).mean()
    torch.testing.assert_close(out.loss, by_hand)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits.reshape(-1, C), b["labels"].reshape(-1)))


def _hf_pair(hf_cls_model):
    """Our model built from a HF task model's encoder (via a HF BertForPreTraining)."""
    transformers = pytest.importorskip("transformers")
    pre = transformers.BertForPreTraining(hf_cls_model.config).eval()
    pre.bert.load_state_dict(hf_cls_model.bert.state_dict(), strict=False)
    return bert_from_hf(pre)


@pytest.mark.parametrize("kind", ["sequence", "token"])
def test_heads_match_hugging_face(kind):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=V, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=16, num_labels=C,
                                  attn_implementation="eager")
    torch.manual_seed(0)
    hf_cls = {"sequence": transformers.BertForSequenceClassification,
              "token": transformers.BertForTokenClassification}[kind]
    ours_cls = {"sequence": BertForSequenceClassification, "token": BertForTokenClassification}[kind]
    hf = hf_cls(cfg).eval()
    ours = ours_cls.from_pretrained(_hf_pair(hf), C).eval()
    ours.classifier.load_state_dict(hf.classifier.state_dict())
    b = batch(token_labels=kind == "token")
    ref = hf(**b)
    out = ours(**b)
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.loss, ref.loss, atol=1e-5, rtol=1e-5)


def test_from_pretrained_copies_the_encoder():
    torch.manual_seed(0)
    pre = BertForPreTraining(CFG).eval()
    model = BertForSequenceClassification.from_pretrained(pre, C, pooling="mean").eval()
    b = batch()
    ours = model.bert(b["input_ids"], b["token_type_ids"], b["attention_mask"])
    ref = pre.bert(b["input_ids"], b["token_type_ids"], b["attention_mask"])
    assert torch.equal(ours.last_hidden_state, ref.last_hidden_state)
    assert torch.equal(ours.pooled_output, ref.pooled_output)
    assert model.bert is not pre.bert  # a copy: fine-tuning leaves the pretrained model alone
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight.add_(1.0)
    assert not torch.equal(model.bert.embeddings.word_embeddings.weight, pre.bert.embeddings.word_embeddings.weight)
    shared = BertForTokenClassification(pre.bert, C)  # a BertModel is used as it is
    assert shared.bert is pre.bert
    # from a config: a different (random) encoder
    torch.manual_seed(1)
    scratch = BertForSequenceClassification(CFG, C).eval()
    assert not torch.equal(scratch.bert(b["input_ids"]).last_hidden_state,
                           pre.bert(b["input_ids"]).last_hidden_state)


def test_clear_errors():
    model = seq_model()
    b = batch()
    with pytest.raises(ValueError, match=r"labels must be in \[0, num_labels=3\), got \[3\]"):
        model(b["input_ids"], labels=torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="shape"):
        model(b["input_ids"], labels=torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="integer"):
        model(b["input_ids"], labels=torch.zeros(4))
    with pytest.raises(ValueError, match="pooling"):
        BertForSequenceClassification(CFG, C, pooling="max")
    with pytest.raises(ValueError, match="num_labels"):
        BertForSequenceClassification(CFG, 1)
    with pytest.raises(TypeError, match="BertConfig"):
        BertForSequenceClassification(nn.Linear(2, 2), C)
    tok = BertForTokenClassification(CFG, C)
    with pytest.raises(ValueError, match="all -100"):
        tok(b["input_ids"], labels=torch.full((4, 10), -100))
    with pytest.raises(ValueError, match="word labels"):
        align_labels_to_pieces([1], [None, 0, 1, None])
    with pytest.raises(ValueError, match="decay"):
        layerwise_lr_groups(model, 1e-3, decay=0.0)
    with pytest.raises(ValueError, match="targets"):
        apply_lora(model, targets=("query",))
    with pytest.raises(ValueError, match="no mlstep.MultiHeadAttention"):
        apply_lora(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="steps_per_stage"):
        GradualUnfreezer(model, steps_per_stage=0)


# --- word ↔ piece labels ---------------------------------------------------------------------------

def test_align_labels_to_pieces_by_hand():
    # [CLS] the play ##ing field ##s [SEP] [PAD]  for words: the playing fields
    word_ids = [None, 0, 1, 1, 2, 2, None, None]
    assert align_labels_to_pieces([4, 2, 7], word_ids) == [-100, 4, 2, -100, 7, -100, -100, -100]
    preds = [9, 4, 2, 5, 7, 8, 9, 9]
    assert pieces_to_word_predictions(preds, word_ids) == [4, 2, 7]


def test_align_labels_with_the_course_tokenizer():
    from mlstep.tokenizers.wordpiece import WordPieceTokenizer

    tok = WordPieceTokenizer.train(["the cat sat", "the dog ran", "hotdog catdog"] * 3, vocab_size=30,
                                   min_frequency=1)
    enc = tok.encode(["the", "catdog", "sat"], is_pretokenized=True)
    labels = align_labels_to_pieces([0, 1, 2], enc.word_ids)
    assert len(labels) == len(enc.ids) and labels[0] == -100 and labels[-1] == -100
    firsts = [i for i, w in enumerate(enc.word_ids) if w is not None and enc.word_ids[i - 1] != w]
    assert [labels[i] for i in firsts] == [0, 1, 2]
    assert len(enc.ids) > 5  # some word was split into several pieces ...
    assert sum(x != -100 for x in labels) == 3  # ... and is labelled once


# --- freezing ---------------------------------------------------------------------------------------

def test_freeze_encoder_really_freezes():
    model = seq_model()
    freeze_encoder(model)
    head = sum(p.numel() for p in model.classifier.parameters())
    assert trainable(model) == head == 16 * C + C
    assert all(not p.requires_grad for p in model.bert.parameters())
    before = snapshot(model)
    # an optimizer over ALL parameters, with weight decay: frozen ones have no grad and are skipped
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(3):
        opt.zero_grad()
        model(**batch()).loss.backward()
        opt.step()
    after = snapshot(model)
    for name in before:
        same = torch.equal(before[name], after[name])
        assert same == (not name.startswith("classifier")), name


# --- gradual unfreezing -----------------------------------------------------------------------------

def trainable_blocks(model):
    bert = model.bert
    blocks = {"head": model.classifier, "pooler": bert.pooler, "embeddings": bert.embeddings,
              **{f"layer{i}": layer for i, layer in enumerate(bert.encoder.layers)}}
    state = {}
    for name, m in blocks.items():
        flags = {p.requires_grad for p in m.parameters()}
        assert len(flags) == 1, f"{name} is partly frozen"
        state[name] = flags.pop()
    return {name for name, on in state.items() if on}


def test_unfreezing_stages_top_layer_first():
    model = seq_model()
    bert = model.bert
    ids = lambda *modules: {id(p) for m in modules for p in m.parameters()}  # noqa: E731
    stages = [{id(p) for p in stage} for stage in unfreezing_stages(model)]
    assert stages == [ids(model.classifier), ids(bert.encoder.layers[2], bert.pooler),
                      ids(bert.encoder.layers[1]), ids(bert.encoder.layers[0]), ids(bert.embeddings)]


def test_pre_ln_final_norm_unfreezes_with_the_top_layer():
    torch.manual_seed(0)
    model = BertForSequenceClassification(dataclasses.replace(CFG, pre_norm=True), C)
    top = {id(p) for p in unfreezing_stages(model)[1]}
    assert {id(p) for p in model.bert.encoder.final_norm.parameters()} <= top


def test_gradual_unfreezer_inside_mlstep_train():
    """Stage k trains the head and the top k layers; layers below stay bit-identical."""
    model = seq_model()
    freeze_encoder(model)  # the unfreezer must undo this so that train's optimizer holds everything
    unfreezer = GradualUnfreezer(model, steps_per_stage=2)
    data = [batch(seed=s) for s in range(4)]
    start = snapshot(model)
    seen = []

    def step_fn(m, b):
        seen.append(trainable_blocks(model))
        return m(**b).loss

    train(model, data, unfreezer.wrap(step_fn), TrainConfig(max_steps=3, lr=1e-2, weight_decay=0.1, **QUIET))
    assert seen == [{"head"}, {"head"}, {"head", "pooler", "layer2"}]
    now = snapshot(model)
    for name in start:
        moved = not torch.equal(start[name], now[name])
        should = name.startswith(("classifier", "bert.pooler", "bert.encoder.layers.2"))
        assert moved == should, name


# --- discriminative learning rates ----------------------------------------------------------------

@pytest.mark.parametrize("pre_norm", [False, True])
def test_layerwise_lr_groups_exact_values(pre_norm):
    torch.manual_seed(0)
    model = BertForSequenceClassification(dataclasses.replace(CFG, pre_norm=pre_norm), C)
    groups = layerwise_lr_groups(model, 1e-3, decay=0.5, head_lr=1e-2)
    lrs = {g["name"]: g["lr"] for g in groups}
    want = {"embeddings": 1e-3 * 0.5**3, "layer0": 1e-3 * 0.25, "layer1": 1e-3 * 0.5, "layer2": 1e-3,
            "top": 1e-3, "head": 1e-2}
    assert lrs == pytest.approx(want)
    top = {id(p) for g in groups if g["name"] == "top" for p in g["params"]}
    assert top == {id(p) for m in (model.bert.pooler, model.bert.encoder.final_norm) for p in m.parameters()}
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters()}
    head = {id(p) for g in groups if g["name"] == "head" for p in g["params"]}
    assert head == {id(p) for p in model.classifier.parameters()}
    layer1 = {id(p) for g in groups if g["name"] == "layer1" for p in g["params"]}
    assert layer1 == {id(p) for p in model.bert.encoder.layers[1].parameters()}
    # frozen parameters are left out
    freeze_encoder(model)
    assert [g["name"] for g in layerwise_lr_groups(model, 1e-3)] == ["head"]


def test_layerwise_lrs_reach_the_optimizer_of_mlstep_train():
    """Adam's first step moves each weight by about lr · sign(grad): the step size shows each
    group's learning rate inside the loop."""
    model = seq_model()
    groups = layerwise_lr_groups(model, 1e-3, decay=0.5, head_lr=4e-3)
    before = snapshot(model)
    config = TrainConfig(max_steps=1, lr=1e-3, weight_decay=0.0, grad_clip=None, decay_ratio=0.0, **QUIET)
    train(model, [batch()], lambda m, b: m(**b).loss, config, param_groups=groups)
    after = snapshot(model)
    step = lambda prefix: max((after[n] - before[n]).abs().max().item() for n in before if n.startswith(prefix))  # noqa: E731
    assert step("bert.embeddings.") == pytest.approx(1.25e-4, rel=1e-3)
    assert step("bert.encoder.layers.0.") == pytest.approx(2.5e-4, rel=1e-3)
    assert step("bert.encoder.layers.1.") == pytest.approx(5e-4, rel=1e-3)
    assert step("bert.encoder.layers.2.") == pytest.approx(1e-3, rel=1e-3)
    assert step("classifier.") == pytest.approx(4e-3, rel=1e-3)


# --- LoRA -------------------------------------------------------------------------------------------

def test_lora_linear_starts_equal_and_counts():
    torch.manual_seed(0)
    base = nn.Linear(12, 20)
    ref = copy.deepcopy(base)
    lora = LoRALinear(base, rank=4, alpha=8)
    x = torch.randn(3, 5, 12)
    assert torch.equal(lora(x), ref(x))  # B = 0: exactly the base
    assert lora.lora_A.numel() + lora.lora_B.numel() == 4 * (12 + 20)
    assert not base.weight.requires_grad and lora.lora_B.requires_grad
    with torch.no_grad():
        lora.lora_B.normal_()
    by_hand = ref(x) + (x @ (lora.lora_B @ lora.lora_A).T) * 2.0  # alpha / rank = 2
    torch.testing.assert_close(lora(x), by_hand)
    holder = nn.Sequential(lora)
    assert merge_lora(holder) == 1 and type(holder[0]) is nn.Linear
    torch.testing.assert_close(holder[0](x), by_hand, atol=1e-5, rtol=1e-5)


def test_apply_lora_train_merge():
    torch.manual_seed(0)
    pre = BertForPreTraining(CFG)
    model = BertForSequenceClassification.from_pretrained(pre, C)
    model.eval()  # no dropout: exact comparisons
    b = batch()
    base_logits = model(**b).logits
    d, r = CFG.hidden_size, 4
    wrapped = apply_lora(model, rank=r, alpha=8)
    assert len(wrapped) == 2 * CFG.num_layers
    assert all(isinstance(a.q_proj, LoRALinear) and isinstance(a.v_proj, LoRALinear)
               and isinstance(a.k_proj, nn.Linear) for a in model.modules() if isinstance(a, MultiHeadAttention))
    assert torch.equal(model(**b).logits, base_logits)  # B = 0: the same function
    adapters = sum(p.numel() for p in lora_parameters(model))
    assert adapters == len(wrapped) * 2 * r * d
    assert trainable(model) == adapters + sum(p.numel() for p in model.classifier.parameters())

    before = snapshot(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for s in range(5):
        opt.zero_grad()
        model(**batch(seed=s)).loss.backward()
        opt.step()
    after = snapshot(model)
    for name in before:
        moved = not torch.equal(before[name], after[name])
        assert moved == ("lora_" in name or name.startswith("classifier")), name

    unmerged = model(**b).logits
    assert (unmerged - base_logits).abs().max() > 1e-4  # the adapters did learn something
    n_params = sum(p.numel() for p in model.parameters()) - adapters
    assert merge_lora(model) == len(wrapped)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert all(type(a.q_proj) is nn.Linear for a in model.modules() if isinstance(a, MultiHeadAttention))
    assert sum(p.numel() for p in model.parameters()) == n_params
    torch.testing.assert_close(model(**b).logits, unmerged, atol=1e-5, rtol=1e-5)
    # the pretrained model was not touched
    assert all(type(a.q_proj) is nn.Linear for a in pre.modules() if isinstance(a, MultiHeadAttention))


def test_apply_lora_options():
    torch.manual_seed(0)
    model = BertModel(CFG)
    wrapped = apply_lora(model, rank=2, targets=("q_proj", "k_proj", "v_proj", "out_proj"))
    assert len(wrapped) == 4 * CFG.num_layers
    assert trainable(model) == len(wrapped) * 2 * 2 * 16  # no head: adapters only
    with pytest.raises(ValueError, match="twice"):
        apply_lora(model)


# --- end to end -------------------------------------------------------------------------------------

def toy_task(n=64, T=8, seed=0):
    """label = whether token 7 occurs in the sequence (ids 5..39 otherwise; 2 = [CLS])."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(8, V, (n, T), generator=g)
    labels = torch.arange(n) % 2
    pos = torch.randint(1, T, (n,), generator=g)
    ids[labels == 1, pos[labels == 1]] = 7
    ids[:, 0] = 2
    return ids, labels


def test_end_to_end_fine_tuning_with_mlstep_train():
    ids, labels = toy_task()
    data = [dict(input_ids=ids[i:i + 16], labels=labels[i:i + 16]) for i in range(0, 64, 16)]
    torch.manual_seed(0)
    model = BertForSequenceClassification(dataclasses.replace(CFG, dropout=0.1), 2, pooling="mean")
    history = train(model, data, classification_step, TrainConfig(max_steps=30, lr=3e-3, warmup_ratio=0.1,
                                                                  log_every=5, **QUIET))
    assert history.train[-1]["loss"] < history.train[0]["loss"]
    model.eval()
    with torch.no_grad():
        accuracy = (model(ids).logits.argmax(-1) == labels).float().mean().item()
    assert accuracy >= 0.9, accuracy
