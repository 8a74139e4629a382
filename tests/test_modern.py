"""The modern decoder's options (RoPE, RMSNorm, SwiGLU, grouped-query attention, qk_norm, no bias,
an untied head) against Hugging Face Llama and Qwen3 with copied weights, their defining
properties, the KV cache, generation, unchanged defaults, and error messages."""

import dataclasses

import pytest
import torch

from mlstep.attention import MultiHeadAttention, rotate
from mlstep.bert import BertConfig, BertForPreTraining
from mlstep.config import TransformerConfig
from mlstep.generation import generate, pad_left
from mlstep.gpt import GPT, GPTConfig, llama_from_hf
from mlstep.tasks.store import load_model, save_model
from mlstep.transformer import FeedForward, find_backbone, norm_layer

transformers = pytest.importorskip("transformers")
from transformers.models.llama import modeling_llama  # noqa: E402
from transformers.models.qwen3 import modeling_qwen3  # noqa: E402

TOL = dict(atol=1e-5, rtol=1e-5)
D, H, G, FF, V = 32, 4, 2, 48, 97
OPTIONS = dict(positions="rope", norm="rmsnorm", ffn="swiglu", bias=False)


def hf_config(kind="llama", **changes):
    fields = dict(vocab_size=V, hidden_size=D, intermediate_size=FF, num_hidden_layers=2, num_attention_heads=H,
                  num_key_value_heads=G, max_position_embeddings=64, tie_word_embeddings=False,
                  attn_implementation="eager", eos_token_id=None, bos_token_id=None, pad_token_id=0)
    if kind == "qwen3":
        fields["head_dim"] = D // H
    return (transformers.Qwen3Config if kind == "qwen3" else transformers.LlamaConfig)(**{**fields, **changes})


def hf_model(kind="llama", seed=0, **changes):
    torch.manual_seed(seed)
    cls = transformers.Qwen3ForCausalLM if kind == "qwen3" else transformers.LlamaForCausalLM
    model = cls(hf_config(kind, **changes)).eval()
    with torch.no_grad():  # norms (and biases) away from 1 and 0, so a missed or swapped copy would show
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.2)
    return model


def ids_for(B=3, T=12, seed=1):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def config(**changes) -> TransformerConfig:
    return TransformerConfig(**{**dict(hidden_size=D, num_heads=H, intermediate_size=FF, causal=True), **changes})


# --- each option against its Hugging Face module ----------------------------------------------------

def test_rmsnorm_matches_llama_rmsnorm():
    ours, theirs = norm_layer(config(norm="rmsnorm", layer_norm_eps=1e-6)), modeling_llama.LlamaRMSNorm(D, 1e-6)
    with torch.no_grad():
        theirs.weight.uniform_(0.5, 1.5)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(3, 7, D) * 3
    torch.testing.assert_close(ours(x), theirs(x), **TOL)
    torch.testing.assert_close(ours(x), x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * theirs.weight)


def test_swiglu_matches_llama_mlp():
    torch.manual_seed(0)
    theirs = modeling_llama.LlamaMLP(hf_config())
    ours = FeedForward(config(ffn="swiglu", bias=False))
    for dst, src in ((ours.fc1, theirs.gate_proj), (ours.up, theirs.up_proj), (ours.fc2, theirs.down_proj)):
        dst.load_state_dict(src.state_dict())
    x = torch.randn(2, 5, D)
    torch.testing.assert_close(ours(x), theirs(x), **TOL)


