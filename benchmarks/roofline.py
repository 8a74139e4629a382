"""Roofline: the share of this machine's own matmul rate that a training step achieves.

**Peak.** The rate of ``N × N`` matmuls (``--matmul 2048``: 2·N³ FLOPs each) in float32 and in
bfloat16 on ``--threads`` threads (default: every usable core), the best of ``--repeats`` rounds.

**Achieved.** The FLOPs of one training step (``zero_grad`` → forward with the loss → ``backward``
→ ``AdamW.step``, ``benchmarks/_timing.training_step``) counted analytically, divided by the
median step time; fp32 and bf16 autocast are timed alternately on two copies of one model.
The count is ``3 ×`` the forward matmuls (backward = 2 × forward), i.e. ``6·N·tokens`` for the
``N = 12·L·d²`` block weights plus the attention terms and the heads:

    GPT:  3 · [ B·T·L·(24·d² + 4·T·d)  +  B·(T−1)·2·d·V ]          (LM head where a target exists)
    BERT: 3 · [ B·T·L·(24·d² + 4·T·d)  +  B·2·(d² + 2d)  +  m·2·(d² + d·V) ]   (m masked positions)

(``benchmarks/gpt.py`` and ``benchmarks/pretrain_step.py`` ``train_flops``; ``4·T·d`` is QKᵀ and AV
per token and layer, the causal half not subtracted). Embedding lookups, norms, softmax and the
optimizer are not counted. **Check:** ``torch.utils.flop_counter.FlopCounterMode`` counts the FLOPs
PyTorch's own ops report for one forward + backward; attention runs on the math path there (the
fused CPU kernel reports no FLOPs to the counter), and the two counts agree exactly.

**Sizes.** The benchmark sizes (GPT: ``benchmarks/gpt.py`` target, L4 d256 T128 B16 V8192; BERT:
``benchmarks/pretrain_step.py`` target, L2 d128 T64 B64 V4096) and the course's models as
committed (``data/pretrained_gpt``, ``data/pretrained``: shape, batch and sequence length of their
recipes). Dropout is 0 everywhere (it adds no matmul FLOPs).

Usage (from the repository root)::

    python benchmarks/roofline.py                 # every core, ~1 min; writes benchmarks/results/roofline.json
    python benchmarks/roofline.py --threads 1     # one core
    python benchmarks/roofline.py --quick         # tiny sizes, 256² matmuls (seconds)
    make roofline ARGS="--threads 2"
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # for the sibling benchmarks when run as a script

import gpt as gpt_bench  # noqa: E402
import pretrain_step as bert_bench  # noqa: E402
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
from mlstep.bert import BertConfig, BertForPreTraining  # noqa: E402
from mlstep.gpt import GPT, GPTConfig  # noqa: E402

try:
    from torch.nn.attention import SDPBackend, sdpa_kernel
except ImportError:  # torch < 2.3
    SDPBackend = sdpa_kernel = None

ROOT = HERE.parent
DEFAULT_OUT = HERE / "results" / "roofline.json"
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Case:
    """One training step to measure: a GPT or a BERT of ``size`` (pre-LN or post-LN)."""

    kind: str  # "gpt" or "bert"
    size: Size
    pre_norm: bool

    def label(self) -> str:
        return self.size.label()


def _named(sizes: Sequence[Size], name: str) -> Size:
    return next(s for s in sizes if s.name == name)


def course_case(kind: str, repeats: int) -> Case:
    """The course's committed model (``data/pretrained_gpt`` or ``data/pretrained``): its config
    and its recipe's batch size and sequence length."""
    folder = ROOT / "data" / ("pretrained_gpt" if kind == "gpt" else "pretrained")
    saved = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
    config, recipe = saved["config"], json.loads(saved["metadata"])["recipe"]
    d = config["hidden_size"]
    if config["intermediate_size"] != 4 * d:
        raise ValueError(f"{folder}: the FLOP formulas assume an FFN 4·d wide, got "
                         f"{config['intermediate_size']} for d={d}")
    seq_len = recipe["block_size"] if kind == "gpt" else recipe["max_length"]
    size = Size(f"{kind}-course", layers=config["num_layers"], hidden=d, heads=config["num_heads"],
                seq_len=seq_len, batch=recipe["batch_size"], vocab=config["vocab_size"], repeats=repeats)
    return Case(kind, size, pre_norm=config["pre_norm"])


