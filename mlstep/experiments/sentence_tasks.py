"""Chapter 05's controlled NSP-vs-SOP comparison, written to chapters/results/05_sentence_tasks.json.

    python -m mlstep.experiments sentence-tasks        # ≈ 25 CPU-minutes on one thread

Every model is scored on the same held-out NSP pairs and SOP pairs (2,000 of each):

- the course model (MLM + NSP, 4,500 steps, seed 0; ``data/pretrained/``), then 600 more steps of
  MLM + NSP (the control: as much extra training, same task) or of MLM + SOP, 3 seeds each;
- MLM + NSP and MLM + SOP trained from scratch with the course recipe (4,500 steps), 3 seeds each
  (seed 0 of MLM + NSP is the course model itself).

The chapter reruns seed 0 of "then 600 steps of MLM + SOP" live and checks it lands in the spread.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader

from mlstep.data import load_task
from mlstep.experiments.results import summary, write_results
from mlstep.tasks.course import load_course_model
from mlstep.tasks.masked_lm import (
    MaskingCollator,
    PairDataset,
    PretrainRecipe,
    evaluate_pretraining,
    fixed_batches,
    make_pairs,
    pretrain_on_corpus,
    pretraining_step,
)
from mlstep.tools.runtime import set_threads
from mlstep.train import TrainConfig, train

SEEDS = (0, 1, 2)
CONTINUE_STEPS = 600


def held_out_batches(tokenizer, objective: str) -> list[dict]:
    """The chapter's held-out pairs for one sentence task, with fixed masks."""
    pairs = make_pairs(load_task("pretrain", "validation")["sentences"], objective, seed=1)
    return fixed_batches(PairDataset(pairs, tokenizer, 64), MaskingCollator(tokenizer), limit=2000, seed=0)


def continue_training(model, tokenizer, objective: str, seed: int) -> None:
    """600 more steps of MLM + ``objective`` at lr 1e-3 (the chapter's continuation)."""
    pairs = make_pairs(load_task("pretrain", "train")["sentences"], objective, seed=seed)
    loader = DataLoader(PairDataset(pairs, tokenizer, 64), batch_size=64, shuffle=True,
                        collate_fn=MaskingCollator(tokenizer), generator=torch.Generator().manual_seed(seed))
    train(model.train(), loader, pretraining_step,
          TrainConfig(max_steps=CONTINUE_STEPS, lr=1e-3, warmup_ratio=0.1, seed=seed, device="cpu", progress=False))
    model.eval()



def main(argv: Sequence[str] | None = None) -> None:
    set_threads()
    course, tokenizer, _ = load_course_model()
    batches = {"NSP": held_out_batches(tokenizer, "mlm+nsp"), "SOP": held_out_batches(tokenizer, "mlm+sop")}

    def score(model) -> dict[str, float]:
        return {task: evaluate_pretraining(model, b)["nsp_accuracy"] for task, b in batches.items()}

    runs: dict[str, list[dict]] = {"course model (MLM + NSP, 4,500 steps)": [score(course)]}
    for objective, name in (("mlm+nsp", "then 600 steps of MLM + NSP"), ("mlm+sop", "then 600 steps of MLM + SOP")):
        runs[name] = []
        for seed in SEEDS:
            model, _, _ = load_course_model()
            continue_training(model, tokenizer, objective, seed)
            runs[name].append(score(model))
            print(name, seed, runs[name][-1], flush=True)
    for objective, name in (("mlm+nsp", "MLM + NSP from scratch"), ("mlm+sop", "MLM + SOP from scratch")):
        runs[name] = [score(course)] if objective == "mlm+nsp" else []
        for seed in SEEDS[len(runs[name]):]:
            model, _, _, _ = pretrain_on_corpus(PretrainRecipe(objective=objective, seed=seed), tokenizer,
                                                progress=False)
            runs[name].append(score(model))
            print(name, seed, runs[name][-1], flush=True)
    result = {"command": "python -m mlstep.experiments sentence-tasks", "seeds": list(SEEDS),
              "held_out_pairs": 2000,
              "runs": {name: {task: summary([r[task] for r in rs]) for task in ("NSP", "SOP")}
                       for name, rs in runs.items()}}
    write_results("05_sentence_tasks.json", result)

