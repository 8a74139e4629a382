"""One BERT pretraining step (MLM + NSP): ``mlstep.BertForPreTraining`` vs Hugging Face.

A step is what a training loop does per batch: ``zero_grad``, forward with both losses,
``backward``, ``AdamW.step``. Both models get the identical configuration (exact GELU, dropout 0.1
on hidden states and attention weights, LayerNorm eps 1e-12, tied MLM decoder), the identical
starting weights (mlstep's model is built with :func:`mlstep.bert_from_hf` from the HF model) and
the identical batch (15 % of the tokens masked by :func:`mlstep.mask_tokens`, labels −100
elsewhere, NSP labels). Hugging Face runs with its default attention (``sdpa``) and, unless
``--no-eager``, also with ``eager`` attention.

Where the speed-up comes from: mlstep gathers the masked positions before the MLM head, so the
``H → V`` vocabulary projection (the largest matmul of a small model with a real vocabulary) and
its softmax run on ~15 % of the positions; Hugging Face projects every position and lets
``ignore_index`` discard 85 % of the result. Both use ``F.scaled_dot_product_attention``.

Usage (from the repository root)::

    python benchmarks/pretrain_step.py                 # CPU, 2 threads, three sizes (~2 min)
    python benchmarks/pretrain_step.py --quick         # tiny smoke run (seconds)
    python benchmarks/pretrain_step.py --device cuda   # BERT-base size, bf16: tokens/s and MFU
    python benchmarks/pretrain_step.py --json out.json # also write the results

The ratio is ``HF ms/step / mlstep ms/step`` (> 1: mlstep is faster), from medians of
alternately measured repetitions (see ``benchmarks/_timing.py``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for _timing when run as a script

from _timing import Size, busy_warning, common_arguments, environment, interleaved, markdown_table  # noqa: E402

import mlstep  # noqa: E402
from mlstep import bert_from_hf, get_device, mask_tokens  # noqa: E402
from mlstep.tools.runtime import autocast  # noqa: E402

# Special ids of the synthetic vocabulary: [PAD] [UNK] [CLS] [SEP] [MASK] = 0 1 2 3 4.
PAD, UNK, CLS, SEP, MASK = range(5)
SPECIAL_IDS = (PAD, UNK, CLS, SEP, MASK)



# The benchmark's target configuration is "target"; mlstep should be >= 1.5x faster there.
CPU_SIZES = (
    Size("small", layers=2, hidden=64, heads=4, seq_len=64, batch=64, vocab=2000, repeats=15),
    Size("target", layers=2, hidden=128, heads=4, seq_len=64, batch=64, vocab=4096, repeats=21),
    Size("medium", layers=4, hidden=256, heads=4, seq_len=128, batch=32, vocab=8192, repeats=5),
)
QUICK_SIZES = (Size("quick", layers=1, hidden=32, heads=2, seq_len=16, batch=4, vocab=300, repeats=2),)
# BERT-base shapes for the GPU path (tokens/s and model FLOPs utilisation).
GPU_SIZES = (
    Size("bert-base", layers=12, hidden=768, heads=12, seq_len=128, batch=32, vocab=30522, repeats=20),
    Size("bert-base", layers=12, hidden=768, heads=12, seq_len=128, batch=64, vocab=30522, repeats=20),
)


class Batch(NamedTuple):
    """One pretraining batch; every tensor ``(B, T)`` except ``nsp_labels (B,)``."""

    input_ids: Tensor  # masked inputs
    token_type_ids: Tensor  # 0 = sentence A, 1 = sentence B
    attention_mask: Tensor  # all 1: sequences are packed to full length, as in BERT pretraining
    mlm_labels: Tensor  # original id at the ~15 % chosen positions, -100 elsewhere
    nsp_labels: Tensor  # 0 = B follows A, 1 = random


def make_batch(size: Size, device: torch.device, seed: int = 0) -> Batch:
    """A synthetic ``[CLS] A [SEP] B [SEP]`` batch masked with :func:`mlstep.mask_tokens`."""
    g = torch.Generator().manual_seed(seed)
    B, T = size.batch, size.seq_len
    ids = torch.randint(len(SPECIAL_IDS), size.vocab, (B, T), generator=g)  # (B, T) ordinary tokens
    half = T // 2
    ids[:, 0], ids[:, half - 1], ids[:, -1] = CLS, SEP, SEP
    token_type = torch.zeros(B, T, dtype=torch.long)
    token_type[:, half:] = 1  # sentence B
    inputs, labels = mask_tokens(ids, vocab_size=size.vocab, mask_id=MASK, special_ids=SPECIAL_IDS,
                                 generator=g)
    nsp = torch.randint(0, 2, (B,), generator=g)
    batch = Batch(inputs, token_type, torch.ones(B, T, dtype=torch.long), labels, nsp)
    return Batch(*(t.to(device) for t in batch))


def hf_config(size: Size, dropout: float = 0.1, attn_implementation: str = "sdpa") -> Any:
    """The Hugging Face ``BertConfig`` with the numbers of ``size``."""
    from transformers import BertConfig as HFBertConfig

    return HFBertConfig(
        vocab_size=size.vocab, hidden_size=size.hidden, num_hidden_layers=size.layers,
        num_attention_heads=size.heads, intermediate_size=size.intermediate,
        max_position_embeddings=max(size.seq_len, 128), type_vocab_size=2, hidden_act="gelu",
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, layer_norm_eps=1e-12,
        attn_implementation=attn_implementation,
    )


def build_models(
    size: Size, device: torch.device, dropout: float = 0.1, seed: int = 0,
    eager: bool = True,
) -> dict[str, nn.Module]:
    """``name -> model``, all holding the same weights, in train mode, on ``device``.

    Names: ``mlstep``, ``hf-sdpa``, optionally ``hf-eager``.
    """
    from transformers import BertForPreTraining as HFBertForPreTraining

    torch.manual_seed(seed)
    hf = HFBertForPreTraining(hf_config(size, dropout)).to(device).train()
    models: dict[str, nn.Module] = {"mlstep": bert_from_hf(hf).train()}
    models["hf-sdpa"] = hf
    if eager:
        hf_eager = HFBertForPreTraining(hf_config(size, dropout, "eager")).to(device).train()
        hf_eager.load_state_dict(hf.state_dict())
        models["hf-eager"] = hf_eager
    return models


def loss_fn(name: str, model: nn.Module, batch: Batch) -> Tensor:
    """MLM + NSP loss of one model on ``batch`` (each library's own call convention)."""
    if name.startswith("mlstep"):
        return model(batch.input_ids, batch.token_type_ids, batch.attention_mask,
                     mlm_labels=batch.mlm_labels, nsp_labels=batch.nsp_labels).loss
    return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                 token_type_ids=batch.token_type_ids, labels=batch.mlm_labels,
                 next_sentence_label=batch.nsp_labels).loss


