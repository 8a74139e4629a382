"""Chapter 12's ablation: the modern decoder's changes, one at a time and all together, on the
course GPT at equal parameters and equal steps, over seeds: the result file the chapter plots.

Every arm is the course GPT (D = 64, 2 blocks, 4 heads, byte-level BPE of 2,000 pieces) with one
change, or all of Llama's (:data:`ARMS`); three more arms (the GPT-2 block, SwiGLU, Llama) redraw the
feed-forward input projections at std 1/√D, the initialisation that SwiGLU needs at this width. Each arm's feed-forward width F is set so that its
decoder stack holds as many parameters as the GPT-2 block's (:func:`matched_intermediate`: SwiGLU's
third matrix, fewer key/value heads, no biases are paid for or given back in F); the token table is
the same for every arm, and the rotary arms have no position table. All arms train the same steps
on the same batches of T = 64 tokens; each at its own learning rate, the best of a grid on
validation documents (seed 0; the grid grows until its best value is inside it), then over three
seeds at that rate, scored on other held-out documents:

* held-out perplexity at the trained length T, and the share of grammatical sentences in samples;
* beyond the trained length: perplexity at positions T … 2T − 1 of 2T-token blocks. Every arm is
  built with ``max_position = 2T``: a learned position table has 2T rows, of which training only
  ever reaches the first T (the others keep their random initialisation);
* the KV cache's bytes and generation speed (tokens/s), which grouped-query attention changes.

    python -m mlstep.experiments modern            # ≈ 32 minutes on one CPU thread (--arms: some of them)
    python -m mlstep.experiments modern --quick    # a smoke run (two arms, one seed, few steps)

writes ``chapters/results/12_modern.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from mlstep.data import load_task
from mlstep.experiments.results import results_path, summary, write_results
from mlstep.generation import generate
from mlstep.gpt import GPT, GPTConfig, lm_step
from mlstep.tasks.causal_lm import (
    corpus_bpe,
    evaluate_lm,
    grammatical_share,
    pack_documents,
    sample_texts,
)
from mlstep.tasks.labeled import TensorDataset
from mlstep.tools.runtime import count_parameters, eval_mode, set_threads
from mlstep.train import TrainConfig, train
from mlstep.transformer import Transformer

OUT = results_path("12_modern.json")

# name -> the TransformerConfig options the arm changes (the first arm is the course GPT, GPT-2's block)
ARMS = {
    "GPT-2 block": {},
    "+ RoPE": {"positions": "rope"},
    "+ RMSNorm": {"norm": "rmsnorm"},
    "+ SwiGLU": {"ffn": "swiglu"},
    "+ GQA (2 KV heads)": {"num_kv_heads": 2},
    "+ MQA (1 KV head)": {"num_kv_heads": 1},
    "+ QK-norm": {"qk_norm": True},
    "Llama block": {"positions": "rope", "norm": "rmsnorm", "ffn": "swiglu", "num_kv_heads": 2, "bias": False},
    "GPT-2 block, FFN init 1/√D": {"ffn_init": True},
    "+ SwiGLU, FFN init 1/√D": {"ffn": "swiglu", "ffn_init": True},
    "Llama block, FFN init 1/√D": {"positions": "rope", "norm": "rmsnorm", "ffn": "swiglu", "num_kv_heads": 2,
                                   "bias": False, "ffn_init": True},
}
# "ffn_init" is not a config option: those arms redraw the feed-forward input projections (fc1, and
# SwiGLU's up) with std 1/√D instead of GPT-2's 0.02, so that they start with outputs of unit variance.


@dataclass(frozen=True)
class ModernSetup:
    """What every arm shares: the model's shape, the run, the evaluation."""

    hidden_size: int = 64  # D, as the course GPT
    num_layers: int = 2
    num_heads: int = 4  # H
    intermediate_size: int = 256  # F of the GPT-2 block (4D); other arms get the F of equal parameters
    block_size: int = 64  # T: tokens per training sequence; evaluated at T and at 2T
    batch_size: int = 32  # blocks per step
    steps: int = 300  # optimizer steps, the same for every arm
    warmup_ratio: float = 0.05
    decay_ratio: float = 0.3
    lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2)  # the starting grid, extended at an edge that wins
    valid_docs: int = 500  # held-out documents that choose the lr; the rest score the arms
    samples: int = 64  # documents sampled (temperature 1) to judge grammar, each T tokens long


def matched_intermediate(config: GPTConfig, target: int) -> int:
    """The F whose decoder stack has the parameter count nearest ``target`` (the count is linear in F)."""
    p1, p2 = (count_parameters(Transformer(replace(config, intermediate_size=f))) for f in (1, 2))
    return max(1, round(1 + (target - p1) / (p2 - p1)))


