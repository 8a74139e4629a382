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

import torch

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



def main(argv: Sequence[str] | None = None) -> None:
    set_threads()
    pretrained, tokenizer, _ = load_course_model()

    def sentiment(split):
        return encode_classification(load_task("sentiment", split), tokenizer)

    labeled, test_seen, test_unseen = sentiment("train").subset(500), sentiment("test"), sentiment("test_unseen")
    torch.manual_seed(0)
    teacher = BertForSequenceClassification.from_pretrained(pretrained, 2)
    fit(teacher, labeled, finetune_config(300, 1e-3))
    teacher.eval()

    documents = load_task("pretrain", "train")["sentences"]
    reviews = [s for doc in documents[:4000] for s in doc if " was " in s][:2000]
    unlabeled = encode_classification([{"text": s, "label": -100} for s in reviews], tokenizer)
    teacher_labeled = TensorDataset({**unlabeled.tensors, "labels": predict(teacher, unlabeled).argmax(-1)})
    labeled_and_transfer = concat_datasets(labeled, unlabeled)
    labeled_and_teacher_labels = concat_datasets(labeled, teacher_labeled)
    small = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_layers=1, num_heads=2,
                       intermediate_size=128, max_position=pretrained.config.max_position, pre_norm=True, dropout=0.0)

    def student(seed, kind="small"):
        torch.manual_seed(seed)
        if kind == "wide":
            model = BertForSequenceClassification(student_config(pretrained.config, num_layers=1), 2, pooling="mean")
            init_student_from_teacher(model, teacher)
            return model
        model = BertForSequenceClassification(small, 2, pooling="mean")
        if kind == "from teacher":
            init_embeddings_by_projection(model, teacher)
        return model

    def run(model, data, seed, step_fn=None) -> dict[str, float]:
        fit(model, data, finetune_config(STEPS, 3e-3, seed=seed), batch_size=64, **({"step_fn": step_fn} if step_fn else {}))
        model.eval()
        return {"seen": evaluate_classifier(model, test_seen), "unseen": evaluate_classifier(model, test_unseen)}

    def both(r):
        return (r["seen"] + r["unseen"]) / 2

    sweep = {}
    for T, alpha in itertools.product(TEMPERATURES, ALPHAS):
        soft = distillation_step_fn(teacher, temperature=T, alpha=alpha)
        scores = [both(run(student(seed), labeled_and_transfer, seed, soft)) for seed in SEEDS]
        sweep[f"T={T:g}, alpha={alpha:g}"] = {"temperature": T, "alpha": alpha, **summary(scores)}
        print("sweep", T, alpha, sweep[f"T={T:g}, alpha={alpha:g}"], flush=True)
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
    students = {}
    for name, (kind, data, step_fn) in arms.items():
        results = [run(student(seed, kind), data, seed, step_fn) for seed in SEEDS]
        students[name] = {key: summary([r[key] for r in results]) for key in ("seen", "unseen")}
        print(name, students[name], flush=True)
    result = {"command": "python -m mlstep.experiments distillation", "seeds": list(SEEDS), "steps": STEPS,
              "teacher": {"seen": round(evaluate_classifier(teacher, test_seen), 4),
                          "unseen": round(evaluate_classifier(teacher, test_unseen), 4)},
              "sweep": sweep, "best": {"temperature": best["temperature"], "alpha": best["alpha"]},
              "students": students}
    write_results("07_distillation.json", result)

