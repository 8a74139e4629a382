"""Chapter 08's fine-tuning comparisons over seeds, with every arm's learning rate (and, for
generation, its number of steps) chosen on validation data: the result file the chapter plots.

1. Sentiment classification, 500 labels, 300 steps of 32 (chapter 06's budget): GPT (last-token
   head) pretrained vs from scratch, and chapter 06's BERT (pretrained, [CLS] head) — each at the
   learning rate with the best mean validation accuracy.
2. Conditional generation: write a document's conclusion from its opening (1,000 training pairs),
   scored with corpus BLEU: GPT pretrained vs from scratch, each at its best (lr, steps) on
   validation BLEU; plus the pretrained model without fine-tuning (zero-shot).

    python -m mlstep.experiments gpt-finetune            # about 11 minutes on one CPU thread
    python -m mlstep.experiments gpt-finetune --quick    # a smoke run (one seed, tiny grid)

writes ``chapters/results/08_gpt_finetune.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from mlstep.data import load_task
from mlstep.experiments.results import results_path, summary
from mlstep.finetune import BertForSequenceClassification
from mlstep.gpt import GPT, GPTForSequenceClassification, lm_step
from mlstep.metrics import bleu
from mlstep.tasks.causal_lm import complete, conclusion_pairs, encode_prompted
from mlstep.tasks.course import load_course_model
from mlstep.tasks.labeled import encode_classification, evaluate_classifier, finetune_config, fit
from mlstep.tools.runtime import set_threads

OUT = results_path("08_gpt_finetune.json")

# The chapter's settings; the grids below are searched for every arm alike.
CLASSIFICATION = {"labels": 500, "steps": 300, "batch_size": 32}
GENERATION = {"train_pairs": 1000, "validation_pairs": 200, "test_pairs": 300, "batch_size": 32, "max_length": 128}


def classification_arms(gpt: GPT, gpt_tok, bert, bert_tok) -> dict:
    """name -> (make_model(seed), data(split))."""
    def data(tok):
        cache = {}

        def get(split):
            if split not in cache:
                cache[split] = encode_classification(load_task("sentiment", split), tok)
            return cache[split]
        return get

    def seeded(make):
        def build(seed):
            torch.manual_seed(seed)
            return make()
        return build

    gpt_data, bert_data = data(gpt_tok), data(bert_tok)
    return {
        "GPT pretrained": (seeded(lambda: GPTForSequenceClassification.from_pretrained(gpt, 2)), gpt_data),
        "GPT from scratch": (seeded(lambda: GPTForSequenceClassification(gpt.config, 2)), gpt_data),
        "BERT pretrained (chapter 06)": (seeded(lambda: BertForSequenceClassification.from_pretrained(bert, 2)),
                                         bert_data),
    }


def run_classification(gpt, gpt_tok, bert, bert_tok, lrs, seeds) -> dict:
    results = {}
    for name, (build, data) in classification_arms(gpt, gpt_tok, bert, bert_tok).items():
        train = data("train").subset(CLASSIFICATION["labels"])
        grid = {}
        for lr in lrs:
            runs = []
            for seed in seeds:
                model = build(seed)
                fit(model, train, finetune_config(CLASSIFICATION["steps"], lr, seed=seed), batch_size=CLASSIFICATION["batch_size"])
                runs.append({split: evaluate_classifier(model, data(split))
                             for split in ("validation", "test", "test_unseen")})
            grid[lr] = runs
            print(f"  {name} lr {lr:g}: " + ", ".join(
                f"{s} {statistics.mean(r[s] for r in runs):.3f}" for s in ("validation", "test", "test_unseen")),
                flush=True)
        best = max(grid, key=lambda lr: statistics.mean(r["validation"] for r in grid[lr]))
        results[name] = {"lr": best, **{s: summary([r[s] for r in grid[best]]) for s in ("test", "test_unseen")},
                         "grid": {str(lr): runs for lr, runs in grid.items()}}
    return results


def run_generation(gpt, tok, grid_lrs, grid_steps, seeds) -> dict:
    cfg = GENERATION
    train_pairs = conclusion_pairs(load_task("pretrain", "train")["sentences"])[: cfg["train_pairs"]]
    held_out = conclusion_pairs(load_task("pretrain", "validation")["sentences"])
    validation = held_out[: cfg["validation_pairs"]]
    test = held_out[cfg["validation_pairs"]: cfg["validation_pairs"] + cfg["test_pairs"]]
    data = encode_prompted(train_pairs, tok, cfg["max_length"])

    def score(model, pairs):
        return bleu(complete(model, tok, [p for p, _ in pairs]), [[c] for _, c in pairs])

    results = {"zero-shot (pretrained, not fine-tuned)": {"validation": score(gpt, validation), "test": score(gpt, test)},
               "train_examples": len(data)}
    for name, pretrained in (("GPT pretrained", True), ("GPT from scratch", False)):
        grid = {}
        for lr in grid_lrs:
            for steps in grid_steps:
                runs = []
                for seed in seeds:
                    torch.manual_seed(seed)
                    model = GPT(gpt.config)
                    if pretrained:
                        model.load_state_dict(gpt.state_dict())
                    start = time.perf_counter()
                    fit(model, data, finetune_config(steps, lr, seed=seed), batch_size=cfg["batch_size"], step_fn=lm_step)
                    runs.append({"validation": score(model, validation), "test": score(model, test),
                                 "seconds": time.perf_counter() - start})
                grid[(lr, steps)] = runs
                print(f"  {name} lr {lr:g} steps {steps}: validation BLEU "
                      f"{statistics.mean(r['validation'] for r in runs):.1f}, test "
                      f"{statistics.mean(r['test'] for r in runs):.1f}", flush=True)
        best = max(grid, key=lambda k: statistics.mean(r["validation"] for r in grid[k]))
        results[name] = {"lr": best[0], "steps": best[1], "test": summary([r["test"] for r in grid[best]]),
                         "grid": {f"{lr:g}/{steps}": runs for (lr, steps), runs in grid.items()}}
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlstep.experiments gpt-finetune",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one seed, one setting per arm (smoke run)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    set_threads()
    seeds = [0] if args.quick else [0, 1, 2]
    gpt, gpt_tok, gpt_meta = load_course_model("gpt")
    bert, bert_tok, _ = load_course_model()
    start = time.perf_counter()
    print("sentiment classification", flush=True)
    classification = run_classification(gpt, gpt_tok, bert, bert_tok, [1e-3] if args.quick else [3e-4, 1e-3, 3e-3],
                                        seeds)
    print("conditional generation (conclusions)", flush=True)
    generation = run_generation(gpt, gpt_tok, [3e-3] if args.quick else [1e-3, 3e-3],
                                [20] if args.quick else [150, 300], seeds)
    out = {"seeds": seeds, "classification_setup": CLASSIFICATION, "generation_setup": GENERATION,
           "classification": classification, "generation": generation,
           "gpt_recipe": gpt_meta["recipe"], "minutes": (time.perf_counter() - start) / 60,
           "torch": torch.__version__, "threads": torch.get_num_threads()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out} ({out['minutes']:.1f} min)")

