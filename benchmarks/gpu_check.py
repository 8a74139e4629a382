"""The prepared GPU check: one command that proves the GPU path and measures it.

GPU time comes in short windows, so everything runs from this one script (``make gpu-check``)
and writes ``gpu_check.json`` and ``gpu_check.md`` into the folder given with ``--out``:

1. ``tests``: ``pytest -m gpu`` (the same model on CPU and CUDA agrees within stated
   tolerances, in fp32 and under bf16 autocast; a training step on CUDA; a checkpoint saved on
   CUDA loads on the CPU).
2. ``bert_step``: one BERT-base MLM + NSP training step in bf16 autocast, ``mlstep`` vs Hugging
   Face ``BertForPreTraining`` at the same config and batch (alternated rounds): tokens/s, model
   FLOPs utilisation (MFU) and the speed-up; with ``--compile`` also ``torch.compile``-d.
3. ``gpt_step``: the same for a GPT-2-124M-sized model vs ``GPT2LMHeadModel`` (when
   ``mlstep.GPT`` exists).
4. ``recipe``: the course's pretraining recipe for a few hundred steps on the device and on the
   CPU with the same seed; the held-out loss curves must agree within a tolerance.
5. ``ddp``: ``torchrun --nproc_per_node=N -m mlstep.tasks bert`` (NCCL on GPUs, N = 1, and 2 where
   there are 2 GPUs): the DDP path starts, trains, and only rank 0 writes.
6. ``gpt_target``: time to target: the course GPT (chapter 08's model, batch, learning rate and
   schedule, stretched to ``--target-steps``) trained with ``mlstep.train`` on the offline corpus
   until its held-out perplexity is at most ``--target-ppl`` (3.1); the seconds, steps and tokens
   it took.

``--device cpu --quick`` runs the same script end to end on the CPU in about a minute (CI does,
so the GPU run cannot fail on a typo). MFU = useful model FLOPs per second / the GPU's peak bf16
dense FLOP/s, from :data:`PEAK_TFLOPS` by the GPU's name, or ``--peak-tflops``.

    python benchmarks/gpu_check.py --out runs/gpu                # on a GPU machine
    python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu-check
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark modules

import pretrain_step  # noqa: E402
from _timing import environment, interleaved, markdown_table, training_step  # noqa: E402

import mlstep  # noqa: E402
from mlstep import ByteLevelBPETokenizer  # noqa: E402
from mlstep.data import load_task  # noqa: E402
from mlstep.gpt import GPT, GPTConfig  # noqa: E402
from mlstep.tasks.causal_lm import GPTRecipe, corpus_bpe, evaluate_lm, pack_documents  # noqa: E402
from mlstep.tasks.course import course_dir  # noqa: E402
from mlstep.tasks.masked_lm import PretrainRecipe, pretrain_on_corpus  # noqa: E402
from mlstep.train import TrainConfig, train  # noqa: E402
from mlstep.tools.runtime import get_device  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# Peak dense bf16 tensor-core FLOP/s (TFLOP/s, without sparsity) by a substring of the device name,
# most specific first; from the vendors' data sheets.
PEAK_TFLOPS = (
    ("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("GH200", 989.0), ("A100", 312.0),
    ("A10G", 70.0), ("A10", 125.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0),
    ("RTX 4090", 165.0), ("RTX 3090", 71.0), ("V100", 125.0), ("T4", 65.0),
)
TARGET_PPL = 3.1  # chapter 08's course GPT reaches 3.149 after the course's 2,000 steps
QUICK_TARGET_PPL = 300.0  # the dry run: reached after 20 steps (from ~2,000, uniform over the vocabulary)
GPT2_SIZE = dict(vocab=50257, layers=12, hidden=768, heads=12, seq_len=1024, batch=16)
GPT2_QUICK = dict(vocab=300, layers=1, hidden=32, heads=2, seq_len=32, batch=2)


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    """The peak for MFU: ``given``, else the table's entry for this GPU, else None."""
    if given is not None or device.type != "cuda":
        return given
    name = torch.cuda.get_device_name(device)
    return next((tflops for key, tflops in PEAK_TFLOPS if key in name), None)


# --- 1. the CUDA tests ----------------------------------------------------------------------------

