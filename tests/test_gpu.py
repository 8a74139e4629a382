"""Every CUDA test of the project in one place (``pytest -m gpu``; skipped without a GPU).

The GPU path is the CPU path's code on another device, so these tests compare the two: the same
model gives the same numbers on CPU and CUDA in float32 (to float rounding) and close numbers
under bf16 autocast, training runs on CUDA, and a checkpoint saved on CUDA loads on the CPU.
``benchmarks/gpu_check.py`` runs them first.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

import mlstep
from mlstep.attention import MultiHeadAttention
from mlstep.bert import BertConfig, BertForPreTraining
from mlstep.config import TransformerConfig
from mlstep.masking import mask_tokens
from mlstep.tools.checkpoint import load_checkpoint, save_checkpoint
from mlstep.train import TrainConfig, train

pytestmark = pytest.mark.gpu

FP32 = dict(atol=1e-4, rtol=1e-4)  # float32 on CPU vs CUDA: different kernels, same maths
BF16 = dict(atol=5e-2, rtol=5e-2)  # bf16 keeps ~3 significant digits


def tiny_bert(**changes) -> BertForPreTraining:
    torch.manual_seed(0)
    config = BertConfig(100, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                        max_position=32, dropout=0.0, **changes)
    return BertForPreTraining(config).eval()


def batch(device="cpu", B=4, T=16, V=100):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, V, (B, T), generator=g)
    am = torch.ones(B, T, dtype=torch.long)
    am[1, 10:] = 0
    labels = torch.where(torch.rand(B, T, generator=g) < 0.3, ids, -100)
    labels[0, 1] = ids[0, 1]
    out = dict(input_ids=ids, token_type_ids=torch.zeros_like(ids), attention_mask=am, mlm_labels=labels,
               nsp_labels=torch.tensor([0, 1, 0, 1]))
    return {k: v.to(device) for k, v in out.items()}


def test_attention_on_cuda_matches_cpu_both_paths():
    torch.manual_seed(0)
    mha = MultiHeadAttention(TransformerConfig(hidden_size=32, num_heads=4, causal=True)).eval()
    x = torch.randn(2, 9, 32)
    cpu = mha(x)
    gpu_mha = mha.cuda()
    torch.testing.assert_close(gpu_mha(x.cuda()).cpu(), cpu, **FP32)  # fused kernel
    torch.testing.assert_close(gpu_mha(x.cuda(), need_weights=True)[0].cpu(), cpu, **FP32)  # from scratch
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = gpu_mha(x.cuda())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float().cpu(), cpu, **BF16)


def test_bert_on_cuda_matches_cpu_in_fp32_and_bf16():
    model, b = tiny_bert(), batch()
    with torch.no_grad():
        cpu = model(**b)
        gpu_model, gb = model.cuda(), batch("cuda")
        gpu = gpu_model(**gb)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            half = gpu_model(**gb)
    torch.testing.assert_close(gpu.loss.cpu(), cpu.loss, **FP32)
    torch.testing.assert_close(gpu.mlm_logits.cpu(), cpu.mlm_logits, **FP32)
    torch.testing.assert_close(half.loss.float().cpu(), cpu.loss, **BF16)


def test_masks_are_the_same_on_cuda():
    ids = batch()["input_ids"]
    kw = dict(vocab_size=100, mask_id=4, special_ids=range(5))
    cpu = mask_tokens(ids, **kw, generator=torch.Generator().manual_seed(3))
    gpu = mask_tokens(ids.cuda(), **kw, generator=torch.Generator().manual_seed(3))
    assert gpu[0].is_cuda and torch.equal(cpu[0], gpu[0].cpu()) and torch.equal(cpu[1], gpu[1].cpu())
    with pytest.raises(ValueError, match="CPU"):
        mask_tokens(ids, **kw, generator=torch.Generator(device="cuda"))


@pytest.mark.parametrize("precision", ["auto", "bf16", "fp32"])
def test_training_on_cuda(precision):
    model, b = tiny_bert(), batch()
    seen = {}

    def step(m, batch):
        out = m(**batch)
        seen["dtype"], seen["device"] = out.nsp_logits.dtype, out.nsp_logits.device.type
        return out.loss

    h = train(model, [b], step, TrainConfig(max_steps=30, lr=1e-2, device="cuda", precision=precision,
                                            progress=False, log_every=5))
    assert seen == {"dtype": torch.float32 if precision == "fp32" else torch.bfloat16, "device": "cuda"}
    assert all(p.is_cuda and p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    assert h.train[-1]["loss"] < 0.7 * h.train[0]["loss"]


def test_checkpoint_saved_on_cuda_loads_on_cpu(tmp_path):
    model = tiny_bert().cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    model(**batch("cuda")).loss.backward()
    opt.step()
    save_checkpoint(tmp_path / "c.pt", model, opt, step=1)
    cpu_model = tiny_bert(initializer_range=0.5)  # other weights: they must be overwritten
    load_checkpoint(tmp_path / "c.pt", cpu_model)
    for (name, p), q in zip(cpu_model.named_parameters(), model.parameters(), strict=True):
        assert p.device.type == "cpu" and torch.equal(p, q.cpu()), name
    with torch.no_grad():
        torch.testing.assert_close(cpu_model(**batch()).loss, model(**batch("cuda")).loss.cpu(), **FP32)


def test_gpt_on_cuda_matches_cpu_and_generates_with_its_cache():
    if not hasattr(mlstep, "GPT"):
        pytest.skip("mlstep has no GPT model yet")
    torch.manual_seed(0)
    config = mlstep.GPTConfig(100, max_position=64, hidden_size=32, num_layers=2, num_heads=4)
    model = mlstep.GPT(dataclasses.replace(config, dropout=0.0)).eval()
    ids = torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cpu_loss, cpu_logits = model(ids, labels=ids)[:2]
        gpu = model.cuda()
        gpu_loss, gpu_logits = gpu(ids.cuda(), labels=ids.cuda())[:2]
    torch.testing.assert_close(gpu_logits.cpu(), cpu_logits, **FP32)
    torch.testing.assert_close(gpu_loss.cpu(), cpu_loss, **FP32)
    cached = mlstep.generate(gpu, ids[:, :4].cuda(), 8, temperature=0.0, use_cache=True)
    plain = mlstep.generate(gpu, ids[:, :4].cuda(), 8, temperature=0.0, use_cache=False)
    assert torch.equal(cached, plain)


def test_distillation_loss_stays_float32_under_bf16_autocast():
    from mlstep.distill import distillation_loss

    s, t = torch.randn(8, 5, device="cuda"), torch.randn(8, 5, device="cuda")
    y = torch.randint(0, 5, (8,), device="cuda")
    ref = distillation_loss(s, t, y)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = distillation_loss(s.bfloat16(), t.bfloat16(), y)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, ref, **BF16)
    assert F.cross_entropy(s, y).is_cuda
