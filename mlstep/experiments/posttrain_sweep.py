"""Chapter 11's sweep: every post-training arm's learning rate tuned on validation (seed 0), then
every arm over seeds on the test sets, written to ``chapters/results/11_posttrain.json``::

    python -m mlstep.experiments posttrain                      # about 45 CPU-minutes, 3 seeds
    python -m mlstep.experiments posttrain --seeds 1 2 --tuning chapters/results/11_posttrain.json

The arms (one seed per call of :func:`run_seed`): SFT pretrained / from random weights / loss on
every token / without replay / on fewer examples; the base model zero-shot and one-shot; DPO
against continued SFT on the chosen answers, and DPO at several β; GRPO against rejection
sampling from a lightly tuned start; GRPO on the grammar reward at several β; and the report
card's chain base → SFT → DPO → GRPO.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import time
from collections.abc import Sequence
from pathlib import Path

from mlstep.data.instruct import SFT_FAMILIES, instruction_examples
from mlstep.experiments.posttrain import (
    EVAL,
    OUT,
    SFT,
    answer_reward,
    chat_model,
    chosen_examples,
    few_shot_accuracy,
    load_course_model,
    perplexity_blocks,
    preference_pairs,
    replay_blocks,
    report,
    run_dpo,
    run_grammar_rl,
    run_sft,
    sft_examples,
    test_sets,
    writing_report,
)
from mlstep.experiments.results import write_results
from mlstep.gpt import GPT
from mlstep.posttrain import GRPOConfig, grpo_train, render_chat
from mlstep.tools.runtime import set_threads

GRIDS = {"sft": (3e-3, 1e-2, 3e-2), "dpo": (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3), "more_sft": (1e-4, 3e-4, 1e-3, 3e-3),
         "grpo": (3e-5, 1e-4, 3e-4, 1e-3, 3e-3), "rft": (3e-5, 1e-4, 3e-4, 1e-3, 3e-3)}  # ascending: a tie goes to the smaller
DPO = {"negated_examples": 500, "plain_examples": 500, "steps": 100, "beta": 0.1, "betas": (0.03, 0.3, 1.0)}
GRPO = {"start_examples": 100, "start_steps": 100, "prompts_per_family": 250, "steps": 100,
        "prompts_per_step": 8, "group_size": 8}
GRAMMAR = {"steps": 200, "lr": 3e-4, "betas": (0.0, 0.05, 0.1)}
SCORED = [f"{f}/{p}" for f in SFT_FAMILIES for p in ("train", "heldout")] + ["polarity/negated"]


def score(result: dict[str, float]) -> float:
    """The selection score: mean accuracy over the SFT families (both phrasings) and negated reviews."""
    return sum(result[k] for k in SCORED) / len(SCORED)


class Setup:
    """What every arm of one seed shares: the chat model, its tokenizer, the evaluation sets."""

    def __init__(self, seed: int, split: str = "test"):
        self.seed, self.split = seed, split
        self.model, self.tokenizer = chat_model()
        self.sets = test_sets() if split == "test" else _validation_sets()
        self.blocks, self.replay = perplexity_blocks(self.tokenizer), replay_blocks(self.tokenizer)

    def report(self, model: GPT) -> dict[str, float]:
        out = report(model, self.tokenizer, self.sets, self.blocks)
        return {**out, "score": round(score(out), 4)}

    def sft(self, lr: float, *, pretrained: bool = True, per_family: int = SFT["examples_per_family"],
            steps: int = SFT["steps"], **kwargs) -> GPT:
        model = copy.deepcopy(self.model) if pretrained else chat_model(False, self.seed)[0]
        return run_sft(model, self.tokenizer, sft_examples(per_family, seed=self.seed), steps, lr, seed=self.seed,
                       replay=kwargs.pop("replay", self.replay), replay_per_batch=16, **kwargs)

    def pairs(self, sft: GPT) -> list[dict]:
        """DPO's pairs: the SFT model's own wrong answers on negated reviews, and plain reviews with
        the opposite word as the rejected answer (so that "always flip" is not a solution)."""
        pairs = preference_pairs(sft, self.tokenizer, instruction_examples(
            "polarity", DPO["negated_examples"], "train", negated=True, seed=self.seed))
        plain = instruction_examples("polarity", DPO["plain_examples"], "train", seed=self.seed + 100)
        pairs += [{"messages": e["messages"][:1], "chosen": e["answer"],
                   "rejected": {"good": "bad", "bad": "good"}[e["answer"]]} for e in plain]
        random.Random(self.seed).shuffle(pairs)
        return pairs

    def grpo(self, start: GPT, lr: float, advantage: str, beta: float = 0.0) -> GPT:
        """GRPO (or rejection sampling) from ``start`` on the SFT families' and negated reviews' prompts."""
        n = GRPO["prompts_per_family"]
        examples = [e for f in SFT_FAMILIES for e in instruction_examples(f, n, "train", seed=self.seed + 200)]
        examples += instruction_examples("polarity", n, "train", negated=True, seed=self.seed + 200)
        prompts = [render_chat(e["messages"][:1], self.tokenizer, add_generation_prompt=True)[0].tolist()
                   for e in examples]
        config = GRPOConfig(steps=GRPO["steps"], lr=lr, prompts_per_step=GRPO["prompts_per_step"],
                            group_size=GRPO["group_size"], max_new_tokens=6, beta=beta, advantage=advantage)
        model = copy.deepcopy(start)
        grpo_train(model, prompts, answer_reward(examples, self.tokenizer, config.group_size), config,
                   eos_id=self.tokenizer.token_to_id("<|end|>"), pad_id=self.tokenizer.pad_id, seed=self.seed)
        return model


def _validation_sets() -> dict[str, list[dict]]:
    sets = {f"{f}/{p}": instruction_examples(f, EVAL["examples"], "validation", phrasings=p) for f in SFT_FAMILIES
            for p in ("train", "heldout")}
    sets["polarity/negated"] = instruction_examples("polarity", EVAL["examples"], "validation", negated=True)
    sets["companion"] = instruction_examples("companion", EVAL["examples"], "validation")
    return sets


def light_sft(setup: Setup, lr: float) -> GPT:
    """GRPO's starting policy: SFT on few examples, so that the rewarded families have headroom."""
    return setup.sft(lr, per_family=GRPO["start_examples"], steps=GRPO["start_steps"])


