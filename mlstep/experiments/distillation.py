"""Chapter 07's multi-seed measurements, written to chapters/results/07_distillation.json.

    python -m mlstep.experiments distillation          # ≈ 10 CPU-minutes on one thread

The teacher is chapter 07's (the course model fine-tuned on 500 labels, seed 0). Then, with 3 seeds
each (the student's initialisation and batches):

1. the temperature / λ sweep for the randomly initialised small student on labeled + transfer
   sentences, 1,200 steps (as in the main runs); the best mean accuracy picks T and λ;
2. every student of the chapter with that T and λ, including the two controls of the soft-target
   claim: hard teacher labels on the same transfer set, and soft targets on the labeled set only.

Accuracy is reported on seen and unseen polar words separately. The chapter reruns seed 0 live.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mlstep.bert import BertConfig
from mlstep.data import load_task
from mlstep.distill import (
    distillation_step_fn,
    init_embeddings_by_projection,
    init_student_from_teacher,
    student_config,
)
from mlstep.experiments.results import summary, write_results
from mlstep.finetune import BertForSequenceClassification
from mlstep.tasks.course import load_course_model
from mlstep.tasks.labeled import (
    TensorDataset,
    concat_datasets,
    encode_classification,
    evaluate_classifier,
    finetune_config,
    fit,
    predict,
)
from mlstep.tools.runtime import set_threads

SEEDS = (0, 1, 2)
STEPS = 1200
TEMPERATURES, ALPHAS = (1.0, 2.0, 4.0, 8.0), (0.5, 0.9, 1.0)


def train_teacher(pretrained: nn.Module, labeled: TensorDataset) -> BertForSequenceClassification:
    """Chapter 07's teacher: the course model fine-tuned on ``labeled`` (seed 0), in eval mode."""
    torch.manual_seed(0)
    teacher = BertForSequenceClassification.from_pretrained(pretrained, 2)
    fit(teacher, labeled, finetune_config(300, 1e-3))
    teacher.eval()
    return teacher


def transfer_sentences(tokenizer) -> TensorDataset:
    """The transfer set: 2,000 unlabeled sentences with " was " from the pretraining corpus."""
    documents = load_task("pretrain", "train")["sentences"]
    reviews = [s for doc in documents[:4000] for s in doc if " was " in s][:2000]
    return encode_classification([{"text": s, "label": -100} for s in reviews], tokenizer)


def small_config(pretrained: nn.Module, tokenizer) -> BertConfig:
    """The small student: one pre-LN layer of width 32, no dropout."""
    return BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_layers=1, num_heads=2,
                      intermediate_size=128, max_position=pretrained.config.max_position, pre_norm=True,
                      dropout=0.0)


@dataclass
class Students:
    """What every student run shares: the course model, the teacher, the small shape, the test sets."""
    pretrained: nn.Module
    teacher: BertForSequenceClassification
    small: BertConfig
    test_seen: TensorDataset
    test_unseen: TensorDataset

    def new(self, seed: int, kind: str = "small") -> BertForSequenceClassification:
        """A fresh student: "small" (random), "from teacher" (small, embeddings projected from the
        teacher's) or "wide" (the teacher's width, one layer, initialised from the teacher)."""
        torch.manual_seed(seed)
        if kind == "wide":
            model = BertForSequenceClassification(student_config(self.pretrained.config, num_layers=1), 2,
                                                  pooling="mean")
            init_student_from_teacher(model, self.teacher)
            return model
        model = BertForSequenceClassification(self.small, 2, pooling="mean")
        if kind == "from teacher":
            init_embeddings_by_projection(model, self.teacher)
        return model

    def accuracy(self, model: nn.Module) -> dict[str, float]:
        """Accuracy on seen and on unseen polar words."""
        return {"seen": evaluate_classifier(model, self.test_seen),
                "unseen": evaluate_classifier(model, self.test_unseen)}

    def run(self, model: nn.Module, data: TensorDataset, seed: int, step_fn=None) -> dict[str, float]:
        """Train ``model`` on ``data`` for :data:`STEPS` steps (hard labels unless ``step_fn``)."""
        fit(model, data, finetune_config(STEPS, 3e-3, seed=seed), batch_size=64,
            **({"step_fn": step_fn} if step_fn else {}))
        model.eval()
        return self.accuracy(model)


def temperature_sweep(students: Students, data: TensorDataset) -> dict[str, dict]:
    """The random small student's mean seen/unseen accuracy for every temperature and λ."""
    sweep = {}
    for T, alpha in itertools.product(TEMPERATURES, ALPHAS):
        soft = distillation_step_fn(students.teacher, temperature=T, alpha=alpha)
        scores = []
        for seed in SEEDS:
            r = students.run(students.new(seed), data, seed, soft)
            scores.append((r["seen"] + r["unseen"]) / 2)
        sweep[f"T={T:g}, alpha={alpha:g}"] = {"temperature": T, "alpha": alpha, **summary(scores)}
        print("sweep", T, alpha, sweep[f"T={T:g}, alpha={alpha:g}"], flush=True)
    return sweep


def compare_students(students: Students, arms: dict[str, tuple]) -> dict[str, dict]:
    """Each arm ``name: (kind, data, step_fn)`` over :data:`SEEDS`: seen and unseen accuracy."""
    out = {}
    for name, (kind, data, step_fn) in arms.items():
        results = [students.run(students.new(seed, kind), data, seed, step_fn) for seed in SEEDS]
        out[name] = {key: summary([r[key] for r in results]) for key in ("seen", "unseen")}
        print(name, out[name], flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Run the sweep (no options) and write ``chapters/results/07_distillation.json``."""
    set_threads()
    pretrained, tokenizer, _ = load_course_model()

    def sentiment(split):
        return encode_classification(load_task("sentiment", split), tokenizer)

    labeled, test_seen, test_unseen = sentiment("train").subset(500), sentiment("test"), sentiment("test_unseen")
    teacher = train_teacher(pretrained, labeled)
    unlabeled = transfer_sentences(tokenizer)
    teacher_labeled = TensorDataset({**unlabeled.tensors, "labels": predict(teacher, unlabeled).argmax(-1)})
    labeled_and_transfer = concat_datasets(labeled, unlabeled)
    labeled_and_teacher_labels = concat_datasets(labeled, teacher_labeled)
    students = Students(pretrained, teacher, small_config(pretrained, tokenizer), test_seen, test_unseen)

    sweep = temperature_sweep(students, labeled_and_transfer)
    best = max(sweep.values(), key=lambda r: r["mean"])
    soft = distillation_step_fn(teacher, temperature=best["temperature"], alpha=best["alpha"])
    arms = {
        "(a) hard labels": ("small", labeled, None),
        "(a') hard teacher labels, + transfer": ("small", labeled_and_teacher_labels, None),
        "(b') soft targets, labeled only": ("small", labeled, soft),
        "(b) soft targets, + transfer": ("small", labeled_and_transfer, soft),
        "(c) from teacher, hard labels": ("from teacher", labeled, None),
        "(c) from teacher, soft, + transfer": ("from teacher", labeled_and_transfer, soft),
        "DistilBERT-style (d=64), soft, + transfer": ("wide", labeled_and_transfer, soft),
    }
    compared = compare_students(students, arms)
    result = {"command": "python -m mlstep.experiments distillation", "seeds": list(SEEDS), "steps": STEPS,
              "teacher": {key: round(acc, 4) for key, acc in students.accuracy(teacher).items()},
              "sweep": sweep, "best": {"temperature": best["temperature"], "alpha": best["alpha"]},
              "students": compared}
    write_results("07_distillation.json", result)
