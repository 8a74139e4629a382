"""mlstep.transformer against torch.nn.TransformerEncoderLayer with copied weights, plus errors."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlstep.attention import causal_mask, padding_mask
from mlstep.config import TransformerConfig
from mlstep.transformer import FeedForward, Transformer, TransformerBlock

D, H, FF = 16, 4, 40


def config(**changes) -> TransformerConfig:
    fields = dict(hidden_size=D, num_heads=H, intermediate_size=FF, dropout=0.0, num_layers=3)
    return TransformerConfig(**{**fields, **changes})


def copy_from_torch(ours: TransformerBlock, ref: nn.TransformerEncoderLayer) -> None:
    """Copy nn.TransformerEncoderLayer's weights into ours (packed in_proj → q/k/v)."""
    with torch.no_grad():
        mha = ref.self_attn
        projs = (ours.attn.q_proj, ours.attn.k_proj, ours.attn.v_proj)
        for proj, w, b in zip(projs, mha.in_proj_weight.chunk(3), mha.in_proj_bias.chunk(3), strict=True):
            proj.weight.copy_(w)
            proj.bias.copy_(b)
        ours.attn.out_proj.load_state_dict(mha.out_proj.state_dict())
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


@pytest.mark.parametrize("gelu", ["none", "tanh"])
def test_feedforward_is_linear_gelu_linear(gelu):
    torch.manual_seed(0)
    ffn = FeedForward(config(gelu=gelu))
    x = torch.randn(2, 5, D)
    hidden = F.gelu(F.linear(x, ffn.fc1.weight, ffn.fc1.bias), approximate=gelu)
    torch.testing.assert_close(ffn(x), F.linear(hidden, ffn.fc2.weight, ffn.fc2.bias))
    if gelu == "none":  # the exact erf GELU of BERT checkpoints (tanh differs by ~1e-3 near |x| = 2)
        z = torch.linspace(-3, 3, 61)
        torch.testing.assert_close(ffn.act(z), 0.5 * z * (1 + torch.erf(z / 2**0.5)))


@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("pre_norm", [False, True])
def test_block_matches_torch(pre_norm, use_mask):
    ref = make_ref(pre_norm).train()  # train mode with dropout 0: no fast path, same maths
    ours = TransformerBlock(config(pre_norm=pre_norm)).train()
    copy_from_torch(ours, ref)
    x, am = batch()
    if use_mask:
        out = ours(x, mask=padding_mask(am))
        expected = ref(x, src_key_padding_mask=am == 0)  # nn: True = padding
    else:
        out, expected = ours(x), ref(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_causal_block_matches_torch_with_a_causal_mask():
    """GPT's block is BERT's with causal=True and pre_norm=True: no code of its own."""
    ref = make_ref(pre_norm=True).train()
    ours = TransformerBlock(config(pre_norm=True, causal=True)).train()
    copy_from_torch(ours, ref)
    x, _ = batch()
    expected = ref(x, src_mask=~causal_mask(7), is_causal=True)  # nn: True = not allowed
    torch.testing.assert_close(ours(x), expected, atol=1e-5, rtol=1e-5)


def test_padding_keys_do_not_change_real_positions():
    torch.manual_seed(0)
    block = TransformerBlock(config()).eval()
    x, am = batch()
    out = block(x, padding_mask(am))
    x2 = x.clone()
    x2[am == 0] = 100.0  # garbage at padded positions
    out2 = block(x2, padding_mask(am))
    torch.testing.assert_close(out[am == 1], out2[am == 1])


@pytest.mark.parametrize("pre_norm", [False, True])
def test_stack_matches_torch_layers(pre_norm):
    refs = [make_ref(pre_norm, seed=s).train() for s in range(3)]
    stack = Transformer(config(pre_norm=pre_norm)).train()
    for ours, ref in zip(stack.layers, refs, strict=True):
        copy_from_torch(ours, ref)
    x, am = batch()
    h = x
    for ref in refs:
        h = ref(h, src_key_padding_mask=am == 0)
    if pre_norm:
        assert isinstance(stack.final_norm, nn.LayerNorm)
        h = F.layer_norm(h, (D,), stack.final_norm.weight, stack.final_norm.bias, eps=1e-12)
    else:
        assert isinstance(stack.final_norm, nn.Identity)
    states = stack(x, padding_mask(am))
    assert len(states) == 4 and states[0] is x
    torch.testing.assert_close(states[-1], h, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(states[1], refs[0](x, src_key_padding_mask=am == 0), atol=1e-5, rtol=1e-5)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    stack = Transformer(config(num_layers=2, pre_norm=True))
    x, am = batch()
    stack(x.requires_grad_(), padding_mask(am))[-1].pow(2).sum().backward()
    for name, p in stack.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


def test_dropout_only_in_training():
    torch.manual_seed(0)
    block = TransformerBlock(config(dropout=0.5))
    x, _ = batch()
    block.eval()
    torch.testing.assert_close(block(x), block(x))
    block.train()
    assert not torch.allclose(block(x), block(x))


def test_errors_name_the_problem():
    stack = Transformer(config(num_layers=1))
    with pytest.raises(ValueError, match=r"hidden_size=16\), got \(7, 16\)"):
        stack(torch.randn(7, D))
    with pytest.raises(ValueError, match="hidden_size=16"):
        stack(torch.randn(2, 7, D + 1))
    with pytest.raises(ValueError, match="hidden_size=16"):  # post-LN: attention checks first
        TransformerBlock(config())(torch.randn(2, 7, D + 1))
    with pytest.raises(ValueError, match="does not broadcast"):
        stack(torch.randn(2, 7, D), mask=torch.ones(2, 1, 1, 6, dtype=torch.bool))
    with pytest.raises(TypeError, match="boolean"):
        stack(torch.randn(2, 7, D), mask=torch.ones(2, 1, 1, 7))
    with pytest.raises(ValueError, match="not divisible"):
        config(hidden_size=15)
    with pytest.raises(ValueError, match="num_layers must be a positive integer"):
        config(num_layers=0)
    with pytest.raises(ValueError, match="intermediate_size must be a positive integer"):
        config(intermediate_size=0)
    with pytest.raises(ValueError, match="dropout"):
        config(dropout=1.0)
    with pytest.raises(ValueError, match="gelu"):
        config(gelu="relu")
    with pytest.raises(TypeError):
        TransformerConfig(16)  # keyword-only: a positional width is refused, not misread