def run_gpu_tests(out: Path) -> dict[str, Any]:
    """``pytest -m gpu tests/test_gpu.py`` (where every CUDA test lives): their verdicts (they skip
    without CUDA)."""
    junit = out / "gpu_tests.xml"
    cmd = [sys.executable, "-m", "pytest", "tests/test_gpu.py", "-m", "gpu", "-p", "no:nbval", "-o", "addopts=",
           "-q", f"--junitxml={junit}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-500:]
    # exit code 5 = nothing collected; 0 = every selected test passed (or skipped)
    return {"ok": proc.returncode in (0, 5), "summary": summary, "returncode": proc.returncode}


# --- 2. and 3. training steps against Hugging Face -----------------------------------------------

def bert_step(device: torch.device, quick: bool, peak: float | None, compile_: bool) -> dict[str, Any]:
    """BERT-base MLM + NSP step: mlstep vs Hugging Face, same weights and batch."""
    size = pretrain_step.QUICK_SIZES[0] if quick else pretrain_step.GPU_SIZES[-1]
    repeats = 2 if quick else 20
    result = pretrain_step.run_size(size, device, repeats, warmup=1 if quick else 3, eager=False,
                                    peak_tflops=peak or 1.0)
    row = {"size": size.label(), "ms_per_step": result["ms_per_step"],
           "tokens_per_s": result["tokens_per_s"], "speedup_vs_hf": result["speedup"]["hf-sdpa"]}
    if peak is not None and device.type == "cuda":
        row["mfu"] = result["mfu"]
    if compile_:
        row["compiled"] = _compiled_bert(size, device, repeats, peak)
    return row


def _compiled_bert(size: Any, device: torch.device, repeats: int, peak: float | None) -> dict[str, Any]:
    models = pretrain_step.build_models(size, device, eager=False)
    batch = pretrain_step.make_batch(size, device)
    steps = {"mlstep": pretrain_step.make_step("mlstep", torch.compile(models["mlstep"]), batch, device),
             "hf-sdpa": pretrain_step.make_step("hf-sdpa", models["hf-sdpa"], batch, device)}
    timing = interleaved(steps, repeats=repeats, warmup=3, sync=_sync(device))
    ms = {n: timing.median_ms(n) for n in steps}
    masked = int((batch.mlm_labels != -100).sum())
    flops = pretrain_step.train_flops(size, masked)
    out = {"ms_per_step": ms, "speedup_vs_hf": ms["hf-sdpa"] / ms["mlstep"]}
    if peak is not None:
        out["mfu"] = {n: flops / (ms[n] / 1e3) / (peak * 1e12) for n in ms}
    return out


def gpt_train_flops(vocab: int, layers: int, hidden: int, seq_len: int, batch: int, **_: Any) -> float:
    """Matmul FLOPs of one GPT training step (3 × forward), as nanoGPT counts them: per token
    ``2·12·L·D²`` in the blocks, ``2·D·V`` in the LM head and ``4·L·T·D`` for ``QKᵀ`` and ``AV``."""
    per_token = 2 * 12 * layers * hidden**2 + 2 * hidden * vocab + 4 * layers * seq_len * hidden
    return 3.0 * per_token * batch * seq_len


def gpt_step(device: torch.device, quick: bool, peak: float | None) -> dict[str, Any]:
    """GPT-2-124M-sized step: mlstep.GPT vs Hugging Face GPT2LMHeadModel, same weights and batch."""
    if not hasattr(mlstep, "gpt_from_hf"):
        return {"skipped": "mlstep has no GPT model yet"}
    from transformers import GPT2Config, GPT2LMHeadModel

    s = GPT2_QUICK if quick else GPT2_SIZE
    torch.manual_seed(0)
    hf_config = GPT2Config(vocab_size=s["vocab"], n_positions=s["seq_len"], n_embd=s["hidden"],
                           n_layer=s["layers"], n_head=s["heads"], attn_implementation="sdpa")
    hf = GPT2LMHeadModel(hf_config).to(device).train()
    models = {"mlstep": mlstep.gpt_from_hf(hf).train(), "hf-sdpa": hf}
    ids = torch.randint(0, s["vocab"], (s["batch"], s["seq_len"]), generator=torch.Generator().manual_seed(0))
    ids = ids.to(device)
    losses = {"mlstep": lambda: models["mlstep"](ids, labels=ids)[0],
              "hf-sdpa": lambda: models["hf-sdpa"](input_ids=ids, labels=ids).loss}
    steps = {n: training_step(models[n], losses[n], device) for n in models}
    timing = interleaved(steps, repeats=2 if quick else 20, warmup=1 if quick else 3, sync=_sync(device))
    ms = {n: timing.median_ms(n) for n in steps}
    tokens = s["batch"] * s["seq_len"]
    out = {"size": s, "ms_per_step": ms, "tokens_per_s": {n: tokens / (ms[n] / 1e3) for n in ms},
           "speedup_vs_hf": ms["hf-sdpa"] / ms["mlstep"]}
    if peak is not None and device.type == "cuda":
        out["mfu"] = {n: gpt_train_flops(**s) / (ms[n] / 1e3) / (peak * 1e12) for n in ms}
    return out


def _sync(device: torch.device) -> Callable[[], None] | None:
    return torch.cuda.synchronize if device.type == "cuda" else None


# --- 4. the course recipe on the device vs the CPU ------------------------------------------------

def recipe_curves(device: torch.device, quick: bool, tolerance: float) -> dict[str, Any]:
    """Held-out MLM loss along the recipe, on ``device`` and on the CPU (same seed and data)."""
    recipe = PretrainRecipe(steps=20 if quick else 300, eval_every=10 if quick else 50,
                            max_documents=500 if quick else None)
    curves = {}
    for where in dict.fromkeys([device.type, "cpu"]):  # the CPU once when device is the CPU
        _, _, history, _ = pretrain_on_corpus(recipe, progress=False, device=where)
        curves[where] = history.series("eval.mlm_loss")
    ours, cpu = curves[device.type][1], curves["cpu"][1]
    gap = max(abs(a - b) for a, b in zip(ours, cpu, strict=True))
    return {"steps": curves["cpu"][0], "mlm_loss": {k: v[1] for k, v in curves.items()},
            "max_abs_gap": gap, "tolerance": tolerance, "ok": gap <= tolerance}


# --- 5. torchrun ----------------------------------------------------------------------------------

def ddp_run(device: torch.device, quick: bool, out: Path) -> dict[str, Any]:
    """``torchrun -m mlstep.tasks bert`` with 1 process (and 2 where there are 2 GPUs)."""
    counts = [1] + ([2] if device.type == "cuda" and torch.cuda.device_count() >= 2 else [])
    runs = []
    for n in counts:
        folder = out / f"ddp{n}"
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}", "--standalone",
               "-m", "mlstep.tasks", "bert", "--device", device.type, "--steps", "20" if quick else "200",
               "--out", str(folder), *(["--max-documents", "500"] if quick else [])]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        written = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
        saved_lines = proc.stdout.count("saved to ")
        runs.append({"processes": n, "returncode": proc.returncode, "seconds": time.perf_counter() - start,
                     "files": written, "saved_messages": saved_lines,
                     "ok": proc.returncode == 0 and written == ["model.pt", "tokenizer.json"] and saved_lines == 1,
                     "stderr_tail": proc.stderr[-1500:] if proc.returncode else ""})
    return {"runs": runs, "ok": all(r["ok"] for r in runs)}