def arm_config(options: dict, vocab_size: int, setup: ModernSetup = ModernSetup()) -> GPTConfig:
    """The course GPT with ``options``, ``max_position = 2T``, and F matched to the GPT-2 block's parameters."""
    base = GPTConfig(vocab_size, hidden_size=setup.hidden_size, num_layers=setup.num_layers,
                     num_heads=setup.num_heads, intermediate_size=setup.intermediate_size,
                     max_position=2 * setup.block_size)
    config = replace(base, **{k: v for k, v in options.items() if k != "ffn_init"})
    return replace(config, intermediate_size=matched_intermediate(config, count_parameters(Transformer(base))))


def build_arm(options: dict, vocab_size: int, setup: ModernSetup = ModernSetup()) -> GPT:
    """The arm's model (from the current RNG state), with ``ffn_init``'s redraw of fc1 and up at std 1/√D."""
    model = GPT(arm_config(options, vocab_size, setup))
    if options.get("ffn_init"):
        for block in model.decoder.layers:
            for linear in (block.ffn.fc1, block.ffn.up):
                if linear is not None:
                    torch.nn.init.normal_(linear.weight, std=setup.hidden_size ** -0.5)
    return model


def load_data(setup: ModernSetup = ModernSetup()) -> dict:
    """The tokenizer and the blocks: ``train`` (T), ``valid`` (T, chooses the lr), ``test`` (T) and
    ``test_long`` (2T) from the held-out documents the lr never saw."""
    tokenizer = corpus_bpe(2000)
    held_out = load_task("pretrain", "validation")["sentences"]
    T = setup.block_size
    return {"tokenizer": tokenizer,
            "train": pack_documents(load_task("pretrain", "train")["sentences"], tokenizer, T),
            "valid": pack_documents(held_out[:setup.valid_docs], tokenizer, T),
            "test": pack_documents(held_out[setup.valid_docs:], tokenizer, T),
            "test_long": pack_documents(held_out[setup.valid_docs:], tokenizer, 2 * T)}


