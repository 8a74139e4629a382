"""mlstep.gpt and mlstep.generation against Hugging Face GPT2LMHeadModel with copied weights, the
loss against F.cross_entropy, the KV cache against full recomputation, sampling properties, and
error messages."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from mlstep.bert import BertConfig, BertForPreTraining
from mlstep.generation import filter_logits, generate, pad_left, sample_next
from mlstep.gpt import (
    GPT,
    GPTConfig,
    GPTForSequenceClassification,
    GPTOutput,
    gpt_from_hf,
    lm_step,
    next_token_targets,
)
from mlstep.tools.runtime import count_parameters
from mlstep.transformer import Transformer

transformers = pytest.importorskip("transformers")

TOL = dict(atol=1e-5, rtol=1e-5)
SIZES = [  # (vocab, hidden, layers, heads, inner, positions, activation)
    (61, 16, 1, 2, None, 24, "gelu_new"),
    (97, 32, 2, 4, 80, 40, "gelu_new"),
    (80, 24, 3, 3, None, 32, "gelu"),
]


def hf_model(V, D, L, H, inner, P, act, seed=0):
    cfg = transformers.GPT2Config(vocab_size=V, n_embd=D, n_layer=L, n_head=H, n_inner=inner, n_positions=P,
                                  activation_function=act, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                  bos_token_id=0, eos_token_id=0)
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # non-trivial biases and norms, so a missed copy would show
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.fixture(scope="module", params=SIZES, ids=lambda s: f"V{s[0]}-D{s[1]}-L{s[2]}-{s[6]}")
def pair(request):
    hf = hf_model(*request.param)
    return request.param, hf, gpt_from_hf(hf)


def ids_for(V, B=3, T=12, seed=1):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


# --- the model against Hugging Face ----------------------------------------------------------------

def test_logits_and_loss_match_hugging_face(pair):
    (V, *_), hf, ours = pair
    assert not ours.training  # follows the HF model's mode
    ids = ids_for(V)
    labels = ids.clone()
    labels[0, 5:] = -100  # ignored positions
    with torch.no_grad():
        expected = hf(ids, labels=labels)
        got = ours(ids)
        got_loss = ours(ids, labels).loss
    assert isinstance(got, GPTOutput) and got.loss is None and got.logits.shape == (3, 12, V)
    torch.testing.assert_close(got.logits, expected.logits, **TOL)
    torch.testing.assert_close(got_loss, expected.loss, **TOL)


def test_hidden_states_match_hugging_face(pair):
    (V, *_), hf, ours = pair
    ids = ids_for(V)
    with torch.no_grad():
        expected = hf.transformer(ids, output_hidden_states=True).hidden_states
        got = ours.hidden_states(ids)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, **TOL)


def test_greedy_generation_matches_hugging_face_generate(pair):
    (V, *_), hf, ours = pair
    prompt = ids_for(V, B=2, T=4)
    with torch.no_grad():
        expected = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12,
                               do_sample=False, pad_token_id=0, eos_token_id=None)
    assert torch.equal(generate(ours, prompt, 12, temperature=0), expected)


def test_loss_is_shifted_cross_entropy_with_ignored_labels():
    torch.manual_seed(0)
    model = GPT(GPTConfig(50, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, max_position=16))
    ids = torch.randint(0, 50, (2, 9))
    labels = ids.clone()
    labels[1, :4] = -100  # a prompt without loss
    out = model(ids, labels)
    logits = model(ids).logits
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 50), labels[:, 1:].reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, expected)
    chosen = next_token_targets(labels) != -100
    assert out.logits.shape == (int(chosen.sum()), 50)  # projected at the targeted positions only
    torch.testing.assert_close(out.logits, logits[chosen])
    assert torch.equal(next_token_targets(torch.tensor([[1, 2, 3]])), torch.tensor([[2, 3, -100]]))
    assert lm_step(model, {"input_ids": ids}).item() == pytest.approx(model(ids, ids).loss.item())
    assert lm_step(model, {"input_ids": ids, "labels": labels}).item() == pytest.approx(out.loss.item())


# --- the architecture ----------------------------------------------------------------------------

def test_gpt_is_the_shared_transformer_with_tied_head():
    config = GPTConfig(100, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=128, max_position=20)
    model = GPT(config)
    bert = BertForPreTraining(BertConfig(100, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=128))
    assert type(model.decoder) is Transformer is type(bert.bert.encoder)
    assert config.pre_norm and config.causal and config.gelu == "tanh" and config.layer_norm_eps == 1e-5
    assert model.lm_head.weight is model.wte.weight
    D, L, V, F_, P = 32, 2, 100, 128, 20
    block = 2 * 2 * D + (4 * D * D + 4 * D) + (2 * D * F_ + F_ + D)
    assert count_parameters(model) == V * D + P * D + L * block + 2 * D  # + the final LayerNorm
    # GPT-2's initialisation: residual output layers scaled by 1/sqrt(2L)
    torch.manual_seed(0)
    big = GPT(GPTConfig(100, hidden_size=256, num_layers=8, num_heads=4, intermediate_size=512))
    assert big.decoder.layers[0].ffn.fc2.weight.std().item() == pytest.approx(0.02 / 4, rel=0.05)
    assert big.decoder.layers[0].ffn.fc1.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_gpt2_small_has_124m_parameters():
    config = GPTConfig(50257, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072,
                       max_position=1024)
    with torch.device("meta"):
        model = GPT(config)
    assert count_parameters(model) == 124_439_808  # GPT-2 small, as Hugging Face counts it


def test_config_from_hf_and_validation():
    hf_cfg = transformers.GPT2Config()
    config = GPTConfig.from_hf(hf_cfg)
    assert (config.vocab_size, config.hidden_size, config.num_layers, config.intermediate_size,
            config.max_position, config.dropout) == (50257, 768, 12, 3072, 1024, 0.1)
    assert GPTConfig.from_hf(hf_cfg, dropout=0.0).dropout == 0.0
    with pytest.raises(ValueError, match="causal"):
        GPTConfig(10, causal=False)
    with pytest.raises(ValueError, match="not divisible"):
        GPTConfig(10, hidden_size=30, num_heads=4)
    with pytest.raises(TypeError):
        GPTConfig(10, 64)  # everything but vocab_size is keyword-only
    with pytest.raises(ValueError, match="activation_function"):
        GPTConfig.from_hf(transformers.GPT2Config(activation_function="relu"))
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx"):
        gpt_from_hf(transformers.GPT2LMHeadModel(transformers.GPT2Config(
            n_layer=1, n_embd=16, n_head=2, vocab_size=20, n_positions=8, scale_attn_by_inverse_layer_idx=True)))
    with pytest.raises(TypeError, match="GPT2LMHeadModel"):
        gpt_from_hf(torch.nn.Linear(2, 2))
    assert dataclasses.is_dataclass(config) and config.initializer_range == 0.02


def test_forward_errors_name_the_problem():
    model = GPT(GPTConfig(20, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, max_position=8))
    with pytest.raises(ValueError, match="max_position=8"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="vocab_size"):
        model(torch.tensor([[1, 20]]))
    with pytest.raises(TypeError, match="integer"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="labels must have shape"):
        model(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="no target"):
        model(torch.zeros(1, 3, dtype=torch.long), torch.tensor([[1, -100, -100]]))
    with pytest.raises(ValueError, match="attention_mask must have shape"):
        model(torch.zeros(1, 3, dtype=torch.long), attention_mask=torch.ones(1, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="GPTConfig"):
        GPT(BertConfig(20))


# --- the KV cache and left padding -------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    config = GPTConfig(40, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_position=48)
    with torch.no_grad():
        model = GPT(config).eval()
        for p in model.parameters():  # a sharper model than the initialisation, so tokens vary
            p.mul_(3.0)
    return model


def test_cached_steps_give_the_logits_of_the_whole_sequence(tiny):
    ids = ids_for(40, B=2, T=10)
    with torch.no_grad():
        full = tiny(ids).logits  # (B, T, V)
        caches = [{} for _ in tiny.decoder.layers]
        steps = [tiny(ids[:, :4], caches=caches).logits]
        steps += [tiny(ids[:, t:t + 1], caches=caches).logits for t in range(4, 10)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert caches[0]["k"].shape == (2, 4, 10, 8)  # (B, H, S, K)


def test_cached_and_uncached_generation_give_identical_tokens(tiny):
    prompt = ids_for(40, B=3, T=5)
    cached = generate(tiny, prompt, 30, temperature=0)
    assert cached.shape == (3, 35) and torch.equal(cached[:, :5], prompt)
    assert torch.equal(cached, generate(tiny, prompt, 30, temperature=0, use_cache=False))
    assert len(set(cached[:, 5:].flatten().tolist())) > 3  # the test is not trivially constant
    sampled = [generate(tiny, prompt, 20, use_cache=c, generator=torch.Generator().manual_seed(3), top_k=10)
               for c in (True, False)]
    assert torch.equal(*sampled)


def test_left_padded_batch_equals_each_prompt_alone_and_stays_finite(tiny):
    prompts = [[5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8], [9], [3, 3, 3, 3, 3]]
    ids, mask = pad_left(prompts, pad_id=0)
    assert ids.shape == (4, 8) and mask.sum(1).tolist() == [3, 8, 1, 5] and mask[0, :5].sum() == 0
    with torch.no_grad():
        logits = tiny(ids, attention_mask=mask).logits
    assert torch.isfinite(logits).all()  # padding queries attend to themselves: no NaN row
    batch = generate(tiny, ids, 12, temperature=0, attention_mask=mask)
    assert torch.equal(batch, generate(tiny, ids, 12, temperature=0, attention_mask=mask, use_cache=False))
    for row, prompt in zip(batch, prompts):
        alone = generate(tiny, torch.tensor(prompt), 12, temperature=0)
        assert row[-12:].tolist() == alone[len(prompt):].tolist()
    with torch.no_grad():  # the logits of a real token do not depend on the padding before it
        alone = tiny(torch.tensor([prompts[0]])).logits[0]
    torch.testing.assert_close(logits[0, -3:], alone, atol=1e-5, rtol=1e-5)


def test_eos_stops_rows_and_generation(tiny):
    prompt = ids_for(40, B=2, T=3)
    free = generate(tiny, prompt, 20, temperature=0)
    eos = int(free[0, 6])  # the 4th new token of row 0 becomes the end token
    out = generate(tiny, prompt, 20, temperature=0, eos_id=eos)
    for row in out:
        new = row[3:].tolist()
        if eos in new:
            first = new.index(eos)
            assert all(t == eos for t in new[first:])  # filled with eos after it
    if all(eos in row[3:].tolist() for row in out):
        assert out.shape[1] < 23  # stopped early


def test_sampling_is_reproducible_with_a_seeded_generator(tiny):
    prompt = ids_for(40, B=4, T=3)
    a = generate(tiny, prompt, 15, temperature=1.3, top_p=0.9, generator=torch.Generator().manual_seed(7))
    b = generate(tiny, prompt, 15, temperature=1.3, top_p=0.9, generator=torch.Generator().manual_seed(7))
    c = generate(tiny, prompt, 15, temperature=1.3, top_p=0.9, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert tiny.training is False


def test_top_k_and_top_p_never_sample_outside_their_set():
    g = torch.Generator().manual_seed(0)
    for trial in range(12):
        logits = torch.randn(8, 50, generator=g) * 3  # (B, V)
        k, p = 1 + trial % 7, 0.2 + 0.06 * trial
        allowed_k = logits.topk(k, dim=-1).indices  # (B, k)
        probs, order = logits.softmax(-1).sort(dim=-1, descending=True)
        n_p = ((probs.cumsum(-1) - probs) < p).sum(-1)  # nucleus size per row
        for _ in range(10):
            tk = sample_next(logits, top_k=k, generator=g)
            assert (allowed_k == tk[:, None]).any(-1).all()
            tp = sample_next(logits, top_p=p, generator=g)
            rank = (order == tp[:, None]).int().argmax(-1)  # where the sampled token sits, most likely first
            assert (rank < n_p).all()
        filtered = filter_logits(logits, top_k=k)
        assert (torch.isfinite(filtered).sum(-1) == k).all()
        nucleus = torch.isfinite(filter_logits(logits, top_p=p))
        assert torch.equal(nucleus.sum(-1), n_p)
        mass = (logits.softmax(-1) * nucleus).sum(-1)
        assert (mass >= p - 1e-6).all()  # the smallest set that reaches p ...
        assert ((mass - logits.softmax(-1).masked_fill(~nucleus, 2).min(-1).values) < p).all()  # ... and no larger
    logits = torch.tensor([[0.0, 5.0, 1.0]])
    assert sample_next(logits, temperature=0).item() == 1  # greedy
    assert filter_logits(logits, top_k=10).isfinite().all()  # k larger than V keeps everything


def test_temperature_sharpens_and_flattens():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).expand(20000, 4)
    g = torch.Generator().manual_seed(0)
    freq = {t: torch.bincount(sample_next(logits, t, generator=g), minlength=4) / 20000 for t in (0.5, 1.0, 3.0)}
    torch.testing.assert_close(freq[1.0], logits[0].softmax(-1), atol=0.015, rtol=0)
    assert freq[0.5][0] > freq[1.0][0] > freq[3.0][0]


def test_generate_errors_name_the_problem(tiny):
    prompt = torch.zeros(1, 40, dtype=torch.long)
    with pytest.raises(ValueError, match="max_position=48"):
        generate(tiny, prompt, 10)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(tiny, prompt[:, :3], 0)
    with pytest.raises(ValueError, match="temperature"):
        generate(tiny, prompt[:, :3], 2, temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        generate(tiny, prompt[:, :3], 2, top_p=1.5)
    with pytest.raises(TypeError, match="mlstep.GPT"):
        generate(torch.nn.Linear(2, 2), prompt, 2)
    with pytest.raises(ValueError, match="empty"):
        pad_left([[1], []], 0)


# --- classification -------------------------------------------------------------------------------

def test_classifier_reads_the_last_real_token():
    torch.manual_seed(0)
    config = GPTConfig(30, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, max_position=12)
    clf = GPTForSequenceClassification(config, num_labels=3).eval()
    rows = [[4, 5, 6, 7], [8, 9], [1, 2, 3, 4, 5, 6]]
    ids = torch.tensor([r + [0] * (6 - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (6 - len(r)) for r in rows])
    with torch.no_grad():
        batch = clf(ids, mask, labels=torch.tensor([0, 1, 2]))
        alone = torch.cat([clf(torch.tensor([r])).logits for r in rows])
        hidden = clf.gpt.hidden_states(torch.tensor([rows[1]]))[-1][0, -1]
    torch.testing.assert_close(batch.logits, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone[1], clf.classifier(hidden), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch.loss, F.cross_entropy(batch.logits, torch.tensor([0, 1, 2])))
    pretrained = GPT(config)
    copy = GPTForSequenceClassification.from_pretrained(pretrained, 2)
    assert copy.gpt is not pretrained and torch.equal(copy.gpt.wte.weight, pretrained.wte.weight)
    with pytest.raises(ValueError, match="right"):
        clf(ids, mask.flip(1))
    with pytest.raises(ValueError, match="segments"):
        clf(ids, mask, token_type_ids=torch.ones_like(ids))
    with pytest.raises(ValueError, match="num_labels"):
        GPTForSequenceClassification(config, 1)