# --- 6. time to target: the course GPT to a held-out perplexity ----------------------------------

class TargetReached(Exception):
    """Raised by the evaluation to stop ``mlstep.train`` once the target perplexity is reached."""


class TargetClock:
    """The ``eval_fn`` of a time-to-target run: held-out perplexity every ``every`` steps, the
    seconds since ``start()`` (evaluations included, and apart), and :class:`TargetReached` once
    the perplexity is at most ``target``."""

    def __init__(self, blocks: torch.Tensor, target: float, every: int, max_steps: int, device: torch.device):
        self.blocks, self.target, self.every, self.max_steps = blocks, target, every, max_steps
        self.sync = _sync(device) or (lambda: None)
        self.curve: list[dict[str, float]] = []
        self.eval_seconds = 0.0

    def start(self) -> None:
        self.sync()
        self.t0 = time.perf_counter()

    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        self.sync()
        t = time.perf_counter()
        ppl = evaluate_lm(model, self.blocks)["perplexity"]
        self.eval_seconds += time.perf_counter() - t
        step = min(self.every * (len(self.curve) + 1), self.max_steps)
        self.curve.append({"step": step, "seconds": time.perf_counter() - self.t0, "perplexity": ppl})
        if ppl <= self.target:
            raise TargetReached
        return {"perplexity": ppl}