def make_step(name: str, model: nn.Module, batch: Batch, device: torch.device) -> Callable[[], None]:
    """One training step as a closure: zero_grad, forward (autocast), backward, AdamW step."""
    # Fused AdamW on CUDA (one kernel for all parameters); the default foreach path on CPU.
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda" or None)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(device):
            loss = loss_fn(name, model, batch)
        loss.backward()
        opt.step()

    return step


@torch.no_grad()
def same_start_losses(size: Size, device: torch.device | str = "cpu", seed: int = 0) -> tuple[float, float]:
    """Step-0 losses ``(mlstep, hf)`` with copied weights and dropout 0: equal to float32 rounding.

    This is what makes the timing an apples-to-apples comparison: the two models compute the
    same function of the same batch.
    """
    device = torch.device(device)
    models = build_models(size, device, dropout=0.0, seed=seed, eager=False)
    batch = make_batch(size, device, seed)
    return tuple(float(loss_fn(n, models[n], batch)) for n in ("mlstep", "hf-sdpa"))  # type: ignore[return-value]


def train_flops(size: Size, projected_positions: int) -> float:
    """Matmul FLOPs of one training step (forward + backward = 3 × forward).

    ``6 · N · tokens`` for the parameters each token passes through (attention and FFN weights of
    every layer), plus the attention scores and their use (``QKᵀ`` and ``AV``: ``4 · T · d`` per
    token and layer, forward), the pooler and NSP head on [CLS], and the MLM head (transform and
    ``H → V`` decoder) at ``projected_positions`` positions. Embedding lookups, LayerNorm,
    softmax and the optimizer are not counted (the usual MFU convention).
    """
    d, f, T, B, V = size.hidden, size.intermediate, size.seq_len, size.batch, size.vocab
    tokens = B * T
    per_token_layer = 2 * (4 * d * d + 2 * d * f) + 4 * T * d  # projections + FFN + attention
    forward = (tokens * size.layers * per_token_layer
               + B * 2 * (d * d + 2 * d)  # pooler + NSP
               + projected_positions * 2 * (d * d + d * V))  # MLM transform + decoder
    return 3.0 * forward