def tune(progress=print) -> dict:
    """Every arm's learning rate, chosen on the validation sets (seed 0): ``{arm: {lr: result}}``."""
    setup = Setup(0, "validation")
    grid: dict[str, dict] = {}
    for arm, pretrained in (("sft", True), ("scratch", False)):
        grid[arm] = {lr: setup.report(setup.sft(lr, pretrained=pretrained)) for lr in GRIDS["sft"]}
        progress(arm, {lr: r["score"] for lr, r in grid[arm].items()})
    sft = setup.sft(best(grid["sft"]))
    pairs = setup.pairs(sft)
    grid["dpo"] = {lr: setup.report(run_dpo(copy.deepcopy(sft), setup.tokenizer, pairs, DPO["steps"], lr, DPO["beta"],
                                            seed=0)) for lr in GRIDS["dpo"]}
    grid["more_sft"] = {lr: setup.report(run_sft(copy.deepcopy(sft), setup.tokenizer, chosen_examples(pairs),
                                                 DPO["steps"], lr)) for lr in GRIDS["more_sft"]}
    progress("dpo", {k: {lr: r["score"] for lr, r in grid[k].items()} for k in ("dpo", "more_sft")})
    start = light_sft(setup, best(grid["sft"]))
    for arm, advantage in (("grpo", "group"), ("rft", "filter")):
        grid[arm] = {lr: setup.report(setup.grpo(start, lr, advantage)) for lr in GRIDS[arm]}
        progress(arm, {lr: r["score"] for lr, r in grid[arm].items()})
    return grid


def best(results: dict) -> float:
    """The learning rate with the best validation score."""
    return max(results, key=lambda lr: results[lr]["score"])


def run_seed(seed: int, lrs: dict[str, float], progress=print) -> dict:
    """Every arm of chapter 11 for one seed, on the test sets, at the tuned learning rates."""
    s = Setup(seed)
    out, sft = sft_arms(s, lrs)
    progress(seed, "sft done")
    dpo = preference_arms(s, sft, lrs, out)
    progress(seed, "dpo done")
    card = rl_arms(s, dpo, lrs, out)
    progress(seed, "grpo done")
    out["writing"] = {name: writing_report(model, s.tokenizer, s.blocks)  # the report card's free writing
                      for name, model in (("base", s.model), ("sft", sft), ("dpo", dpo), ("card_grpo", card))}
    for beta in GRAMMAR["betas"]:
        out[f"grammar_beta_{beta}"] = run_grammar_rl(seed, beta, GRAMMAR["steps"], GRAMMAR["lr"])
    out["grammar_start"] = writing_report(*load_course_model("gpt")[:2], perplexity_blocks(s.tokenizer))
    return out