def train_arm(options: dict, lr: float, seed: int, data: dict, setup: ModernSetup = ModernSetup(),
              progress: bool = False) -> tuple[GPT, float]:
    """One arm trained from seed ``seed``: the model (eval mode) and its CPU seconds per step."""
    torch.manual_seed(seed)
    model = build_arm(options, data["tokenizer"].vocab_size, setup)
    loader = DataLoader(TensorDataset({"input_ids": data["train"]}), batch_size=setup.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    config = TrainConfig(max_steps=setup.steps, lr=lr, warmup_ratio=setup.warmup_ratio,
                         decay_ratio=setup.decay_ratio, seed=seed, progress=progress, device="cpu")
    start = time.perf_counter()
    train(model, loader, lm_step, config)
    return model.eval(), (time.perf_counter() - start) / setup.steps


@torch.no_grad()
def position_losses(model: GPT, blocks: Tensor, batch_size: int = 64) -> Tensor:
    """The mean next-token loss at each position ``(T - 1,)`` of ``blocks (N, T)``: position t predicts token t + 1."""
    total = torch.zeros(blocks.shape[1] - 1)
    with eval_mode(model):
        for start in range(0, len(blocks), batch_size):
            ids = blocks[start:start + batch_size]  # (B, T)
            logits = model(ids).logits[:, :-1]  # (B, T - 1, V)
            total += F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none").sum(0)  # (T - 1,)
    return total / len(blocks)


def kv_cache_bytes(model: GPT, batch_size: int, length: int) -> int:
    """Bytes of keys and values the cache holds after ``length`` tokens of ``batch_size`` sequences."""
    caches = [{} for _ in model.decoder.layers]
    with torch.no_grad(), eval_mode(model):
        model(torch.zeros(batch_size, length, dtype=torch.long), caches=caches)
    return sum(t.numel() * t.element_size() for cache in caches for t in cache.values())


def generation_speed(model: GPT, batch_size: int, new_tokens: int, repeats: int = 3) -> float:
    """New tokens per second of cached greedy generation from one-token prompts (the best of ``repeats``)."""
    prompt = torch.zeros(batch_size, 1, dtype=torch.long)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        generate(model, prompt, new_tokens, temperature=0)
        best = min(best, time.perf_counter() - start)
    return batch_size * new_tokens / best


def measure(model: GPT, data: dict, setup: ModernSetup = ModernSetup(), seed: int = 0) -> dict:
    """Held-out perplexity at T (``valid``, ``test``) and beyond it, and the grammatical share of samples."""
    T = setup.block_size
    losses = position_losses(model, data["test_long"])  # (2T - 1,)
    texts = sample_texts(model, data["tokenizer"], setup.samples, max_new_tokens=T - 1, seed=seed)
    return {"valid_perplexity": evaluate_lm(model, data["valid"])["perplexity"],
            "perplexity": evaluate_lm(model, data["test"])["perplexity"],
            "perplexity_within_T": math.exp(losses[:T - 1].mean()),  # the first T - 1 predictions of 2T blocks
            "perplexity_beyond_T": math.exp(losses[T - 1:].mean()),  # predictions made at positions T .. 2T - 2
            "grammatical": grammatical_share(texts)[0]}


def run_arm(name: str, lr: float, seed: int, data: dict, setup: ModernSetup = ModernSetup()) -> dict:
    """Train arm ``name`` and measure it (rounded): the numbers one seed of the sweep records."""
    model, seconds = train_arm(ARMS[name], lr, seed, data, setup)
    result = {**measure(model, data, setup, seed), "seconds_per_step": seconds,
              "tokens_per_second": generation_speed(model, 32, setup.block_size - 1)}
    return {k: round(v, 4) for k, v in result.items()}


def tune_lr(name: str, data: dict, setup: ModernSetup) -> tuple[float, dict]:
    """Seed 0 over the lr grid, on validation perplexity, extended by ×3 steps while an edge wins."""
    grid = {lr: run_arm(name, lr, 0, data, setup) for lr in setup.lrs}
    while True:
        best = min(grid, key=lambda lr: grid[lr]["valid_perplexity"])
        edge = min(grid) / 3 if best == min(grid) else max(grid) * 3 if best == max(grid) else None
        if edge is None or len(grid) == 1 or len(grid) >= 7:  # (7: a runaway grid is reported as it is)
            return best, grid
        grid[edge] = run_arm(name, edge, 0, data, setup)
        print(f"  {name}: the best lr {best:g} was at the edge of the grid, tried {edge:g}", flush=True)


def arm_summary(name: str, data: dict, setup: ModernSetup, seeds: list[int]) -> dict:
    """An arm's tuned lr, its grid, every seed's numbers and their mean ± sd, its size and KV cache."""
    lr, grid = tune_lr(name, data, setup)
    runs = {str(seed): grid[lr] if seed == 0 else run_arm(name, lr, seed, data, setup) for seed in seeds}
    config = arm_config(ARMS[name], data["tokenizer"].vocab_size, setup)
    model = GPT(config)
    keys = ("perplexity", "perplexity_within_T", "perplexity_beyond_T", "grammatical", "seconds_per_step",
            "tokens_per_second")
    return {"options": ARMS[name], "intermediate_size": config.intermediate_size,
            "decoder_parameters": count_parameters(model.decoder),
            "position_parameters": count_parameters(model.wpe) if model.wpe is not None else 0,
            "kv_cache_bytes": kv_cache_bytes(model, 1, 2 * setup.block_size), "lr": lr,
            "lr_grid": {f"{k:g}": v["valid_perplexity"] for k, v in sorted(grid.items())},
            **{key: summary([r[key] for r in runs.values()]) for key in keys}, "seeds": runs}


def main(argv: list[str] | None = None) -> None:
    """Run the arms (default: all) and write each into the result file as soon as its seeds are done
    (the file's other arms are kept, so the sweep can be run an arm at a time)."""
    parser = argparse.ArgumentParser(prog="python -m mlstep.experiments modern", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--quick", action="store_true", help="two arms, one seed, 20 steps, one lr (smoke run)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    set_threads()
    setup = replace(ModernSetup(), steps=20, lrs=(3e-3,), samples=4) if args.quick else ModernSetup()
    names = ["GPT-2 block", "Llama block"] if args.quick else args.arms
    seeds = [0] if args.quick else [0, 1, 2]
    data = load_data(setup)
    done = json.loads(args.out.read_text())["arms"] if args.out.exists() and not args.quick else {}
    for name in names:
        start = time.perf_counter()
        done[name] = {**arm_summary(name, data, setup, seeds), "minutes": round((time.perf_counter() - start) / 60, 1)}
        a = done[name]
        print(f"{name:>20} F={a['intermediate_size']} lr {a['lr']:g}: perplexity {a['perplexity']['mean']:.3f} "
              f"± {a['perplexity']['sd']:.3f}, beyond T {a['perplexity_beyond_T']['mean']:.2f}, grammatical "
              f"{a['grammatical']['mean']:.3f} ({a['minutes']:.1f} min)", flush=True)
        arms = {n: done[n] for n in [*ARMS, *done] if n in done}  # in the order of ARMS
        write_results(args.out.name, {"command": "python -m mlstep.experiments modern", "setup": asdict(setup),
                                      "seeds": seeds, "arms": arms,
                                      "minutes": round(sum(a.get("minutes", 0) for a in arms.values()), 1),
                                      "torch": torch.__version__, "threads": torch.get_num_threads()}, args.out)


if __name__ == "__main__":
    main()
