"""GPT: one training step of ``mlstep.GPT`` vs Hugging Face ``GPT2LMHeadModel``, and generation
with the KV cache vs without it vs Hugging Face ``generate()``.

**Training step** = ``zero_grad`` → forward with the next-token loss → ``backward`` →
``AdamW.step``. Both models get the identical configuration (pre-LN, tanh GELU, LayerNorm eps
1e-5, dropout 0.1 on embeddings, attention weights and residual branches, LM head tied to the
token embeddings), the identical starting weights (mlstep's model is built from the HF model with
:func:`mlstep.gpt_from_hf`) and the identical batch (random ids, labels = the ids). Hugging Face
runs with its default attention (``sdpa``); both use ``F.scaled_dot_product_attention``. Before
timing, the step-0 losses with dropout 0 are printed: they agree to float32 rounding.

**Generation** = greedy decoding of ``--new-tokens`` (default 256) tokens after a 16-token prompt,
no end token, eval mode: mlstep's :func:`mlstep.generate` with its KV cache, the same without
it (``use_cache=False``: every step reruns the whole sequence), and Hugging Face's
``generate(do_sample=False)`` with its default cache. The script reports whether the three
produced the same tokens.

Usage (from the repository root)::

    python benchmarks/gpt.py                   # CPU, 2 threads: training sizes, then generation (~3 min)
    python benchmarks/gpt.py --quick           # tiny smoke run (seconds)
    python benchmarks/gpt.py --device cuda     # GPT-2 124M shapes, bf16: tokens/s and MFU
    python benchmarks/gpt.py --json out.json   # also write every sample

Ratios are taken between medians of alternately measured repetitions (``benchmarks/_timing.py``).
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for _timing when run as a script

from _timing import (  # noqa: E402
    Size,
    common_arguments,
    interleaved,
    markdown_table,
    start,
    training_step,
    write_json,
)

import mlstep  # noqa: E402
from mlstep.generation import generate  # noqa: E402
from mlstep.gpt import gpt_from_hf  # noqa: E402

PROMPT_LEN = 16



# Training: the course's GPT, and the target size where mlstep should be >= 1.0x HF.
TRAIN_SIZES = (
    Size("course", layers=2, hidden=64, heads=4, seq_len=128, batch=32, vocab=2000, repeats=15),
    Size("target", layers=4, hidden=256, heads=4, seq_len=128, batch=16, vocab=8192, repeats=11),
)
# Generation: T is the position table (prompt + new tokens must fit).
GEN_SIZES = (
    Size("gen-b1", layers=4, hidden=256, heads=4, seq_len=512, batch=1, vocab=8192, repeats=5),
    Size("gen-b8", layers=4, hidden=256, heads=4, seq_len=512, batch=8, vocab=8192, repeats=3),
)
QUICK_TRAIN = (Size("quick", layers=1, hidden=32, heads=2, seq_len=16, batch=4, vocab=300, repeats=2),)
QUICK_GEN = (Size("quick-gen", layers=1, hidden=32, heads=2, seq_len=64, batch=2, vocab=300, repeats=2),)
# GPT-2 small (124 M parameters) for the GPU path.
GPU_TRAIN = (Size("gpt2-124M", layers=12, hidden=768, heads=12, seq_len=1024, batch=8, vocab=50257, repeats=10),)
GPU_GEN = (Size("gpt2-124M-gen", layers=12, hidden=768, heads=12, seq_len=1024, batch=1, vocab=50257, repeats=3),
           Size("gpt2-124M-gen", layers=12, hidden=768, heads=12, seq_len=1024, batch=16, vocab=50257, repeats=3))


def build_models(size: Size, device: torch.device, dropout: float = 0.1, seed: int = 0) -> dict[str, nn.Module]:
    """``{"mlstep": ..., "hf": ...}`` holding the same weights, in train mode, on ``device``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=size.vocab, n_positions=size.seq_len, n_embd=size.hidden,
                        n_layer=size.layers, n_head=size.heads, resid_pdrop=dropout, embd_pdrop=dropout,
                        attn_pdrop=dropout, bos_token_id=0, eos_token_id=0, attn_implementation="sdpa")
    torch.manual_seed(seed)
    hf = GPT2LMHeadModel(config).to(device).train()
    return {"mlstep": gpt_from_hf(hf).train(), "hf": hf}