def run_size(size: Size, device: torch.device, repeats: int, warmup: int, eager: bool,
             peak_tflops: float) -> dict[str, Any]:
    """Time every model on one size; returns a JSON-ready dict."""
    models = build_models(size, device, eager=eager)
    batch = make_batch(size, device)
    steps = {name: make_step(name, m, batch, device) for name, m in models.items()}
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    timing = interleaved(steps, repeats=repeats, warmup=warmup, sync=sync)
    ms = {name: timing.median_ms(name) for name in steps}
    cpu_ms = {name: timing.median_ms(name, clock="cpu") for name in steps}
    masked = int((batch.mlm_labels != -100).sum())
    tokens = size.batch * size.seq_len
    useful = train_flops(size, masked)  # the work the losses need: MLM head at masked positions
    result: dict[str, Any] = {
        "size": asdict(size) | {"repeats": repeats},
        "masked_positions": masked,
        "ms_per_step": ms,
        "spread_iqr_over_median": {name: timing.spread(name) for name in steps},
        "samples_ms": {name: [1e3 * s for s in timing[name]] for name in steps},
        "cpu_samples_ms": {name: [1e3 * s for s in timing.cpu[name]] for name in steps},
        "cpu_ms_per_step": cpu_ms,
        # Paired per-round ratios (same round = same conditions): their spread shows the noise.
        "round_ratio_quartiles": {
            name: _quartiles([h / m for h, m in zip(timing[name], timing["mlstep"], strict=True)])
            for name in steps if name.startswith("hf")
        },
        "speedup": {name: ms[name] / ms["mlstep"] for name in steps if name.startswith("hf")},
        "speedup_cpu_time": {name: cpu_ms[name] / cpu_ms["mlstep"]
                             for name in steps if name.startswith("hf")},
        "tokens_per_s": {name: tokens / (ms[name] / 1e3) for name in steps},
        "useful_tflop_per_step": useful / 1e12,
    }
    if device.type == "cuda":
        # MFU: the useful FLOPs (same number for every model) per second over the peak. A model
        # that projects every position does more work for the same step, so its MFU is lower.
        result["mfu"] = {name: useful / (ms[name] / 1e3) / (peak_tflops * 1e12) for name in steps}
    return result


def _quartiles(xs: list[float]) -> list[float]:
    """``[min, q1, median, q3, max]`` (q1 = q3 = median with fewer than 2 samples)."""
    xs = sorted(xs)
    med = statistics.median(xs)
    q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) >= 2 else (med, med, med)
    return [xs[0], q1, med, q3, xs[-1]]


