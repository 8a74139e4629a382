"""mlstep.attention against PyTorch's own implementations, plus invariants and error messages."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mlstep.attention import (
    MultiHeadAttention,
    causal_mask,
    padding_mask,
    scaled_dot_product_attention,
)
from mlstep.config import TransformerConfig

TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float64: dict(atol=1e-12, rtol=1e-10)}


def rand_qkv(shape_q, shape_k, d_v, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*shape_q, generator=g, dtype=dtype)
    k = torch.randn(*shape_k, generator=g, dtype=dtype)
    v = torch.randn(*shape_k[:-1], d_v, generator=g, dtype=dtype)
    return q, k, v


# --- scaled_dot_product_attention ---------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "batch, n, s, d_k, d_v",
    [((), 1, 1, 1, 1), ((2,), 5, 7, 8, 3), ((2, 3), 4, 4, 16, 16), ((1, 2, 2), 9, 3, 5, 2)],
)
def test_sdpa_matches_torch(dtype, batch, n, s, d_k, d_v):
    q, k, v = rand_qkv((*batch, n, d_k), (*batch, s, d_k), d_v, dtype)
    out, w = scaled_dot_product_attention(q, k, v)
    ref = F.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, ref, **TOL[dtype])
    assert w.shape == (*batch, n, s)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sdpa_matches_torch_with_padding_mask(dtype):
    q, k, v = rand_qkv((3, 2, 6, 8), (3, 2, 6, 8), 8, dtype)
    am = torch.tensor([[1] * 6, [1, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0]])
    mask = padding_mask(am)  # (3, 1, 1, 6)
    out, w = scaled_dot_product_attention(q, k, v, mask=mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, ref, **TOL[dtype])
    # masked keys get exactly zero weight
    assert (w[1, :, :, 4:] == 0).all() and (w[2, :, :, 1:] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sdpa_matches_torch_causal(dtype):
    q, k, v = rand_qkv((2, 4, 7, 8), (2, 4, 7, 8), 5, dtype)
    out, w = scaled_dot_product_attention(q, k, v, mask=causal_mask(7))
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(out, ref, **TOL[dtype])
    assert torch.equal(w.triu(diagonal=1), torch.zeros_like(w))


def test_sdpa_causal_and_padding_combined():
    q, k, v = rand_qkv((2, 6, 4), (2, 6, 4), 4)
    mask = causal_mask(6) & padding_mask(torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0]]))[:, 0]
    out, _ = scaled_dot_product_attention(q, k, v, mask=mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, ref)


def test_causal_mask_rectangular_matches_tril_offset():
    m = causal_mask(2, 5)
    assert m.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]
    with pytest.raises(ValueError):
        causal_mask(0)


@settings(max_examples=60, deadline=None)
@given(
    b=st.integers(1, 3), h=st.integers(1, 4), n=st.integers(1, 9), s=st.integers(1, 9),
    d_k=st.integers(1, 12), d_v=st.integers(1, 12), use_mask=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_sdpa_hypothesis_shapes(b, h, n, s, d_k, d_v, use_mask, seed):
    q, k, v = rand_qkv((b, h, n, d_k), (b, h, s, d_k), d_v, seed=seed)
    mask = None
    if use_mask:
        g = torch.Generator().manual_seed(seed)
        mask = torch.rand(b, 1, n, s, generator=g) > 0.3
        mask[..., 0] = True  # keep at least one key per row so PyTorch's result is defined
    out, w = scaled_dot_product_attention(q, k, v, mask=mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w.sum(-1), torch.ones(b, h, n))
    if mask is not None:
        assert (w.masked_select(~mask.expand_as(w)) == 0).all()


def test_weights_rows_sum_to_one_and_are_softmax_of_scaled_scores():
    q, k, v = rand_qkv((4, 5, 8), (4, 6, 8), 3, torch.float64)
    _, w = scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(w.sum(-1), torch.ones(4, 5, dtype=torch.float64))
    expected = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), dim=-1)
    torch.testing.assert_close(w, expected)


def test_gradients_flow_to_q_k_v():
    q, k, v = (t.requires_grad_() for t in rand_qkv((2, 5, 4), (2, 5, 4), 4))
    out, _ = scaled_dot_product_attention(q, k, v, mask=causal_mask(5))
    out.square().sum().backward()
    for t in (q, k, v):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    # gradients equal PyTorch's too
    q2, k2, v2 = (t.detach().clone().requires_grad_() for t in (q, k, v))
    F.scaled_dot_product_attention(q2, k2, v2, is_causal=True).square().sum().backward()
    for a, b in ((q, q2), (k, k2), (v, v2)):
        torch.testing.assert_close(a.grad, b.grad)


def test_fully_masked_row_gives_zero_weights_and_output_without_nan():
    q, k, v = (t.requires_grad_() for t in rand_qkv((1, 3, 4), (1, 3, 4), 2))
    mask = torch.tensor([[True, False, True], [False, False, False], [True, True, True]])
    out, w = scaled_dot_product_attention(q, k, v, mask=mask)
    assert torch.isfinite(out).all() and torch.isfinite(w).all()
    assert (w[0, 1] == 0).all() and (out[0, 1] == 0).all()
    torch.testing.assert_close(w[0, [0, 2]].sum(-1), torch.ones(2))
    out.sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()


def test_dropout_is_applied_only_when_asked():
    q, k, v = rand_qkv((2, 8, 4), (2, 8, 4), 4)
    out0, _ = scaled_dot_product_attention(q, k, v, dropout_p=0.0)
    torch.manual_seed(0)
    out1, w1 = scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    assert not torch.allclose(out0, out1)
    torch.testing.assert_close(w1.sum(-1), torch.ones(2, 8))  # weights returned before dropout


def test_sdpa_errors_name_the_problem():
    q, k, v = rand_qkv((2, 4, 8), (2, 5, 8), 3)
    with pytest.raises(ValueError, match="same last dimension"):
        scaled_dot_product_attention(q, k[..., :7], v)
    with pytest.raises(ValueError, match="same number of positions"):
        scaled_dot_product_attention(q, k, v[:, :4])
    with pytest.raises(ValueError, match="does not broadcast"):
        scaled_dot_product_attention(q, k, v, mask=torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="boolean"):
        scaled_dot_product_attention(q, k, v, mask=torch.ones(4, 5))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        scaled_dot_product_attention(q[0, 0], k, v)


def test_padding_mask_shape_and_errors():
    m = padding_mask(torch.tensor([[1, 1, 0]]))
    assert m.shape == (1, 1, 1, 3) and m.dtype == torch.bool
    with pytest.raises(ValueError, match="batch, seq_len"):
        padding_mask(torch.ones(3))


# --- MultiHeadAttention -------------------------------------------------------------------------

def torch_and_ours(d_model=16, heads=4, seed=0):
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(d_model, heads, batch_first=True)
    with torch.no_grad():  # PyTorch initialises biases to zero; randomise so the copy is really tested
        ref.in_proj_bias.normal_()
        ref.out_proj.bias.normal_()
    return ref.eval(), MultiHeadAttention.from_torch(ref).eval()


@pytest.mark.parametrize("d_model, heads", [(8, 1), (16, 4), (24, 3), (32, 8)])
def test_mha_matches_torch_self_attention(d_model, heads):
    ref, ours = torch_and_ours(d_model, heads)
    x = torch.randn(3, 7, d_model)
    out, w = ours(x, need_weights=True)
    ref_out, ref_w = ref(x, x, x, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=1e-5)
    assert w.shape == (3, heads, 7, 7)


def test_mha_matches_torch_cross_attention_with_padding():
    ref, ours = torch_and_ours(16, 4)
    q, kv = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    am = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    out = ours(q, kv, kv, mask=padding_mask(am))
    # PyTorch's key_padding_mask uses the opposite convention: True = ignore
    ref_out, _ = ref(q, kv, kv, key_padding_mask=~am.bool())
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)


def test_mha_matches_torch_causal():
    ref, ours = torch_and_ours(16, 2)
    x = torch.randn(2, 6, 16)
    out = ours(x, mask=causal_mask(6))
    ref_out, _ = ref(x, x, x, attn_mask=~causal_mask(6))  # True = not allowed in nn.MHA
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)


def test_mha_three_dim_mask_applies_to_every_head():
    _, ours = torch_and_ours(16, 4)
    x = torch.randn(2, 5, 16)
    m3 = causal_mask(5).expand(2, 5, 5)
    torch.testing.assert_close(ours(x, mask=m3), ours(x, mask=causal_mask(5)))


@pytest.mark.parametrize("causal", [False, True])
def test_mha_fused_path_equals_from_scratch(causal):
    """The default (fused) path and the one need_weights takes compute the same, in training too."""
    torch.manual_seed(0)
    ours = MultiHeadAttention(TransformerConfig(hidden_size=32, num_heads=4, dropout=0.0, causal=causal))
    x = torch.randn(2, 9, 32)
    for mask in (None, padding_mask(torch.tensor([[1] * 9, [1] * 4 + [0] * 5]))):
        fused = ours(x, mask=mask)
        scratch, _ = ours(x, mask=mask, need_weights=True)
        torch.testing.assert_close(fused, scratch, atol=1e-5, rtol=1e-5)


def test_mha_causal_config_matches_explicit_causal_mask_and_torch():
    ref, plain = torch_and_ours(16, 2)
    causal = MultiHeadAttention(TransformerConfig(hidden_size=16, num_heads=2, causal=True)).eval()
    causal.load_state_dict(plain.state_dict())
    x = torch.randn(2, 6, 16)
    ref_out, _ = ref(x, x, x, attn_mask=~causal_mask(6))
    torch.testing.assert_close(causal(x), ref_out, atol=1e-5, rtol=1e-5)
    _, w = causal(x, need_weights=True)
    assert (w.triu(diagonal=1) == 0).all()


def test_mha_cache_gives_the_outputs_of_the_whole_sequence():
    """Feeding positions one at a time with a cache equals attending over the whole sequence."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(TransformerConfig(hidden_size=16, num_heads=4, dropout=0.0, causal=True)).eval()
    x = torch.randn(2, 7, 16)
    whole = mha(x)
    cache: dict = {}
    first = mha(x[:, :3], cache=cache)  # a prompt of 3 positions, then one position at a time
    steps = [mha(x[:, t : t + 1], cache=cache) for t in range(3, 7)]
    torch.testing.assert_close(torch.cat([first, *steps], dim=1), whole, atol=1e-5, rtol=1e-5)
    assert cache["k"].shape == (2, 4, 7, 4)


def test_mha_gradients_flow_to_every_parameter():
    _, ours = torch_and_ours(16, 4)
    ours.train()
    x = torch.randn(2, 5, 16, requires_grad=True)
    ours(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in ours.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_mha_errors_name_the_problem():
    with pytest.raises(ValueError, match="not divisible"):
        MultiHeadAttention(TransformerConfig(hidden_size=10, num_heads=3))
    with pytest.raises(ValueError, match="biases"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2, bias=False, batch_first=True))
    mha = MultiHeadAttention(TransformerConfig(hidden_size=8, num_heads=2))
    with pytest.raises(ValueError, match=r"hidden_size=8"):
        mha(torch.randn(2, 3, 6))
    with pytest.raises(ValueError, match="does not broadcast"):
        mha(torch.randn(2, 3, 8), mask=torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="boolean"):
        mha(torch.randn(2, 3, 8), mask=torch.ones(3, 3))
    with pytest.raises(ValueError, match="mismatch"):
        mha(torch.randn(2, 3, 8), torch.randn(2, 4, 8), torch.randn(2, 5, 8))