def cases(quick: bool) -> list[Case]:
    """The GPT and BERT benchmark sizes and the course models (``quick``: the tiny smoke sizes)."""
    if quick:
        return [Case("gpt", replace(gpt_bench.QUICK_TRAIN[0], name="gpt-quick"), pre_norm=True),
                Case("bert", replace(bert_bench.QUICK_SIZES[0], name="bert-quick"), pre_norm=False)]
    return [Case("gpt", replace(_named(gpt_bench.TRAIN_SIZES, "target"), name="gpt-benchmark", repeats=5),
                 pre_norm=True),
            course_case("gpt", repeats=7),
            Case("bert", replace(_named(bert_bench.CPU_SIZES, "target"), name="bert-benchmark", repeats=7),
                 pre_norm=False),
            course_case("bert", repeats=9)]


def build(case: Case, device: torch.device, seed: int = 0) -> tuple[nn.Module, Callable[[nn.Module], torch.Tensor], float]:
    """``(model, loss_of(model), analytic FLOPs per training step)`` for ``case``, dropout 0."""
    s = case.size
    shape = dict(hidden_size=s.hidden, num_layers=s.layers, num_heads=s.heads, intermediate_size=s.intermediate,
                 dropout=0.0)
    torch.manual_seed(seed)
    if case.kind == "gpt":
        model = GPT(GPTConfig(s.vocab, max_position=s.seq_len, **shape))
        ids = gpt_bench.make_batch(s, device, seed)
        return model.to(device).train(), lambda m: gpt_bench.loss_fn("mlstep", m, ids), gpt_bench.train_flops(s)
    model = BertForPreTraining(BertConfig(s.vocab, max_position=max(s.seq_len, 128), pre_norm=case.pre_norm, **shape))
    batch = bert_bench.make_batch(s, device, seed)
    masked = int((batch.mlm_labels != -100).sum())
    flops = bert_bench.train_flops(s, masked)
    return model.to(device).train(), lambda m: bert_bench.loss_fn("mlstep", m, batch), flops


def math_attention() -> contextlib.AbstractContextManager:
    """Attention on PyTorch's math path (plain matmuls the FLOP counter sees); a no-op before torch
    2.3, where the counter then misses the fused attention and counts less than the formula."""
    if sdpa_kernel is None:
        return contextlib.nullcontext()
    return sdpa_kernel(SDPBackend.MATH)