@pytest.mark.parametrize("kind", ["llama", "qwen3"])
@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_attention_with_rope_and_gqa_matches_hugging_face(kind, kv_heads):
    cfg = hf_config(kind, num_key_value_heads=kv_heads)
    module = modeling_qwen3 if kind == "qwen3" else modeling_llama
    torch.manual_seed(0)
    theirs = getattr(module, f"{'Qwen3' if kind == 'qwen3' else 'Llama'}Attention")(cfg, layer_idx=0).eval()
    ours = MultiHeadAttention(config(positions="rope", num_kv_heads=kv_heads, bias=False, qk_norm=kind == "qwen3",
                                     layer_norm_eps=cfg.rms_norm_eps)).eval()
    with torch.no_grad():
        for name in ("q_norm", "k_norm"):
            if hasattr(theirs, name):
                getattr(theirs, name).weight.uniform_(0.5, 1.5)
    ours.load_state_dict({k.replace("o_proj", "out_proj"): v for k, v in theirs.state_dict().items()})
    x, T = torch.randn(2, 9, D), 9
    positions = torch.arange(5, 5 + T)  # an offset, as after 5 cached tokens
    cos_sin = module.__dict__[f"{type(theirs).__name__.replace('Attention', '')}RotaryEmbedding"](cfg)(
        x, positions[None].expand(2, T))
    causal = torch.full((T, T), float("-inf")).triu(1)[None, None]  # (1, 1, T, T), additive
    expected = theirs(x, position_embeddings=cos_sin, attention_mask=causal)[0]
    torch.testing.assert_close(ours(x, positions=positions), expected, **TOL)
    assert ours.k_proj.out_features == kv_heads * D // H


# --- the whole model against Hugging Face ----------------------------------------------------------

MODELS = {  # name: (kind, changes to the HF config)
    "llama-gqa-untied": ("llama", {}),
    "llama-mha-tied": ("llama", dict(num_key_value_heads=4, tie_word_embeddings=True)),
    "llama-mqa-bias": ("llama", dict(num_key_value_heads=1, attention_bias=True, mlp_bias=True, rope_theta=500.0)),
    "qwen3-gqa-untied": ("qwen3", {}),
    "qwen3-tied": ("qwen3", dict(tie_word_embeddings=True, num_hidden_layers=3)),
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def pair(request):
    kind, changes = MODELS[request.param]
    hf = hf_model(kind, **changes)
    return hf, llama_from_hf(hf)


def test_config_is_mapped(pair):
    hf, ours = pair
    c, h = ours.config, hf.config
    assert (c.positions, c.norm, c.ffn, c.bias) == ("rope", "rmsnorm", "swiglu", h.attention_bias)
    assert (c.num_kv_heads, c.qk_norm, c.tie_embeddings) == (h.num_key_value_heads, h.model_type == "qwen3",
                                                             h.tie_word_embeddings)
    assert c.rope_theta == h.rope_parameters["rope_theta"] and ours.wpe is None
    assert (ours.lm_head.weight is ours.wte.weight) == h.tie_word_embeddings
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())


def test_logits_and_loss_match_hugging_face(pair):
    hf, ours = pair
    ids = ids_for()
    labels = ids.clone()
    labels[0, 6:] = -100
    with torch.no_grad():
        expected = hf(ids, labels=labels)
        torch.testing.assert_close(ours(ids).logits, expected.logits, **TOL)
        torch.testing.assert_close(ours(ids, labels).loss, expected.loss, **TOL)


def test_left_padded_logits_match_hugging_face_at_real_tokens(pair):
    hf, ours = pair
    ids, mask = pad_left([[5, 6, 7], [8, 9, 10, 11, 12, 13, 14], [15]], 0)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # real tokens count from 0, as in GPT.hidden_states
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask, position_ids=positions).logits
        got = ours(ids, attention_mask=mask).logits
    torch.testing.assert_close(got[mask.bool()], expected[mask.bool()], **TOL)


def test_greedy_generation_with_cache_equals_without_and_hugging_face(pair):
    hf, ours = pair
    prompt = ids_for(B=2, T=4)
    cached = generate(ours, prompt, 10, temperature=0)
    assert torch.equal(cached, generate(ours, prompt, 10, temperature=0, use_cache=False))
    with torch.no_grad():
        expected = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=10, do_sample=False)
    assert torch.equal(cached, expected)
    ids, mask = pad_left([[5, 6, 7], [8, 9, 10, 11, 12, 13]], 0)
    with torch.no_grad():
        expected = hf.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
    assert torch.equal(generate(ours, ids, 6, temperature=0, attention_mask=mask), expected)