def make_batch(size: Size, device: torch.device, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, size.vocab, (size.batch, size.seq_len), generator=g).to(device)  # (B, T)


def loss_fn(name: str, model: nn.Module, ids: Tensor) -> Tensor:
    """The next-token loss (labels = the ids, shifted inside), in each library's convention."""
    return model(ids, ids).loss if name == "mlstep" else model(input_ids=ids, labels=ids).loss


@torch.no_grad()
def same_start_losses(size: Size, device: torch.device) -> dict[str, float]:
    """Step-0 losses with copied weights and dropout 0: equal to float32 rounding."""
    models = build_models(size, device, dropout=0.0)
    ids = make_batch(size, device)
    return {name: float(loss_fn(name, m, ids)) for name, m in models.items()}


def train_flops(size: Size) -> float:
    """Matmul FLOPs of one training step (3 × forward): every layer's projections and MLP
    (``2 · (4d² + 8d²)`` per token), attention scores and their use (``4 · T · d`` per token and
    layer, the causal half not subtracted), and the LM head at the ``T − 1`` positions per
    sequence that have a next token (``2 · d · V``). Embedding lookups, norms, softmax and the
    optimizer are not counted (the usual MFU convention)."""
    d, T, B, V = size.hidden, size.seq_len, size.batch, size.vocab
    per_token_layer = 2 * (4 * d * d + 8 * d * d) + 4 * T * d
    forward = B * T * size.layers * per_token_layer + B * (T - 1) * 2 * d * V
    return 3.0 * forward


def time_training(size: Size, device: torch.device, repeats: int, warmup: int, peak_tflops: float) -> dict:
    models = build_models(size, device)
    ids = make_batch(size, device)
    steps = {name: training_step(m, functools.partial(loss_fn, name, m, ids), device) for name, m in models.items()}
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    timing = interleaved(steps, repeats=repeats, warmup=warmup, sync=sync)
    ms = {name: timing.median_ms(name) for name in steps}
    tokens = size.batch * size.seq_len
    result = {"size": asdict(size) | {"repeats": repeats}, "ms_per_step": ms,
              "cpu_ms_per_step": {name: timing.median_ms(name, clock="cpu") for name in steps},
              "samples_ms": {name: [1e3 * s for s in timing[name]] for name in steps},
              "speedup": ms["hf"] / ms["mlstep"], "tokens_per_s": {n: tokens / (ms[n] / 1e3) for n in steps}}
    if device.type == "cuda":
        result["mfu"] = {n: train_flops(size) / (ms[n] / 1e3) / (peak_tflops * 1e12) for n in steps}
    return result


def time_generation(size: Size, new_tokens: int, device: torch.device, repeats: int, warmup: int) -> dict:
    models = {name: m.eval() for name, m in build_models(size, device, dropout=0.0).items()}
    prompt = make_batch(size, device)[:, :PROMPT_LEN]  # (B, PROMPT_LEN)
    ours, hf = models["mlstep"], models["hf"]

    def hf_generate() -> Tensor:
        with torch.no_grad():
            return hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                               min_new_tokens=new_tokens, do_sample=False, pad_token_id=0, eos_token_id=None)

    runs = {"mlstep cache": lambda: generate(ours, prompt, new_tokens, temperature=0),
            "mlstep no cache": lambda: generate(ours, prompt, new_tokens, temperature=0, use_cache=False),
            "hf generate": hf_generate}
    tokens = {name: fn() for name, fn in runs.items()}
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    timing = interleaved(runs, repeats=repeats, warmup=warmup, sync=sync)
    ms = {name: timing.median_ms(name) for name in runs}
    per_s = {name: size.batch * new_tokens / (ms[name] / 1e3) for name in runs}
    return {"size": asdict(size) | {"repeats": repeats, "new_tokens": new_tokens}, "ms": ms,
            "samples_ms": {name: [1e3 * s for s in timing[name]] for name in runs}, "tokens_per_s": per_s,
            "cache_speedup": ms["mlstep no cache"] / ms["mlstep cache"],
            "vs_hf": ms["hf generate"] / ms["mlstep cache"],
            "same_tokens": {"no cache": bool(torch.equal(tokens["mlstep cache"], tokens["mlstep no cache"])),
                            "hf": bool(torch.equal(tokens["mlstep cache"], tokens["hf generate"]))}}