def course_blocks(recipe: GPTRecipe, quick: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, held-out)`` blocks of the offline corpus in the course GPT's tokenizer: the held-out
    ones are the first 200 validation blocks, as :func:`mlstep.tasks.causal_lm.pretrain_gpt` evaluates."""
    path = course_dir("gpt") / "tokenizer.json"
    tokenizer = ByteLevelBPETokenizer.load(path) if path.exists() else corpus_bpe(recipe.vocab_size)
    train_docs, valid_docs = (load_task("pretrain", split)["sentences"] for split in ("train", "validation"))
    if quick:
        train_docs, valid_docs = train_docs[:300], valid_docs[:40]
    blocks = [pack_documents(docs, tokenizer, recipe.block_size) for docs in (train_docs, valid_docs)]
    return blocks[0], blocks[1][:200]


def gpt_time_to_target(device: torch.device, quick: bool, target: float, max_steps: int) -> dict[str, Any]:
    """Train the course GPT until held-out perplexity <= ``target`` (at most ``max_steps`` steps,
    evaluated every 100, or 10 with ``quick``): the wall-clock seconds, steps and tokens it took."""
    recipe = GPTRecipe()
    train_blocks, valid_blocks = course_blocks(recipe, quick)
    batch, every = (8 if quick else recipe.batch_size), (10 if quick else 100)
    torch.manual_seed(recipe.seed)
    model = GPT(GPTConfig(recipe.vocab_size, hidden_size=recipe.hidden_size, num_layers=recipe.num_layers,
                          num_heads=recipe.num_heads, intermediate_size=4 * recipe.hidden_size,
                          max_position=recipe.block_size))
    loader = torch.utils.data.DataLoader(train_blocks, batch_size=batch, shuffle=True,
                                         generator=torch.Generator().manual_seed(recipe.seed))
    config = TrainConfig(max_steps=max_steps, lr=recipe.lr, warmup_ratio=recipe.warmup_ratio,
                         decay_ratio=recipe.decay_ratio, eval_every=every, seed=recipe.seed,
                         progress=False, device=str(device))
    clock = TargetClock(valid_blocks, target, every, max_steps, device)
    clock.start()
    try:
        train(model, loader, lambda m, ids: m(ids, ids).loss, config, eval_fn=clock)
        reached = False
    except TargetReached:
        reached = True
    last = clock.curve[-1]
    return {"target_perplexity": target, "reached": reached, "steps": last["step"], "max_steps": max_steps,
            "seconds": last["seconds"], "train_seconds": last["seconds"] - clock.eval_seconds,
            "tokens": last["step"] * batch * recipe.block_size, "batch_size": batch,
            "best_perplexity": min(c["perplexity"] for c in clock.curve), "curve": clock.curve,
            "precision": "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32",
            "ok": reached}


# --- the report -----------------------------------------------------------------------------------

def report_markdown(result: dict[str, Any]) -> str:
    """The tables that go into benchmarks/README.md."""
    env = result["environment"]
    lines = [f"GPU check on {env.get('gpu', env['device'])} (torch {env['torch']}, peak "
             f"{result['peak_tflops']} TFLOP/s bf16 dense), {result['seconds']:.0f} s in total.", ""]
    checks = [("CUDA tests (`pytest -m gpu`)", result["tests"].get("summary", "")),
              ("recipe: device vs CPU held-out MLM loss", _gap(result["recipe"])),
              ("torchrun DDP, only rank 0 writes", _ddp(result["ddp"])),
              ("time to target: course GPT, held-out perplexity", _target(result["gpt_target"]))]
    lines += [markdown_table(["check", "result"], checks), ""]
    rows = []
    for name in ("bert_step", "gpt_step"):
        r = result[name]
        if "skipped" in r or "error" in r:
            rows.append([name, r.get("skipped", r.get("error", ""))[:80], "", "", "", ""])
            continue
        mfu = r.get("mfu", {})
        rows.append([name, f"{r['tokens_per_s']['mlstep']:,.0f}", f"{r['tokens_per_s']['hf-sdpa']:,.0f}",
                     f"{r['speedup_vs_hf']:.2f}×", _pct(mfu.get("mlstep")), _pct(mfu.get("hf-sdpa"))])
        if "compiled" in r:
            c = r["compiled"]
            rows.append([f"{name} (torch.compile)", "", "", f"{c['speedup_vs_hf']:.2f}×",
                         _pct(c.get("mfu", {}).get("mlstep")), ""])
    lines.append(markdown_table(["step", "mlstep tokens/s", "HF tokens/s", "speed-up", "mlstep MFU", "HF MFU"], rows))
    return "\n".join(lines) + "\n"


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f} %"


def _gap(r: dict[str, Any]) -> str:
    if "error" in r:
        return "error: " + r["error"][:80]
    return f"max gap {r['max_abs_gap']:.4f} (tolerance {r['tolerance']}): {'ok' if r['ok'] else 'FAILED'}"


def _target(r: dict[str, Any]) -> str:
    if "error" in r or "skipped" in r:
        return r.get("error", r.get("skipped", ""))[:80]
    if not r["reached"]:
        return (f"≤ {r['target_perplexity']} not reached in {r['steps']} steps ({r['seconds']:.1f} s); "
                f"best {r['best_perplexity']:.3f}")
    return (f"≤ {r['target_perplexity']} in {r['seconds']:.1f} s ({r['train_seconds']:.1f} s training), "
            f"{r['steps']} steps, {r['tokens']:,} tokens, {r['precision']}")


def _ddp(r: dict[str, Any]) -> str:
    if "error" in r:
        return "error: " + r["error"][:80]
    return "; ".join(f"{x['processes']} process(es): {'ok' if x['ok'] else 'FAILED'} ({x['seconds']:.0f} s)"
                     for x in r["runs"])


def guarded(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one part; a failure is recorded (with its traceback) and the other parts still run."""
    print(f"{name} ...", flush=True)
    start = time.perf_counter()
    try:
        result = fn()
    except Exception as err:  # noqa: BLE001 - one broken part must not cost the whole GPU window
        result = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(), "ok": False}
    result["seconds"] = time.perf_counter() - start
    verdict = "skipped" if "skipped" in result else "ok" if result.get("ok", "error" not in result) else "FAILED"
    print(f"{name}: {verdict} ({result['seconds']:.0f} s)", flush=True)
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and gpu_check.md")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --quick: the CI dry run)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few steps (a dry run)")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak bf16 dense TFLOP/s for MFU")
    p.add_argument("--compile", action="store_true", help="also time torch.compile-d mlstep models")
    p.add_argument("--tolerance", type=float, default=0.05,
                   help="largest held-out MLM-loss gap between device and CPU (default 0.05)")
    p.add_argument("--target-ppl", type=float, default=None,
                   help=f"held-out perplexity the time-to-target run trains to (default {TARGET_PPL}; "
                        f"{QUICK_TARGET_PPL} with --quick)")
    p.add_argument("--target-steps", type=int, default=None,
                   help="the time-to-target run's step budget and schedule length (default 4000: twice "
                        "the course's 2,000, which end at 3.149; 30 with --quick)")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: tests,bert,gpt,recipe,ddp,target")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = get_device(args.device)  # a clear error when CUDA is asked for and absent
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(min(8, os.cpu_count() or 1) if device.type == "cuda" else 1)
    peak = peak_tflops(device, args.peak_tflops)
    skip = set(filter(None, args.skip.split(",")))
    target = args.target_ppl or (QUICK_TARGET_PPL if args.quick else TARGET_PPL)
    target_steps = args.target_steps or (30 if args.quick else 4000)
    start = time.perf_counter()
    result: dict[str, Any] = {"environment": environment(device), "peak_tflops": peak,
                              "quick": args.quick, "mlstep_version": mlstep.__version__}
    parts = {"tests": lambda: run_gpu_tests(args.out),
             "bert_step": lambda: bert_step(device, args.quick, peak, args.compile),
             "gpt_step": lambda: gpt_step(device, args.quick, peak),
             "recipe": lambda: recipe_curves(device, args.quick, args.tolerance),
             "ddp": lambda: ddp_run(device, args.quick, args.out),
             "gpt_target": lambda: gpt_time_to_target(device, args.quick, target, target_steps)}
    short = {"tests": "tests", "bert_step": "bert", "gpt_step": "gpt", "recipe": "recipe", "ddp": "ddp",
             "gpt_target": "target"}
    for name, fn in parts.items():
        result[name] = {"skipped": "--skip"} if short[name] in skip else guarded(name, fn)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    result["seconds"] = time.perf_counter() - start
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2, default=str))
    table = report_markdown(result)
    (args.out / "gpu_check.md").write_text(table)
    print("\n" + table + f"\nwrote {args.out / 'gpu_check.json'} and gpu_check.md")
    return result


if __name__ == "__main__":
    main()