def test_kv_cache_holds_the_smaller_keys_and_gives_the_whole_sequence(pair):
    _, ours = pair
    ids = ids_for(B=2, T=10)
    with torch.no_grad():
        full = ours(ids).logits
        caches = [{} for _ in ours.decoder.layers]
        steps = [ours(ids[:, :4], caches=caches).logits]
        steps += [ours(ids[:, t:t + 1], caches=caches).logits for t in range(4, 10)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, **TOL)
    assert caches[0]["k"].shape == (2, ours.config.num_kv_heads, 10, D // H)  # (B, G, S, K)


# --- the options' defining properties ----------------------------------------------------------------

def test_rope_scores_depend_only_on_the_offset():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16, generator=g), torch.randn(1, 1, 1, 16, generator=g)

    def score(m: int, n: int) -> float:
        return (rotate(q, torch.tensor([m])) * rotate(k, torch.tensor([n]))).sum().item()

    for offset in (0, 3, 17):
        scores = [score(n + offset, n) for n in (0, 5, 40)]
        assert max(scores) - min(scores) < 1e-4, scores
    assert abs(score(3, 0) - score(0, 3)) > 1e-3  # the sign of the offset matters
    torch.testing.assert_close(rotate(q, torch.tensor([0])), q)  # position 0 is not turned
    torch.testing.assert_close(rotate(q, torch.tensor([7])).norm(), q.norm())  # a rotation keeps lengths


def test_rope_with_batched_positions_equals_each_row_alone():
    x = torch.randn(2, 3, 5, 8)
    positions = torch.tensor([[0, 1, 2, 3, 4], [0, 0, 0, 1, 2]])  # (B, T): the second row left-padded
    got = rotate(x, positions)
    for b in range(2):
        torch.testing.assert_close(got[b:b + 1], rotate(x[b:b + 1], positions[b]))


@pytest.mark.parametrize("need_weights", [False, True])
def test_gqa_equals_full_attention_with_repeated_key_value_heads(need_weights):
    torch.manual_seed(0)
    gqa = MultiHeadAttention(config(num_kv_heads=G, positions="rope", qk_norm=True)).eval()
    full = MultiHeadAttention(config(positions="rope", qk_norm=True)).eval()
    state = gqa.state_dict()
    for name in ("k_proj.weight", "k_proj.bias", "v_proj.weight", "v_proj.bias"):  # each group's rows H / G times
        state[name] = state[name].unflatten(0, (G, -1)).repeat_interleave(H // G, dim=0).flatten(0, 1)
    full.load_state_dict(state)
    x = torch.randn(2, 6, D)
    got, expected = gqa(x, need_weights=need_weights), full(x, need_weights=need_weights)
    for a, b in zip(got, expected) if need_weights else [(got, expected)]:
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_bias_false_leaves_only_norm_parameters_without_a_matrix():
    model = GPT(GPTConfig(V, **OPTIONS, num_kv_heads=G, qk_norm=True))
    vectors = {n.rsplit(".", 2)[-2] for n, p in model.named_parameters() if p.dim() == 1}
    assert vectors == {"norm1", "norm2", "final_norm", "q_norm", "k_norm"}
    assert find_backbone(model).embeddings == [model.wte]  # no position table with RoPE


def test_a_modern_gpt_saves_and_loads(tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(V, **OPTIONS, num_kv_heads=G, qk_norm=True, tie_embeddings=False)).eval()
    loaded, _, _ = load_model(save_model(tmp_path, model))
    assert loaded.config == model.config and loaded.lm_head.weight is not loaded.wte.weight
    assert torch.equal(loaded(ids_for()).logits, model(ids_for()).logits)


# --- the defaults are what they were ------------------------------------------------------------------

DEFAULTS = dict(positions="learned", rope_theta=10000.0, norm="layernorm", ffn="gelu", num_kv_heads=None,
                qk_norm=False, bias=True)
BLOCK_KEYS = [f"{m}.{p}" for m in ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj", "norm1",
                                   "ffn.fc1", "ffn.fc2", "norm2") for p in ("weight", "bias")]