def counted_flops(model: nn.Module, loss: Callable[[nn.Module], torch.Tensor]) -> int:
    """FLOPs of one forward + backward as ``FlopCounterMode`` counts them (float32)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, math_attention():
        loss(model).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def matmul_peak(n: int, device: torch.device, repeats: int, warmup: int) -> dict[str, Any]:
    """The best rate of ``n × n`` matmuls in each precision (GFLOP/s), from alternated rounds."""
    g = torch.Generator().manual_seed(0)
    operands = {p: [torch.randn(n, n, generator=g).to(device, dtype) for _ in range(2)]
                for p, dtype in zip(PRECISIONS, (torch.float32, torch.bfloat16))}
    fns = {p: functools.partial(torch.matmul, *operands[p]) for p in PRECISIONS}
    timing = interleaved(fns, repeats=repeats, warmup=warmup, sync=_sync(device))
    flops = 2.0 * n**3
    return {p: {"gflops": flops / min(timing[p]) / 1e9, "median_gflops": flops / (timing.median_ms(p) / 1e3) / 1e9,
                "samples_ms": [1e3 * t for t in timing[p]]} for p in PRECISIONS} | {"n": n}


def _sync(device: torch.device) -> Callable[[], None] | None:
    return torch.cuda.synchronize if device.type == "cuda" else None


def measure(case: Case, device: torch.device, peak: dict[str, Any], repeats: int, warmup: int) -> dict[str, Any]:
    """Time fp32 and bf16 steps of ``case`` alternately; FLOP/s, share of peak, the counter check."""
    model, loss, flops = build(case, device)
    counted = counted_flops(model, loss)
    models = {"fp32": model, "bf16": copy.deepcopy(model)}
    steps = {p: training_step(m, functools.partial(loss, m), device, precision=p) for p, m in models.items()}
    timing = interleaved(steps, repeats=repeats, warmup=warmup, sync=_sync(device))
    ms = {p: timing.median_ms(p) for p in PRECISIONS}
    achieved = {p: flops / (ms[p] / 1e3) / 1e9 for p in PRECISIONS}
    return {"case": case.size.name, "kind": case.kind, "pre_norm": case.pre_norm,
            "size": asdict(case.size) | {"repeats": repeats}, "gflop_per_step": flops / 1e9,
            "flop_counter_gflop": counted / 1e9, "counter_over_formula": counted / flops,
            "ms_per_step": ms, "spread_iqr_over_median": {p: timing.spread(p) for p in PRECISIONS},
            "samples_ms": {p: [1e3 * t for t in timing[p]] for p in PRECISIONS},
            "achieved_gflops": achieved,
            "share_of_peak": {p: achieved[p] / peak[p]["gflops"] for p in PRECISIONS},
            "tokens_per_s": {p: case.size.batch * case.size.seq_len / (ms[p] / 1e3) for p in PRECISIONS},
            "bf16_speedup": ms["fp32"] / ms["bf16"]}


def bf16_support() -> dict[str, Any]:
    """What PyTorch and the CPU say about bf16 matmul instructions (without them, PyTorch emulates
    bf16 matmuls: the same results, far slower)."""
    try:
        mkldnn_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        mkldnn_bf16 = None
    flags: set[str] = set()
    with contextlib.suppress(OSError):
        flags = {w for line in open("/proc/cpuinfo") if line.startswith("flags") for w in line.split()}
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)()
    return {"mkldnn": torch.backends.mkldnn.is_available(), "mkldnn_bf16": mkldnn_bf16,
            "cpu_capability": capability,
            "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})}


def format_table(peak: dict[str, Any], results: Sequence[dict[str, Any]]) -> str:
    """Markdown: one row per step, achieved GFLOP/s and share of the measured peak per precision."""
    headers = ["step", "GFLOP/step", "counter ÷ formula", "fp32 ms", "fp32 GFLOP/s", "% of fp32 peak",
               "bf16 ms", "bf16 GFLOP/s", "% of bf16 peak", "bf16 speed-up"]
    rows = [[r["case"] + " (" + Size(**r["size"]).label().split(": ", 1)[1] + ")", r["gflop_per_step"],
             f"{r['counter_over_formula']:.4f}",
             *(x for p in PRECISIONS for x in (r["ms_per_step"][p], r["achieved_gflops"][p],
                                                f"{100 * r['share_of_peak'][p]:.1f} %")),
             f"{r['bf16_speedup']:.2f}×"] for r in results]
    peak_row = ["matmul peak (" + f"{peak['n']}²)", 2 * peak["n"] ** 3 / 1e9, "", "",
                peak["fp32"]["gflops"], "100 %", "", peak["bf16"]["gflops"], "100 %", ""]
    return markdown_table(headers, [peak_row, *rows])


def parse_args(argv: Sequence[str] | None):
    p = common_arguments(__doc__.split("\n\n")[0])
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    p.set_defaults(threads=usable)
    threads = next(a for a in p._actions if a.dest == "threads")
    threads.help = f"torch.set_num_threads (CPU); default: every usable core ({usable} here)"
    p.add_argument("--out", dest="json", type=Path,
                   help=f"the JSON file (same as --json; default {DEFAULT_OUT.relative_to(ROOT)}, none with --quick)")
    p.add_argument("--matmul", type=int, default=None, help="N of the N×N peak matmuls (default 2048; 256 with --quick)")
    args = p.parse_args(argv)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the roofline; prints the table and returns ``{"environment", "peak", "results", "table"}``."""
    args = parse_args(argv)
    device, env = start(args, needs_transformers=False)
    if device is None:
        return env | {"results": [], "table": ""}
    env["bf16_support"] = bf16_support()
    print(f"bf16 support: {env['bf16_support']}")
    n = args.matmul or (256 if args.quick else 2048)
    repeats = args.repeats or (2 if args.quick else 10)
    print(f"matmul peak: {n}² in fp32 and bf16, {repeats} rounds...", flush=True)
    peak = matmul_peak(n, device, repeats, args.warmup)
    results = []
    for case in cases(args.quick):
        case_repeats = args.repeats or case.size.repeats
        print(f"timing {case.label()} ({case_repeats} rounds of fp32 and bf16)...", flush=True)
        results.append(measure(case, device, peak, case_repeats, args.warmup))
    table = format_table(peak, results)
    print()
    print(table)
    out = {"environment": env, "peak": peak, "results": results, "table": table,
           "mlstep_version": mlstep.__version__}
    path = args.json or (None if args.quick else DEFAULT_OUT)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, path)
    return out


if __name__ == "__main__":
    main()
