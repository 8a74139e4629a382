"""Chapter 06's multi-seed measurements, written to chapters/results/06_fine_tuning.json.

    python scripts/sweep_finetuning.py            # ≈ 8 CPU-minutes on one thread

1. Sentiment with 100 labels: every strategy's learning rate and steps are tuned on the validation
   split (seed 0), then each strategy runs with 5 seeds (another 100 labels and another
   initialisation each); accuracy on seen words, and on unseen words with and without negation.
2. Entity tagging with 30 labeled sentences: a per-token softmax vs a CRF on the same encoder.
3. NLI: premise + hypothesis vs the hypothesis alone (the shortcut), pretrained and from scratch.

The chapter plots these numbers and reruns seed 0 of each live, asserting it lands in the spread.
"""

from __future__ import annotations

import itertools
import sys
import time

import torch
from _results import summary, write_results

from mlstep.crf import BertCRFTagger
from mlstep.data import TAGS, load_task
from mlstep.finetune import BertForSequenceClassification, BertForTokenClassification
from mlstep.pretrain import load_course_model
from mlstep.strategies import STRATEGIES, finetune_with, sample_rows
from mlstep.tasks import (
    TensorDataset,
    encode_classification,
    encode_tagging,
    evaluate_classifier,
    evaluate_tagger,
    fit,
)
from mlstep.utils import set_threads

SEEDS = (0, 1, 2, 3, 4)
LABELS, TAG_LABELS = 100, 30
LRS, STEPS = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2), (100, 300, 1000)


def negated_split(split: str, tokenizer) -> dict[str, TensorDataset]:
    """A sentiment split, and its sentences with and without "not"."""
    rows = load_task("sentiment", split)
    data = encode_classification(rows, tokenizer)
    negated = torch.tensor([" not " in t for t in rows["text"]])
    part = {name: TensorDataset({k: v[keep] for k, v in data.tensors.items()})
            for name, keep in (("negated", negated), ("plain", ~negated))}
    return {"all": data, **part}



def strategies(pretrained, tokenizer) -> dict:
    train = encode_classification(load_task("sentiment", "train"), tokenizer)
    valid = encode_classification(load_task("sentiment", "validation"), tokenizer)
    seen, unseen = negated_split("test", tokenizer), negated_split("test_unseen", tokenizer)
    out = {}
    for strategy in STRATEGIES:
        tuning = {}
        for steps, lr in itertools.product(STEPS, LRS):  # seed 0's labels; chosen on validation
            model = finetune_with(strategy, pretrained, sample_rows(train, LABELS, 0), steps, lr, seed=0)
            tuning[f"{steps} steps, lr {lr:g}"] = (evaluate_classifier(model, valid), steps, lr)
        best = max(tuning.values())
        _, steps, lr = best
        runs = {key: [] for key in ("seen", "unseen", "unseen plain", "unseen negated", "seconds")}
        for seed in SEEDS:
            start = time.process_time()
            model = finetune_with(strategy, pretrained, sample_rows(train, LABELS, seed), steps, lr, seed=seed)
            runs["seconds"].append(time.process_time() - start)
            runs["seen"].append(evaluate_classifier(model, seen["all"]))
            runs["unseen"].append(evaluate_classifier(model, unseen["all"]))
            runs["unseen plain"].append(evaluate_classifier(model, unseen["plain"]))
            runs["unseen negated"].append(evaluate_classifier(model, unseen["negated"]))
        out[strategy] = {"steps": steps, "lr": lr, "validation": round(best[0], 4),
                         **{k: summary(v) for k, v in runs.items()}}
        print(strategy, {k: (v["mean"], v["sd"]) for k, v in out[strategy].items() if isinstance(v, dict)},
              f"(tuned: {steps} steps, lr {lr:g})", flush=True)
    return out


def tagging(pretrained, tokenizer) -> dict:
    train = encode_tagging(load_task("tagging", "train"), tokenizer, TAGS)
    unseen = encode_tagging(load_task("tagging", "test_unseen"), tokenizer, TAGS)
    f1 = {"softmax": [], "CRF": []}
    for seed in SEEDS:
        data = sample_rows(train, TAG_LABELS, seed)
        for name, cls in (("softmax", BertForTokenClassification), ("CRF", BertCRFTagger)):
            torch.manual_seed(seed)
            model = cls.from_pretrained(pretrained, len(TAGS))
            groups = [{"params": model.crf.parameters(), "lr": 5e-2, "weight_decay": 0.0}] if name == "CRF" else None
            fit(model, data, steps=150, lr=1e-3, seed=seed, param_groups=groups)
            f1[name].append(evaluate_tagger(model, unseen, TAGS)["f1"])
    print("tagging", {k: summary(v) for k, v in f1.items()}, flush=True)
    return {"labels": TAG_LABELS, "steps": 150, **{k: summary(v) for k, v in f1.items()}}


def nli(pretrained, tokenizer) -> dict:
    def encode(split, text_key, pair_key):
        return encode_classification(load_task("nli", split), tokenizer, text_key=text_key, pair_key=pair_key)

    out = {}
    for inputs, (text_key, pair_key) in (("premise + hypothesis", ("premise", "hypothesis")),
                                         ("hypothesis only", ("hypothesis", None))):
        train, test = encode("train", text_key, pair_key), encode("test", text_key, pair_key)
        for init in ("from scratch", "pretrained"):
            accs = []
            for seed in SEEDS[:3]:
                torch.manual_seed(seed)
                model = (BertForSequenceClassification.from_pretrained(pretrained, 3) if init == "pretrained"
                         else BertForSequenceClassification(pretrained.config, 3))
                fit(model, train, steps=400, lr=1e-3, seed=seed)
                accs.append(evaluate_classifier(model, test))
            out[f"{inputs}, {init}"] = summary(accs)
            print("nli", inputs, init, out[f"{inputs}, {init}"], flush=True)
    return out


def main() -> int:
    set_threads()
    pretrained, tokenizer, _ = load_course_model()
    result = {"command": "python scripts/sweep_finetuning.py", "seeds": list(SEEDS),
              "sentiment": {"labels": LABELS, "lrs": list(LRS), "steps": list(STEPS),
                            "strategies": strategies(pretrained, tokenizer)},
              "tagging": tagging(pretrained, tokenizer), "nli": nli(pretrained, tokenizer)}
    write_results("06_fine_tuning.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