def format_tables(train: Sequence[dict], gen: Sequence[dict], device: torch.device) -> str:
    """Two markdown tables: training ms/step and speed-up; generation tokens/s and ratios."""
    headers = ["config", "mlstep ms/step", "HF ms/step", "speed-up"]
    if device.type == "cuda":
        headers += ["mlstep tokens/s", "mlstep MFU", "HF MFU"]
    rows = []
    for r in train:
        row: list[Any] = [Size(**{k: r["size"][k] for k in Size.__dataclass_fields__}).label(),
                          r["ms_per_step"]["mlstep"], r["ms_per_step"]["hf"], f"{r['speedup']:.2f}×"]
        if device.type == "cuda":
            row += [f"{r['tokens_per_s']['mlstep']:,.0f}", f"{100 * r['mfu']['mlstep']:.1f} %",
                    f"{100 * r['mfu']['hf']:.1f} %"]
        rows.append(row)
    tables = [markdown_table(headers, rows)]
    headers = ["config (new tokens)", "mlstep cache tok/s", "mlstep no cache tok/s", "HF generate tok/s",
               "cache speed-up", "mlstep cache vs HF", "same tokens (no cache / HF)"]
    rows = [[f"{Size(**{k: r['size'][k] for k in Size.__dataclass_fields__}).label()} ({r['size']['new_tokens']})",
             f"{r['tokens_per_s']['mlstep cache']:,.0f}", f"{r['tokens_per_s']['mlstep no cache']:,.0f}",
             f"{r['tokens_per_s']['hf generate']:,.0f}", f"{r['cache_speedup']:.2f}×", f"{r['vs_hf']:.2f}×",
             f"{r['same_tokens']['no cache']} / {r['same_tokens']['hf']}"] for r in gen]
    tables.append(markdown_table(headers, rows))
    return "\n\n".join(tables)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = common_arguments(__doc__.split("\n\n")[0])
    p.add_argument("--new-tokens", type=int, default=256, help="tokens to generate (default 256)")
    p.add_argument("--skip", choices=("train", "generation"), default=None, help="leave one part out")
    p.add_argument("--peak-tflops", type=float, default=989.0,
                   help="accelerator peak for MFU (default 989: H100 SXM bf16 dense)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; prints and returns ``{"environment", "train", "generation", "table", ...}``."""
    args = parse_args(argv)
    device, env = start(args)
    if device is None:
        return {**env, "train": [], "generation": [], "table": ""}
    if args.quick:
        train_sizes, gen_sizes = QUICK_TRAIN, QUICK_GEN
    elif device.type == "cuda":
        train_sizes, gen_sizes = GPU_TRAIN, GPU_GEN
    else:
        train_sizes, gen_sizes = TRAIN_SIZES, GEN_SIZES
    new_tokens = 24 if args.quick else args.new_tokens
    losses = same_start_losses(train_sizes[0], device)
    print(f"step-0 loss with copied weights, dropout 0: mlstep {losses['mlstep']:.6f}, HF {losses['hf']:.6f}")
    train = [] if args.skip == "train" else [
        time_training(s, device, args.repeats or s.repeats, args.warmup, args.peak_tflops) for s in train_sizes]
    gen = [] if args.skip == "generation" else [
        time_generation(s, new_tokens, device, args.repeats or s.repeats, args.warmup) for s in gen_sizes]
    table = format_tables(train, gen, device)
    print("\n" + table)
    out = {"environment": env, "step0_loss": losses, "train": train, "generation": gen, "table": table,
           "mlstep_version": mlstep.__version__}
    write_json(out, args.json)
    return out


if __name__ == "__main__":
    main()
