"""mlstep.bert against Hugging Face BertForPreTraining with copied weights, losses against
F.cross_entropy, parameter count against a closed form, and error messages."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from mlstep.bert import (
    BertConfig,
    BertForPreTraining,
    BertModel,
    BertOutput,
    PreTrainingOutput,
    bert_from_hf,
    mlm_loss,
)
from mlstep.tools.runtime import count_parameters

transformers = pytest.importorskip("transformers")

TOL = dict(atol=1e-5, rtol=1e-5)
SIZES = [  # (vocab, hidden, layers, heads, intermediate, max_position, type_vocab)
    (50, 16, 1, 2, 32, 16, 2),
    (97, 32, 2, 4, 64, 24, 3),
    (120, 48, 3, 6, 100, 20, 2),
]


def hf_model(V, Hd, L, heads, inter, P, types, seed=0):
    cfg = transformers.BertConfig(
        vocab_size=V, hidden_size=Hd, num_hidden_layers=L, num_attention_heads=heads,
        intermediate_size=inter, max_position_embeddings=P, type_vocab_size=types,
        attn_implementation="eager",
    )
    torch.manual_seed(seed)
    model = transformers.BertForPreTraining(cfg).eval()
    with torch.no_grad():  # non-trivial biases and norms, so a missed copy would show
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def inputs(V, types, B=4, T=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (B, T), generator=g)
    token_types = torch.randint(0, types, (B, T), generator=g)
    am = torch.ones(B, T, dtype=torch.long)
    am[1, 9:] = 0
    am[2, 4:] = 0  # padded rows
    return ids, token_types, am


def mlm_labels_for(ids, am, seed=2):
    g = torch.Generator().manual_seed(seed)
    chosen = (torch.rand(ids.shape, generator=g) < 0.3) & (am == 1)
    chosen[0, 1] = True  # at least one target
    return torch.where(chosen, ids, torch.full_like(ids, -100))


@pytest.fixture(scope="module", params=SIZES, ids=lambda s: f"V{s[0]}-H{s[1]}-L{s[2]}")
def pair(request):
    hf = hf_model(*request.param)
    return request.param, hf, bert_from_hf(hf)


# --- parity with Hugging Face ------------------------------------------------------------------

def test_outputs_match_hugging_face(pair):
    size, hf, ours = pair
    assert not ours.training  # follows the HF model's mode
    ids, tt, am = inputs(size[0], size[6])
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=tt, attention_mask=am)
        ref_base = hf.bert(input_ids=ids, token_type_ids=tt, attention_mask=am, output_hidden_states=True)
        out = ours(ids, tt, am)
        base = ours.bert(ids, tt, am)
    assert isinstance(out, PreTrainingOutput) and isinstance(base, BertOutput)
    # every position agrees, padding included (both let pad queries attend to the real keys)
    torch.testing.assert_close(base.last_hidden_state, ref_base.last_hidden_state, **TOL)
    torch.testing.assert_close(base.pooled_output, ref_base.pooler_output, **TOL)
    assert len(base.hidden_states) == len(ref_base.hidden_states) == size[2] + 1
    for a, b in zip(base.hidden_states, ref_base.hidden_states, strict=True):
        torch.testing.assert_close(a, b, **TOL)
    assert out.loss is None and out.mlm_logits.shape == (*ids.shape, size[0])
    torch.testing.assert_close(out.mlm_logits, ref.prediction_logits, **TOL)
    torch.testing.assert_close(out.nsp_logits, ref.seq_relationship_logits, **TOL)


def test_defaults_token_types_zero_and_no_mask(pair):
    size, hf, ours = pair
    ids, _, _ = inputs(size[0], size[6])
    with torch.no_grad():
        ref = hf(input_ids=ids)
        out = ours(ids)
        explicit = ours(ids, torch.zeros_like(ids), torch.ones_like(ids))
    torch.testing.assert_close(out.mlm_logits, ref.prediction_logits, **TOL)
    torch.testing.assert_close(out.nsp_logits, explicit.nsp_logits, **TOL)


def test_losses_match_hugging_face_and_cross_entropy(pair):
    size, hf, ours = pair
    V = size[0]
    ids, tt, am = inputs(V, size[6])
    labels = mlm_labels_for(ids, am)
    nsp = torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        full = ours(ids, tt, am)  # no labels: logits at every position
        gathered = ours(ids, tt, am, mlm_labels=labels)
        joint = ours(ids, tt, am, mlm_labels=labels, nsp_labels=nsp)
        only_nsp = ours(ids, tt, am, nsp_labels=nsp)
        ref = hf(input_ids=ids, token_type_ids=tt, attention_mask=am, labels=labels,
                 next_sentence_label=nsp)
    expected_mlm = F.cross_entropy(full.mlm_logits.view(-1, V), labels.view(-1), ignore_index=-100)
    expected_nsp = F.cross_entropy(full.nsp_logits, nsp)
    # gather path: (m, V) logits in row-major order of the masked positions
    selected = labels != -100
    assert gathered.mlm_logits.shape == (int(selected.sum()), V)
    torch.testing.assert_close(gathered.mlm_logits, full.mlm_logits[selected], **TOL)
    torch.testing.assert_close(gathered.loss, expected_mlm, **TOL)
    torch.testing.assert_close(only_nsp.loss, expected_nsp, **TOL)
    torch.testing.assert_close(joint.loss, expected_mlm + expected_nsp, **TOL)
    torch.testing.assert_close(joint.loss, ref.loss, **TOL)
    assert only_nsp.mlm_logits.shape == (*ids.shape, V)  # no mlm labels: every position


def test_loss_functions_directly():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=g)
    labels = torch.tensor([[-100, 3, -100, 0, 6], [1, -100, -100, -100, -100]])
    # hand-computed: mean of -log softmax at the 4 targets
    logp = logits.log_softmax(-1)
    hand = -(logp[0, 1, 3] + logp[0, 3, 0] + logp[0, 4, 6] + logp[1, 0, 1]) / 4
    torch.testing.assert_close(mlm_loss(logits, labels), hand)
    # an average over every position (the classic bug) would differ
    assert not torch.allclose(mlm_loss(logits, labels), hand * 4 / 10)
    # no target at all: zero, not NaN, and still differentiable
    empty = torch.randn(0, 7, requires_grad=True)
    loss = mlm_loss(empty, torch.zeros(0, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()
    with pytest.raises(ValueError, match="batch_size"):  # PyTorch names both sizes
        mlm_loss(logits, labels[:, :4])


# --- structure ---------------------------------------------------------------------------------

def test_decoder_is_tied_to_word_embeddings_and_stays_tied():
    model = BertForPreTraining(BertConfig(vocab_size=30))
    emb = model.bert.embeddings.word_embeddings.weight
    assert model.predictions.decoder.weight is emb
    # a gradient step through the MLM head moves the (shared) embedding matrix
    ids = torch.randint(0, 30, (2, 6))
    out = model(ids, mlm_labels=ids)
    out.loss.backward()
    assert model.predictions.decoder.weight.grad is emb.grad
    # still tied after a dtype move and after loading a state dict
    model = model.double()
    assert model.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    other = BertForPreTraining(BertConfig(vocab_size=30)).double()
    other.load_state_dict(model.state_dict())
    assert other.predictions.decoder.weight is other.bert.embeddings.word_embeddings.weight
    torch.testing.assert_close(other.bert.embeddings.word_embeddings.weight,
                               model.bert.embeddings.word_embeddings.weight)


@pytest.mark.parametrize("pre_norm", [False, True])
@pytest.mark.parametrize("size", SIZES)
def test_parameter_count_closed_form(size, pre_norm):
    V, Hd, L, heads, inter, P, S = size
    cfg = BertConfig(V, hidden_size=Hd, num_layers=L, num_heads=heads, intermediate_size=inter,
                     max_position=P, type_vocab_size=S, pre_norm=pre_norm)
    embeddings = (V + P + S) * Hd + 2 * Hd  # three tables + LayerNorm
    layer = 4 * (Hd * Hd + Hd) + (Hd * inter + inter) + (inter * Hd + Hd) + 2 * (2 * Hd)  # attn, ffn, 2 LNs
    final_norm = 2 * Hd if pre_norm else 0
    pooler = Hd * Hd + Hd
    encoder_total = embeddings + L * layer + final_norm + pooler
    heads_total = (Hd * Hd + Hd) + 2 * Hd + V + (2 * Hd + 2)  # transform, LN, bias, NSP (tied decoder)
    assert count_parameters(BertModel(cfg)) == encoder_total
    assert count_parameters(BertForPreTraining(cfg)) == encoder_total + heads_total
    if not pre_norm:
        assert count_parameters(hf_model(*size)) == encoder_total + heads_total


def test_bert_base_parameter_count_is_the_known_one():
    # bert-base-uncased: 109,482,240 in BertModel (embeddings + 12 layers + pooler)
    cfg = BertConfig(30522, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072,
                     max_position=512)
    V, Hd, L, inter, P, S = 30522, 768, 12, 3072, 512, 2
    formula = (V + P + S) * Hd + 2 * Hd + L * (4 * Hd * Hd + 9 * Hd + 2 * Hd * inter + inter) + Hd * Hd + Hd
    assert formula == 109_482_240
    with torch.device("meta"):  # no memory or init time spent on 110 M parameters
        assert count_parameters(BertModel(cfg)) == formula


def test_bert_init():
    cfg = BertConfig(vocab_size=500, hidden_size=64, intermediate_size=256)
    torch.manual_seed(0)
    model = BertForPreTraining(cfg)
    for name, p in model.named_parameters():
        if "LayerNorm" in name or "norm" in name:
            expected = 1.0 if name.endswith("weight") else 0.0
            assert torch.all(p == expected), name
        elif name.endswith("bias"):
            assert torch.all(p == 0), name
        else:  # Linear/Embedding weights ~ N(0, 0.02)
            assert abs(p.mean().item()) < 0.004 and abs(p.std().item() - 0.02) < 0.003, name


def test_output_holds_every_hidden_state_and_the_pooled_cls():
    model = BertModel(BertConfig(vocab_size=30, num_layers=3)).eval()
    ids = torch.randint(0, 30, (2, 5))
    out = model(ids)
    assert len(out) == 3 and len(out.hidden_states) == 4
    assert out.hidden_states[-1] is out.last_hidden_state
    torch.testing.assert_close(out.pooled_output, torch.tanh(model.pooler(out.last_hidden_state[:, 0])))


def test_pre_norm_variant_runs_and_trains_one_step():
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=40, pre_norm=True, dropout=0.0)
    model = BertForPreTraining(cfg)
    assert isinstance(model.bert.encoder.final_norm, torch.nn.LayerNorm)
    ids, tt, am = inputs(40, 2)
    labels, nsp = mlm_labels_for(ids, am), torch.tensor([0, 1, 0, 1])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = model(ids, tt, am, mlm_labels=labels, nsp_labels=nsp).loss
    opt.zero_grad()
    before.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    opt.step()
    after = model(ids, tt, am, mlm_labels=labels, nsp_labels=nsp).loss
    assert torch.isfinite(before) and after < before


# --- errors ------------------------------------------------------------------------------------

def test_config_validation():
    with pytest.raises(ValueError, match="hidden_size=30 is not divisible by num_heads=4"):
        BertConfig(vocab_size=10, hidden_size=30)
    with pytest.raises(ValueError, match="vocab_size must be a positive integer"):
        BertConfig(vocab_size=0)
    with pytest.raises(ValueError, match="num_layers"):
        BertConfig(vocab_size=10, num_layers=-1)
    with pytest.raises(ValueError, match="dropout"):
        BertConfig(vocab_size=10, dropout=1.5)
    cfg = BertConfig(vocab_size=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.hidden_size = 8
    with pytest.raises(TypeError):
        BertConfig(30522, 768)  # only vocab_size is positional: no silent mix-up of the rest
    assert dataclasses.replace(cfg, num_layers=4).num_layers == 4


def test_forward_errors_name_the_problem():
    model = BertForPreTraining(BertConfig(vocab_size=20, max_position=8, type_vocab_size=2))
    ids = torch.randint(0, 20, (2, 6))
    with pytest.raises(ValueError, match=r"seq_len <= max_position=8, got \(2, 9\)"):
        model(torch.zeros(2, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"input_ids must be in \[0, vocab_size=20\), got \[25\]"):
        model(torch.tensor([[1, 25, 3]]))
    with pytest.raises(ValueError, match="input_ids must be in"):
        model(torch.tensor([[1, -1, 3]]))
    with pytest.raises(TypeError, match="integer"):
        model(ids.float())
    with pytest.raises(ValueError, match=r"input_ids must be \(batch, seq_len\)"):
        model(ids[0])
    with pytest.raises(ValueError, match=r"token_type_ids must be in \[0, type_vocab_size=2\)"):
        model(ids, token_type_ids=torch.full_like(ids, 2))
    with pytest.raises(ValueError, match=r"token_type_ids must have shape \(2, 6\)"):
        model(ids, token_type_ids=ids[:, :5])
    with pytest.raises(ValueError, match=r"attention_mask must have shape \(2, 6\)"):
        model(ids, attention_mask=torch.ones(2, 5))
    with pytest.raises(ValueError, match="only 0"):
        model(ids, attention_mask=torch.full_like(ids, 2))
    with pytest.raises(ValueError, match="no real token"):
        model(ids, attention_mask=torch.tensor([[1] * 6, [0] * 6]))
    with pytest.raises(ValueError, match=r"mlm_labels must be in \[0, vocab_size=20\) or -100"):
        model(ids, mlm_labels=torch.full_like(ids, 20))
    with pytest.raises(ValueError, match="mlm_labels must have shape"):
        model(ids, mlm_labels=ids[:, :3])
    with pytest.raises(TypeError, match="mlm_labels must be an integer"):
        model(ids, mlm_labels=ids.float())
    with pytest.raises(ValueError, match=r"nsp_labels must be in \[0, num_labels=2\), got \[2\]"):
        model(ids, nsp_labels=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match=r"nsp_labels must have shape \(2,\)"):
        model(ids, nsp_labels=torch.tensor([0, 1, 1]))
    with pytest.raises(TypeError, match="mlstep.BertConfig"):
        BertModel({"vocab_size": 20})


def test_bert_from_hf_refuses_unsupported_configs():
    base = dict(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=16)
    with pytest.raises(ValueError, match="hidden_act='relu'"):
        BertConfig.from_hf(transformers.BertConfig(**base, hidden_act="relu"))
    relative = transformers.BertConfig(**base)
    relative.position_embedding_type = "relative_key"  # 4.x option; 5.x dropped it
    with pytest.raises(ValueError, match="relative_key"):
        BertConfig.from_hf(relative)
    with pytest.raises(ValueError, match="tie_word_embeddings"):
        BertConfig.from_hf(transformers.BertConfig(**base, tie_word_embeddings=False))
    with pytest.raises(TypeError, match="BertForPreTraining"):
        bert_from_hf(torch.nn.Linear(2, 2))
    cfg = BertConfig.from_hf(transformers.BertConfig(**base, hidden_dropout_prob=0.2,
                                                     attention_probs_dropout_prob=0.05))
    assert (cfg.num_layers, cfg.max_position, cfg.dropout) == (1, 512, 0.2)
