"""Chapter 06's experiments: fine-tuning strategies as recipes, so that the chapter and its
multi-seed sweep run the same code, and the sweep itself.

Each strategy is a few lines of :mod:`mlstep.finetune` and :mod:`mlstep.lora` (chapter 06 explains
them one by one); :func:`finetune_with` builds the model for one of them, trains it with
:func:`mlstep.tasks.labeled.fit` and returns it. The sweep, written to
``chapters/results/06_fine_tuning.json``::

    python -m mlstep.experiments finetuning            # ≈ 30 CPU-minutes on one thread

1. Sentiment with 100 labels: every strategy's learning rate and steps are tuned on the validation
   split (the mean over seeds 0-2), then each strategy runs with 5 seeds (another 100 labels and another
   initialisation each); accuracy on seen words, and on unseen words with and without negation.
2. Entity tagging with 30 labeled sentences: a per-token softmax vs a CRF on the same encoder.
3. NLI: premise + hypothesis vs the hypothesis alone (the shortcut), pretrained and from scratch.

The chapter plots these numbers and reruns seed 0 of each live, asserting it lands in the spread.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

import torch
from torch import nn

from mlstep.crf import BertCRFTagger
from mlstep.data import TAGS, load_task
from mlstep.experiments.results import summary, write_results
from mlstep.finetune import (
    BertForSequenceClassification,
    BertForTokenClassification,
    GradualUnfreezer,
    classification_step,
    freeze_encoder,
    layerwise_lr_groups,
)
from mlstep.lora import apply_lora
from mlstep.tasks.course import load_course_model
from mlstep.tasks.labeled import (
    TensorDataset,
    encode_classification,
    encode_tagging,
    evaluate_classifier,
    evaluate_tagger,
    finetune_config,
    fit,
)
from mlstep.tools.runtime import set_threads
from mlstep.transformer import find_backbone

__all__ = ["STRATEGIES", "finetune_with", "sample_rows", "main"]

STRATEGIES = ("from scratch", "linear probe", "full fine-tuning", "gradual unfreezing",
              "discriminative lrs", "LoRA (r = 4)")


def finetune_with(strategy: str, pretrained: nn.Module, data: TensorDataset, steps: int, lr: float,
                  seed: int = 0, num_labels: int = 2) -> BertForSequenceClassification:
    """A sequence classifier trained on ``data`` with one of :data:`STRATEGIES`.

    "from scratch" is the same architecture with random weights; every other strategy starts from
    a copy of ``pretrained``'s encoder. ``seed`` fixes the head's initialisation and the batches.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    torch.manual_seed(seed)
    if strategy == "from scratch":
        model = BertForSequenceClassification(find_backbone(pretrained).model.config, num_labels)
    else:
        model = BertForSequenceClassification.from_pretrained(pretrained, num_labels)
    extra = {}
    if strategy == "linear probe":
        freeze_encoder(model)  # only the final linear layer trains
    elif strategy == "gradual unfreezing":  # head first, then one more layer from the top, 4 stages
        extra["step_fn"] = GradualUnfreezer(model, steps_per_stage=max(1, steps // 4)).wrap(classification_step)
    elif strategy == "discriminative lrs":  # layer l of L at lr · 0.5^(L - l)
        extra["param_groups"] = layerwise_lr_groups(model, base_lr=lr, decay=0.5)
    elif strategy == "LoRA (r = 4)":
        apply_lora(model, rank=4, alpha=8)  # rank-4 updates of W^Q and W^V; the rest frozen
    fit(model, data, finetune_config(steps, lr, seed=seed), **extra)
    return model


def sample_rows(data: TensorDataset, n: int, seed: int) -> TensorDataset:
    """``n`` rows of ``data`` drawn without replacement (a label budget; another seed, other rows)."""
    rows = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    return TensorDataset({k: v[rows] for k, v in data.tensors.items()},
                         {k: [v[int(i)] for i in rows] for k, v in data.extra.items()})


# --- the sweep (python -m mlstep.experiments finetuning) ------------------------------------------

SEEDS = (0, 1, 2, 3, 4)
TUNING_SEEDS = (0, 1, 2)  # a setting is chosen on its mean validation accuracy over these seeds
LABELS, TAG_LABELS = 100, 30
LRS, STEPS = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1), (100, 300, 1000)
PROBE_LRS = (*LRS, 3e-1, 1.0)  # only a linear head trains: it takes (and needs) larger steps


def negated_split(split: str, tokenizer) -> dict[str, TensorDataset]:
    """A sentiment split, and its sentences with and without "not"."""
    rows = load_task("sentiment", split)
    data = encode_classification(rows, tokenizer)
    negated = torch.tensor([" not " in t for t in rows["text"]])
    part = {name: TensorDataset({k: v[keep] for k, v in data.tensors.items()})
            for name, keep in (("negated", negated), ("plain", ~negated))}
    return {"all": data, **part}



def tune(strategy: str, pretrained, train: TensorDataset, valid: TensorDataset) -> dict[str, tuple]:
    """``{"S steps, lr L": (mean validation accuracy over TUNING_SEEDS, S, L)}`` for every grid point:
    each seed draws its own 100 labels and initialisation, so the choice does not ride on one draw."""
    tuning = {}
    for steps, lr in itertools.product(STEPS, PROBE_LRS if strategy == "linear probe" else LRS):
        accuracies = [evaluate_classifier(finetune_with(strategy, pretrained, sample_rows(train, LABELS, seed),
                                                        steps, lr, seed=seed), valid) for seed in TUNING_SEEDS]
        tuning[f"{steps} steps, lr {lr:g}"] = (sum(accuracies) / len(accuracies), steps, lr)
    return tuning


def strategies(pretrained, tokenizer) -> dict:
    train = encode_classification(load_task("sentiment", "train"), tokenizer)
    valid = encode_classification(load_task("sentiment", "validation"), tokenizer)
    seen, unseen = negated_split("test", tokenizer), negated_split("test_unseen", tokenizer)
    out = {}
    for strategy in STRATEGIES:
        tuning = tune(strategy, pretrained, train, valid)
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
                         "grid": {k: round(v[0], 4) for k, v in tuning.items()},
                         **{k: summary(v) for k, v in runs.items()}}
        print(strategy, {k: (v["mean"], v["sd"]) for k, v in out[strategy].items() if isinstance(v, dict) and "mean" in v},
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
            fit(model, data, finetune_config(150, 1e-3, seed=seed), param_groups=groups)
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
                fit(model, train, finetune_config(400, 1e-3, seed=seed))
                accs.append(evaluate_classifier(model, test))
            out[f"{inputs}, {init}"] = summary(accs)
            print("nli", inputs, init, out[f"{inputs}, {init}"], flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Run the sweep (no options) and write ``chapters/results/06_fine_tuning.json``."""
    set_threads()
    pretrained, tokenizer, _ = load_course_model()
    result = {"command": "python -m mlstep.experiments finetuning", "seeds": list(SEEDS),
              "sentiment": {"labels": LABELS, "lrs": list(LRS), "probe_lrs": list(PROBE_LRS), "steps": list(STEPS),
                            "tuning_seeds": list(TUNING_SEEDS),
                            "strategies": strategies(pretrained, tokenizer)},
              "tagging": tagging(pretrained, tokenizer), "nli": nli(pretrained, tokenizer)}
    write_results("06_fine_tuning.json", result)