def sft_arms(s: Setup, lrs: dict[str, float]) -> tuple[dict, GPT]:
    """The base model (template and one-shot) and every SFT arm; returns the results and the SFT model."""
    out = {"base": s.report(s.model)}
    shots = {f: [min(instruction_examples(f, 10, "validation", seed=s.seed), key=lambda e: len(e["context"]))]
             for f in SFT_FAMILIES}  # one solved example, the shortest of ten: a 128-token window holds two stories
    out["few_shot"] = {f: few_shot_accuracy(s.model, s.tokenizer, s.sets[f"{f}/train"], shots[f]) for f in SFT_FAMILIES}
    sft = s.sft(lrs["sft"])
    out["sft"] = s.report(sft)
    out["scratch"] = s.report(s.sft(lrs["scratch"], pretrained=False))
    out["all_tokens"] = s.report(s.sft(lrs["sft"], assistant_only=False))
    out["no_replay"] = s.report(s.sft(lrs["sft"], replay=None))
    for n in (30, 100, 300):
        out[f"examples_{n}"] = s.report(s.sft(lrs["sft"], per_family=n))
    return out, sft


def preference_arms(s: Setup, sft: GPT, lrs: dict[str, float], out: dict) -> GPT:
    """DPO, continued SFT on the chosen answers, DPO at other β (into ``out``); returns the DPO model."""
    pairs = s.pairs(sft)
    dpo = run_dpo(copy.deepcopy(sft), s.tokenizer, pairs, DPO["steps"], lrs["dpo"], DPO["beta"], seed=s.seed)
    out["dpo"] = s.report(dpo)
    out["more_sft"] = s.report(run_sft(copy.deepcopy(sft), s.tokenizer, chosen_examples(pairs), DPO["steps"],
                                       lrs["more_sft"], seed=s.seed))
    for beta in DPO["betas"]:
        out[f"dpo_beta_{beta}"] = s.report(run_dpo(copy.deepcopy(sft), s.tokenizer, pairs, DPO["steps"], lrs["dpo"],
                                                   beta, seed=s.seed))
    return dpo


def rl_arms(s: Setup, dpo: GPT, lrs: dict[str, float], out: dict) -> GPT:
    """GRPO and rejection sampling from the light SFT start, and GRPO after DPO (the report card's,
    returned)."""
    start = light_sft(s, lrs["sft"])
    out["grpo_start"] = s.report(start)
    out["grpo"] = s.report(s.grpo(start, lrs["grpo"], "group"))
    out["rft"] = s.report(s.grpo(start, lrs["rft"], "filter"))
    card = s.grpo(dpo, lrs["grpo"], "group")
    out["card_grpo"] = s.report(card)
    return card


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m mlstep.experiments posttrain [--seeds 0 1 2] [--tuning FILE] [--out FILE]``:
    tune on validation (or reuse the tuning stored in ``--tuning``), run every arm per seed, write
    ``chapters/results/11_posttrain.json``. About 11 CPU-minutes per seed and 11 for the tuning."""
    parser = argparse.ArgumentParser(prog="python -m mlstep.experiments posttrain", description=main.__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tuning", type=Path, help="reuse the tuning of this result file")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    set_threads(1)
    start = time.process_time()
    grid = json.loads(args.tuning.read_text())["tuning"] if args.tuning else \
        {arm: {str(lr): r for lr, r in results.items()} for arm, results in tune().items()}
    lrs = {arm: float(best(results)) for arm, results in grid.items()}
    result = {"settings": {"sft": SFT, "dpo": DPO, "grpo": GRPO, "grammar": GRAMMAR, "eval": EVAL, "grids": GRIDS},
              "tuning": grid, "lrs": lrs, "seeds": {}}
    write_results(OUT.name, result, args.out)  # the tuning, before the seeds
    for seed in args.seeds:
        result["seeds"][str(seed)] = run_seed(seed, lrs)
        result["cpu_minutes"] = round((time.process_time() - start) / 60, 1)
        write_results(OUT.name, result, args.out)
