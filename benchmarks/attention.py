"""Attention, forward + backward: mlstep's from-scratch path vs PyTorch's fused kernel.

Two comparisons, each measured alternately in one run (see ``benchmarks/_timing.py``):

1. ``mlstep.scaled_dot_product_attention(q, k, v, mask)`` (``softmax(q kᵀ/√d) v`` written out,
   which materialises the ``(B, H, T, T)`` score and weight matrices) vs
   ``torch.nn.functional.scaled_dot_product_attention`` (a fused kernel), on ``q, k, v`` of shape
   ``(B, H, T, d)`` with a BERT-style key-padding mask.
2. ``mlstep.MultiHeadAttention`` asked for its weights (``need_weights=True``: the from-scratch
   path) vs called plainly (the fused kernel), on
   ``(B, T, d_model)`` inputs: the whole layer (projections included), so the share of
   attention proper in a layer's time shows.

Each timed call is forward and backward (gradients of q, k, v, or of the input and weights).
Before timing, the two outputs are compared (they must agree to float32 rounding).

Usage (from the repository root)::

    python benchmarks/attention.py             # CPU, 2 threads (~1 min)
    python benchmarks/attention.py --quick     # smoke run
    python benchmarks/attention.py --device cuda --json attn.json

The ratio is ``from-scratch ms / fused ms`` (> 1: the fused kernel is faster).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for _timing when run as a script

from _timing import busy_warning, common_arguments, environment, interleaved, markdown_table  # noqa: E402

from mlstep import (  # noqa: E402
    MultiHeadAttention,
    TransformerConfig,
    get_device,
    padding_mask,
    scaled_dot_product_attention,
)

# (B, H, T, d) for the bare attention function.
SDPA_SHAPES = ((64, 4, 64, 16), (64, 4, 64, 32), (32, 4, 128, 64), (16, 12, 128, 64), (4, 12, 512, 64))
# (B, T, d_model, heads) for the multi-head layer.
MHA_SHAPES = ((64, 64, 128, 4), (32, 128, 256, 4), (16, 128, 768, 12))
QUICK_SDPA_SHAPES = ((2, 2, 8, 8),)
QUICK_MHA_SHAPES = ((2, 8, 16, 2),)


def key_padding(B: int, T: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """Boolean ``(B, 1, 1, T)`` mask: each sequence has a random length in ``[T/2, T]``."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)  # (B,)
    attention_mask = torch.arange(T)[None, :] < lengths[:, None]  # (B, T): True = real token
    return padding_mask(attention_mask).to(device)  # (B, 1, 1, T)


def sdpa_candidates(
    B: int, H: int, T: int, d: int, device: torch.device, seed: int = 0
) -> tuple[dict[str, Callable[[], None]], float]:
    """Forward+backward closures for both attention functions, and their max output difference."""
    g = torch.Generator().manual_seed(seed)
    q, k, v, grad_out = (torch.randn(B, H, T, d, generator=g).to(device) for _ in range(4))
    for t in (q, k, v):
        t.requires_grad_(True)
    mask = key_padding(B, T, device, seed)  # (B, 1, 1, T)

    def scratch() -> torch.Tensor:
        return scaled_dot_product_attention(q, k, v, mask=mask)[0]  # (B, H, T, d)

    def fused() -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, T, d)

    with torch.no_grad():
        diff = float((scratch() - fused()).abs().max())

    def fwd_bwd(fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
        # autograd.grad instead of .backward(): no gradient accumulates between repetitions.
        return lambda: torch.autograd.grad(fn(), (q, k, v), grad_out)  # type: ignore[return-value]

    return {"from-scratch": fwd_bwd(scratch), "F.sdpa": fwd_bwd(fused)}, diff


def mha_candidates(
    B: int, T: int, d_model: int, heads: int, device: torch.device, seed: int = 0
) -> tuple[dict[str, Callable[[], None]], float]:
    """Forward+backward closures for one ``MultiHeadAttention`` on its two paths."""
    torch.manual_seed(seed)
    layer = MultiHeadAttention(TransformerConfig(hidden_size=d_model, num_heads=heads, dropout=0.0)).to(device)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, d_model, generator=g).to(device).requires_grad_(True)  # (B, T, d_model)
    grad_out = torch.randn(B, T, d_model, generator=g).to(device)
    mask = key_padding(B, T, device, seed)  # (B, 1, 1, T)
    with torch.no_grad():
        diff = float((layer(x, mask=mask, need_weights=True)[0] - layer(x, mask=mask)).abs().max())
    params = (x, *layer.parameters())

    def scratch() -> None:
        torch.autograd.grad(layer(x, mask=mask, need_weights=True)[0], params, grad_out)

    def fused() -> None:
        torch.autograd.grad(layer(x, mask=mask), params, grad_out)

    return {"need_weights=True": scratch, "fused": fused}, diff


