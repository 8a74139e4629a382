"""Rollouts for RL (chapter 11): sampled generation at batch 32 and 64, mlstep vs Hugging Face
``generate()``, on the course GPT's shape with identical weights.

A rollout samples answers for a batch of prompts at temperature 1 (no top-k / top-p), as
:func:`mlstep.posttrain.rollout` does: mlstep's :func:`mlstep.generate` with its KV cache against
``GPT2LMHeadModel.generate(do_sample=True, top_k=0)`` with its default cache, both on the same
weights (mlstep's model is built from the HF model with :func:`mlstep.gpt_from_hf`), the same
prompts (random ids, ``--prompt-len`` tokens: chapter 11's chat prompts are about 48) and the same
number of new tokens (no end token, so every row generates all of them). Sampled tokens differ
(the two libraries draw differently); the greedy tokens are compared instead, as a check that the
models are the same. Ratios are medians of alternately measured repetitions (``_timing.py``).

Usage (from the repository root)::

    python benchmarks/rollout.py               # CPU, 2 threads, batches 32 and 64 (~1 min)
    python benchmarks/rollout.py --quick       # a smoke run (seconds)
    python benchmarks/rollout.py --json out.json
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for _timing when run as a script

from _timing import Size, common_arguments, interleaved, markdown_table, start, write_json  # noqa: E402

from mlstep.generation import generate  # noqa: E402
from mlstep.gpt import gpt_from_hf  # noqa: E402

SIZES = (Size("course GPT, B 32", layers=2, hidden=64, heads=4, seq_len=128, batch=32, vocab=2004, repeats=7),
         Size("course GPT, B 64", layers=2, hidden=64, heads=4, seq_len=128, batch=64, vocab=2004, repeats=7))
QUICK = (Size("quick", layers=1, hidden=32, heads=2, seq_len=64, batch=4, vocab=300, repeats=2),)


def build(size: Size, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=size.vocab, n_positions=size.seq_len, n_embd=size.hidden, n_layer=size.layers,
                        n_head=size.heads, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0,
                        eos_token_id=0, attn_implementation="sdpa")
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(config).to(device).eval()
    return gpt_from_hf(hf).eval(), hf


def time_rollout(size: Size, prompt_len: int, new_tokens: int, device: torch.device, repeats: int, warmup: int) -> dict:
    ours, hf = build(size, device)
    prompt = torch.randint(1, size.vocab, (size.batch, prompt_len), generator=torch.Generator().manual_seed(0)).to(device)
    mask = torch.ones_like(prompt)

    def hf_generate(sample: bool) -> torch.Tensor:
        with torch.no_grad():
            return hf.generate(prompt, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                               do_sample=sample, top_k=0 if sample else None, pad_token_id=0, eos_token_id=None)

    same_greedy = torch.equal(generate(ours, prompt, new_tokens, temperature=0), hf_generate(False))
    g = torch.Generator(device).manual_seed(0)
    runs = {"mlstep": lambda: generate(ours, prompt, new_tokens, temperature=1.0, generator=g),
            "hf generate": lambda: hf_generate(True)}
    timing = interleaved(runs, repeats=repeats, warmup=warmup,
                         sync=torch.cuda.synchronize if device.type == "cuda" else None)
    ms = {name: timing.median_ms(name) for name in runs}
    return {"size": asdict(size) | {"prompt_len": prompt_len, "new_tokens": new_tokens, "repeats": repeats},
            "ms": ms, "samples_ms": {n: [1e3 * s for s in timing[n]] for n in runs},
            "tokens_per_s": {n: size.batch * new_tokens / (ms[n] / 1e3) for n in runs},
            "vs_hf": ms["hf generate"] / ms["mlstep"], "same_greedy_tokens": bool(same_greedy)}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = common_arguments(__doc__.split("\n\n")[0])
    p.add_argument("--prompt-len", type=int, default=48, help="prompt tokens (default 48)")
    p.add_argument("--new-tokens", type=int, default=48, help="sampled tokens per answer (default 48)")
    args = p.parse_args(argv)
    device, env = start(args)
    if device is None:
        return {**env, "rollout": [], "table": ""}
    sizes = QUICK if args.quick else SIZES
    prompt_len, new_tokens = (8, 8) if args.quick else (args.prompt_len, args.new_tokens)
    results = [time_rollout(s, prompt_len, new_tokens, device, args.repeats or s.repeats, args.warmup) for s in sizes]
    table = markdown_table(
        ["config (prompt + new tokens)", "mlstep tok/s", "HF generate tok/s", "mlstep vs HF", "same greedy tokens"],
        [[f"{r['size']['name']} ({prompt_len} + {new_tokens})", f"{r['tokens_per_s']['mlstep']:,.0f}",
          f"{r['tokens_per_s']['hf generate']:,.0f}", f"{r['vs_hf']:.2f}×", r["same_greedy_tokens"]] for r in results])
    print("\n" + table)
    out = {"environment": env, "rollout": results, "table": table}
    write_json(out, args.json)
    return out


if __name__ == "__main__":
    main()