def format_table(results: Sequence[dict[str, Any]], device: torch.device) -> str:
    """Markdown: config, ms/step of each model, speed-up of mlstep over each HF variant.

    On the CPU a last column gives the speed-up over ``hf-sdpa`` in process CPU time, which
    other processes on the machine disturb less than wall time (see ``_timing.Timing``).
    """
    names = list(results[0]["ms_per_step"])
    hf_names = [n for n in names if n.startswith("hf")]
    headers = ["config"] + [f"{n} ms/step" for n in names] + [f"speed-up vs {n}" for n in hf_names]
    if device.type == "cpu":
        headers += ["speed-up vs hf-sdpa (CPU time)"]
    if device.type == "cuda":
        headers += ["mlstep tokens/s", "mlstep MFU", "hf-sdpa MFU"]
    rows = []
    for r in results:
        row: list[Any] = [Size(**{k: v for k, v in r["size"].items()}).label()]
        row += [r["ms_per_step"][n] for n in names]
        row += [f"{r['speedup'][n]:.2f}×" for n in hf_names]
        if device.type == "cpu":
            row += [f"{r['speedup_cpu_time']['hf-sdpa']:.2f}×"]
        if device.type == "cuda":
            row += [f"{r['tokens_per_s']['mlstep']:,.0f}", f"{100 * r['mfu']['mlstep']:.1f} %",
                    f"{100 * r['mfu']['hf-sdpa']:.1f} %"]
        rows.append(row)
    return markdown_table(headers, rows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = common_arguments(__doc__.split("\n\n")[0])
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.set_defaults(warmup=2)
    p.add_argument("--sizes", default=None,
                   help="comma-separated size names to run (e.g. target); default all")
    p.add_argument("--no-eager", action="store_true", help="skip HF eager attention")
    p.add_argument("--peak-tflops", type=float, default=989.0,
                   help="accelerator peak for MFU (default 989: H100 SXM bf16 dense)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; prints and returns ``{"environment", "results", "table", ...}``."""
    args = parse_args(argv)
    try:
        device = get_device(args.device)
    except RuntimeError as err:  # e.g. --device cuda on a machine without a GPU
        print(f"skipped: {err}")
        return {"skipped": str(err), "results": [], "table": ""}
    try:
        import transformers  # noqa: F401
    except ImportError:
        print("skipped: Hugging Face transformers is not installed (pip install -e '.[dev]')")
        return {"skipped": "transformers missing", "results": [], "table": ""}
    torch.set_num_threads(args.threads)

    if args.quick:
        sizes = QUICK_SIZES
    elif device.type == "cuda":
        sizes = GPU_SIZES
    else:
        sizes = CPU_SIZES
    if args.sizes:
        wanted = set(args.sizes.split(","))
        sizes = tuple(s for s in sizes if s.name in wanted)
        if not sizes:
            raise ValueError(f"--sizes {args.sizes!r} matches none of the sizes for this device")

    env = environment(device)
    print("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    if (warning := busy_warning(env)) is not None:
        print(warning)
    ours, theirs = same_start_losses(sizes[0], device)
    print(f"step-0 loss with copied weights, dropout 0 ({sizes[0].name}): "
          f"mlstep {ours:.6f}, HF {theirs:.6f}")

    results = []
    for size in sizes:
        repeats = args.repeats or size.repeats
        print(f"timing {size.label()} ({repeats} rounds)...", flush=True)
        results.append(run_size(size, device, repeats, args.warmup, eager=not args.no_eager,
                                peak_tflops=args.peak_tflops))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    table = format_table(results, device)
    print()
    print(table)
    print("\nnoise: per-round speed-up vs hf-sdpa [min, q1, median, q3, max]: " + "; ".join(
        f"{r['size']['name']} " + " ".join(f"{q:.2f}" for q in r["round_ratio_quartiles"]["hf-sdpa"])
        for r in results))
    out = {"environment": env, "step0_loss": {"mlstep": ours, "hf": theirs},
           "results": results, "table": table, "mlstep_version": mlstep.__version__}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return out


if __name__ == "__main__":
    main()
