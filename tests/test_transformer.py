"""mlstep.transformer against torch.nn.TransformerEncoderLayer with copied weights, plus errors."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlstep import padding_mask
from mlstep.transformer import (
    EncoderOutput,
    FeedForward,
    TransformerEncoder,
    TransformerEncoderLayer,
)

D, H, FF = 16, 4, 40


def copy_from_torch(ours: TransformerEncoderLayer, ref: nn.TransformerEncoderLayer) -> None:
    """Copy nn.TransformerEncoderLayer's weights into ours (packed in_proj → q/k/v)."""
    with torch.no_grad():
        mha = ref.self_attn
        projs = (ours.self_attn.q_proj, ours.self_attn.k_proj, ours.self_attn.v_proj)
        for proj, w, b in zip(projs, mha.in_proj_weight.chunk(3), mha.in_proj_bias.chunk(3), strict=True):
            proj.weight.copy_(w)
            proj.bias.copy_(b)
        ours.self_attn.out_proj.load_state_dict(mha.out_proj.state_dict())
        ours.ffn.fc1.load_state_dict(ref.linear1.state_dict())
        ours.ffn.fc2.load_state_dict(ref.linear2.state_dict())
        ours.norm1.load_state_dict(ref.norm1.state_dict())
        ours.norm2.load_state_dict(ref.norm2.state_dict())


def make_ref(pre_norm: bool, seed: int = 0) -> nn.TransformerEncoderLayer:
    torch.manual_seed(seed)
    ref = nn.TransformerEncoderLayer(
        D, H, FF, dropout=0.0, activation="gelu", batch_first=True, norm_first=pre_norm,
        layer_norm_eps=1e-12,
    )
    with torch.no_grad():  # non-trivial LayerNorm parameters, so a swapped norm would show
        for norm in (ref.norm1, ref.norm2):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    return ref


def batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 7, D, generator=g)
    am = torch.tensor([[1] * 7, [1] * 5 + [0] * 2, [1] * 2 + [0] * 5])  # 1 = real token
    return x, am


def test_feedforward_is_linear_exact_gelu_linear():
    torch.manual_seed(0)
    ffn = FeedForward(D, FF)
    x = torch.randn(2, 5, D)
    expected = F.linear(F.gelu(F.linear(x, ffn.fc1.weight, ffn.fc1.bias)), ffn.fc2.weight, ffn.fc2.bias)
    torch.testing.assert_close(ffn(x), expected)
    # exact erf GELU, not the tanh approximation (they differ by ~1e-3 around |x| ≈ 2)
    z = torch.linspace(-3, 3, 61)
    torch.testing.assert_close(ffn.act(z), 0.5 * z * (1 + torch.erf(z / 2**0.5)))


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("pre_norm", [False, True])
def test_layer_matches_torch(pre_norm, use_mask, fused):
    ref = make_ref(pre_norm).train()  # train mode with dropout 0: no fast path, same maths
    ours = TransformerEncoderLayer(D, H, FF, pre_norm=pre_norm, fused_attention=fused)
    copy_from_torch(ours, ref)
    x, am = batch()
    if use_mask:
        out = ours(x, mask=padding_mask(am))
        expected = ref(x, src_key_padding_mask=am == 0)  # nn: True = padding
    else:
        out, expected = ours(x), ref(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_fused_and_from_scratch_paths_agree_forward_and_backward():
    torch.manual_seed(0)
    a = TransformerEncoderLayer(D, H, FF, fused_attention=True)
    b = TransformerEncoderLayer(D, H, FF, fused_attention=False)
    b.load_state_dict(a.state_dict())
    x, am = batch()
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    oa, ob = a(xa, padding_mask(am)), b(xb, padding_mask(am))
    torch.testing.assert_close(oa, ob, atol=1e-5, rtol=1e-5)
    (oa**2).sum().backward()
    (ob**2).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-5, rtol=1e-4)


def test_padding_keys_do_not_change_real_positions():
    torch.manual_seed(0)
    layer = TransformerEncoderLayer(D, H, FF).eval()
    x, am = batch()
    out = layer(x, padding_mask(am))
    x2 = x.clone()
    x2[am == 0] = 100.0  # garbage at padded positions
    out2 = layer(x2, padding_mask(am))
    torch.testing.assert_close(out[am == 1], out2[am == 1])


@pytest.mark.parametrize("pre_norm", [False, True])
def test_encoder_stack_matches_torch_layers(pre_norm):
    refs = [make_ref(pre_norm, seed=s).train() for s in range(3)]
    enc = TransformerEncoder(3, D, H, FF, pre_norm=pre_norm)
    for ours, ref in zip(enc.layers, refs, strict=True):
        copy_from_torch(ours, ref)
    x, am = batch()
    h = x
    for ref in refs:
        h = ref(h, src_key_padding_mask=am == 0)
    if pre_norm:
        assert isinstance(enc.final_norm, nn.LayerNorm)
        h = F.layer_norm(h, (D,), enc.final_norm.weight, enc.final_norm.bias, eps=1e-12)
    else:
        assert enc.final_norm is None
    out = enc(x, padding_mask(am), output_hidden_states=True)
    assert isinstance(out, EncoderOutput)
    torch.testing.assert_close(out.last_hidden_state, h, atol=1e-5, rtol=1e-5)
    assert len(out.hidden_states) == 4 and out.hidden_states[0] is x
    assert out.hidden_states[-1] is out.last_hidden_state
    torch.testing.assert_close(out.hidden_states[1], refs[0](x, src_key_padding_mask=am == 0))
    # fixed-shape return: hidden_states is None, not missing, when not asked for
    plain = enc(x, padding_mask(am))
    assert plain.hidden_states is None and len(plain) == 2
    torch.testing.assert_close(plain.last_hidden_state, out.last_hidden_state)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    enc = TransformerEncoder(2, D, H, FF, pre_norm=True)
    x, am = batch()
    enc(x.requires_grad_(), padding_mask(am)).last_hidden_state.pow(2).sum().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


def test_dropout_only_in_training():
    torch.manual_seed(0)
    layer = TransformerEncoderLayer(D, H, FF, dropout=0.5)
    x, _ = batch()
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x))
    layer.train()
    assert not torch.allclose(layer(x), layer(x))


def test_errors_name_the_problem():
    layer = TransformerEncoderLayer(D, H, FF)
    enc = TransformerEncoder(1, D, H, FF)
    with pytest.raises(ValueError, match=r"\(batch, seq_len, d_model=16\).*\(7, 16\)"):
        layer(torch.randn(7, D))
    with pytest.raises(ValueError, match="d_model=16"):
        enc(torch.randn(2, 7, D + 1))
    with pytest.raises(ValueError, match="does not broadcast"):
        layer(torch.randn(2, 7, D), mask=torch.ones(2, 1, 1, 6, dtype=torch.bool))
    with pytest.raises(TypeError, match="boolean"):
        layer(torch.randn(2, 7, D), mask=torch.ones(2, 1, 1, 7))
    with pytest.raises(ValueError, match="not divisible"):
        TransformerEncoderLayer(15, 4, FF)
    with pytest.raises(ValueError, match="num_layers"):
        TransformerEncoder(0, D, H, FF)
    with pytest.raises(ValueError, match="positive"):
        FeedForward(D, 0)