def test_explicit_defaults_build_the_same_models_with_the_same_keys():
    small = dict(hidden_size=32, num_heads=4, intermediate_size=64)
    ids = ids_for(T=10)
    outputs = []
    for extra in ({}, DEFAULTS, {**DEFAULTS, "num_kv_heads": 4}):
        torch.manual_seed(0)
        gpt = GPT(GPTConfig(V, **small, **extra, **({"tie_embeddings": True} if extra else {}))).eval()
        torch.manual_seed(0)
        bert = BertForPreTraining(BertConfig(V, **small, **extra, dropout=0.0)).eval()
        outputs.append((gpt(ids).logits, generate(gpt, ids[:, :4], 6, temperature=0), bert(ids).mlm_logits))
        blocks = [f"decoder.layers.{i}.{k}" for i in range(2) for k in BLOCK_KEYS]
        assert list(gpt.state_dict()) == ["wte.weight", "wpe.weight", *blocks, "decoder.final_norm.weight",
                                          "decoder.final_norm.bias", "lm_head.weight"]
        assert [k for k in bert.state_dict() if ".layers." in k] == [f"bert.encoder.layers.{i}.{k}"
                                                                     for i in range(2) for k in BLOCK_KEYS]
    for got in outputs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(got, outputs[0]))


def test_default_outputs_are_the_ones_recorded_before_the_options():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(100, hidden_size=32, num_heads=4, intermediate_size=64, max_position=40)).eval()
    torch.manual_seed(0)
    bert = BertForPreTraining(BertConfig(100, hidden_size=32, num_heads=4, intermediate_size=64, dropout=0.0)).eval()
    ids = torch.randint(0, 100, (3, 12), generator=torch.Generator().manual_seed(1))
    attention_mask = torch.ones_like(ids)
    attention_mask[1, 8:] = 0
    recorded_gpt = [[0.05895274877548218, -0.02757631056010723, 0.105415940284729],
                    [-0.05003269761800766, 0.07885283976793289, -0.13836054503917694]]
    recorded_bert = [[-0.12307880818843842, -0.29590362310409546, -0.044274646788835526],
                     [0.045486025512218475, -0.26184213161468506, 0.03478078544139862]]
    with torch.no_grad():
        torch.testing.assert_close(gpt(ids).logits[0, :2, :3], torch.tensor(recorded_gpt), atol=1e-6, rtol=0)
        got = bert(ids, attention_mask=attention_mask).mlm_logits[0, :2, :3]
    torch.testing.assert_close(got, torch.tensor(recorded_bert), atol=1e-6, rtol=0)
    assert generate(gpt, ids[:1, :5], 8, temperature=0)[0].tolist() == [45, 39, 24, 68, 63, 92, 92, 92, 92, 92,
                                                                         87, 87, 87]


def test_a_default_config_prints_as_before_and_an_option_shows():
    config = GPTConfig(2000, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=256, dropout=0.0)
    assert repr(config) == ("GPTConfig(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=256, "
                            "dropout=0.0, layer_norm_eps=1e-05, pre_norm=True, causal=True, gelu='tanh', "
                            "vocab_size=2000, max_position=128, initializer_range=0.02)")
    assert "positions='rope', num_kv_heads=2" in repr(dataclasses.replace(config, positions="rope", num_kv_heads=2))


# --- errors ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, match", [
    (dict(num_kv_heads=3), "num_kv_heads=3 must divide num_heads=4"),
    (dict(num_kv_heads=0), "num_kv_heads must be a positive integer"),
    (dict(hidden_size=12, positions="rope"), "head size .* = 3 must be even"),
    (dict(norm="batchnorm"), r"norm must be one of \('layernorm', 'rmsnorm'\), got 'batchnorm'"),
    (dict(ffn="relu"), "ffn must be one of"),
    (dict(positions="alibi"), "positions must be one of"),
    (dict(rope_theta=0.0), "rope_theta must be positive"),
])
def test_config_errors_name_the_problem(changes, match):
    with pytest.raises(ValueError, match=match):
        TransformerConfig(**{**dict(hidden_size=16, num_heads=4), **changes})


def test_bert_refuses_rope_and_llama_from_hf_refuses_what_it_cannot_copy():
    with pytest.raises(ValueError, match="BertConfig.positions must be 'learned'"):
        BertConfig(V, positions="rope")
    with pytest.raises(TypeError, match="expected a transformers.LlamaForCausalLM"):
        llama_from_hf(torch.nn.Linear(2, 2))
    scaled = {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}
    for changes, match in ((dict(hidden_act="gelu"), "hidden_act='gelu'"), (dict(rope_parameters=scaled), "rope_type"),
                           (dict(head_dim=16), "head_dim=16"), (dict(mlp_bias=True), "mlp_bias=True")):
        with pytest.raises(ValueError, match=f"unsupported {match}"):
            GPTConfig.from_llama(hf_config(**changes))