def measure(candidates: dict[str, Callable[[], None]], repeats: int, warmup: int,
            device: torch.device) -> dict[str, Any]:
    """Alternate the two candidates; medians in ms and ratio = first / second."""
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    timing = interleaved(candidates, repeats=repeats, warmup=warmup, sync=sync)
    first, second = candidates
    ms = {name: timing.median_ms(name) for name in candidates}
    return {
        "ms": ms,
        "cpu_ms": {name: timing.median_ms(name, clock="cpu") for name in candidates},
        "ratio": ms[first] / ms[second],
        "spread_iqr_over_median": {name: timing.spread(name) for name in candidates},
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = common_arguments(__doc__.split("\n\n")[0])
    p.set_defaults(warmup=2)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run both comparisons; prints and returns ``{"environment", "sdpa", "mha", "table"}``."""
    args = parse_args(argv)
    try:
        device = get_device(args.device)
    except RuntimeError as err:
        print(f"skipped: {err}")
        return {"skipped": str(err), "sdpa": [], "mha": [], "table": ""}
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (2 if args.quick else 15)
    sdpa_shapes = QUICK_SDPA_SHAPES if args.quick else SDPA_SHAPES
    mha_shapes = QUICK_MHA_SHAPES if args.quick else MHA_SHAPES
    env = environment(device)
    print("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    if (warning := busy_warning(env)) is not None:
        print(warning)

    sdpa_results, mha_results = [], []
    for B, H, T, d in sdpa_shapes:
        candidates, diff = sdpa_candidates(B, H, T, d, device)
        r = measure(candidates, repeats, args.warmup, device)
        sdpa_results.append({"shape": {"B": B, "H": H, "T": T, "d": d}, "max_abs_diff": diff, **r})
    for B, T, d_model, heads in mha_shapes:
        candidates, diff = mha_candidates(B, T, d_model, heads, device)
        r = measure(candidates, repeats, args.warmup, device)
        mha_results.append({"shape": {"B": B, "T": T, "d_model": d_model, "heads": heads},
                            "max_abs_diff": diff, **r})

    table1 = markdown_table(
        ["(B, H, T, d)", "from-scratch ms", "F.sdpa ms", "ratio (scratch / fused)", "max abs diff"],
        [[f"({r['shape']['B']}, {r['shape']['H']}, {r['shape']['T']}, {r['shape']['d']})",
          r["ms"]["from-scratch"], r["ms"]["F.sdpa"], f"{r['ratio']:.2f}×", f"{r['max_abs_diff']:.1e}"]
         for r in sdpa_results],
    )
    table2 = markdown_table(
        ["(B, T, d_model, heads)", "need_weights=True ms", "fused ms", "ratio (scratch / fused)",
         "max abs diff"],
        [[f"({r['shape']['B']}, {r['shape']['T']}, {r['shape']['d_model']}, {r['shape']['heads']})",
          r["ms"]["need_weights=True"], r["ms"]["fused"], f"{r['ratio']:.2f}×", f"{r['max_abs_diff']:.1e}"]
         for r in mha_results],
    )
    table = ("scaled_dot_product_attention, forward + backward, padding mask\n\n" + table1
             + "\n\nMultiHeadAttention, forward + backward (input and weight gradients)\n\n" + table2)
    print()
    print(table)
    out = {"environment": env, "repeats": repeats, "sdpa": sdpa_results, "mha": mha_results,
           "table": table}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return out


if __name__ == "__main__":
    main()
