"""Chapter 09's compression experiments, one seed per call: pruning (magnitude and structured)
against the dense model, and a pipeline of stages (pretrain → adapt → multi-task fine-tune →
distill → prune) measured after every stage. Each returns a flat dict of numbers."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from mlstep.bert import BertForPreTraining
from mlstep.data import load_task
from mlstep.distill import distillation_step_fn, init_embeddings_by_projection, student_config
from mlstep.finetune import BertForSequenceClassification, classification_step
from mlstep.multistage.common import (
    continue_pretraining,
    course_model,
    finetune,
    labeled,
    mlm_accuracy,
)
from mlstep.multitask import MultiTaskBatches, MultiTaskModel, multitask_step_fn
from mlstep.pipeline import latencies, run_stages, size_on_disk
from mlstep.prune import (
    apply_masks,
    lowest,
    magnitude_masks,
    prunable_weights,
    prune_heads,
    prune_neurons,
    structured_importance,
)
from mlstep.tasks import TensorDataset, concat_datasets, encode_classification, evaluate_classifier
from mlstep.train import TrainConfig, train
from mlstep.utils import count_parameters

__all__ = ["sentiment_classifier", "pruning_experiment", "pipeline_stages", "pipeline_experiment"]


# --- 5. pruning ------------------------------------------------------------------------------------

def sentiment_classifier(seed: int = 0, steps: int = 300) -> BertForSequenceClassification:
    """Chapter 06's model: the course BERT fine-tuned on 500 labeled sentiment sentences."""
    torch.manual_seed(seed)
    model = BertForSequenceClassification.from_pretrained(course_model()[0], 2)
    return finetune(model, labeled("sentiment", "train", 500, seed), steps, seed)


def _sentiment_accuracy(model: torch.nn.Module, task: str = "sentiment") -> float:
    """Mean accuracy over the seen-word and unseen-word test sets."""
    return (evaluate_classifier(model, labeled(task, "test")) + evaluate_classifier(model, labeled(task, "test_unseen"))) / 2


def _speed_and_size(models: dict[str, torch.nn.Module], reference: str) -> dict[str, float]:
    batch = {k: v[:256] for k, v in labeled("sentiment", "test").tensors.items() if k != "labels"}
    timed = latencies(models, batch)
    return {**{f"{name}_speedup": timed[reference] / t for name, t in timed.items() if name != reference},
            **{f"{name}_bytes": size_on_disk(m) for name, m in models.items()},
            **{f"{name}_parameters": count_parameters(m) for name, m in models.items()}}


def pruning_experiment(seed: int = 0, recover_steps: int = 100,
                       sparsities: Sequence[float] = (0.5, 0.7, 0.8, 0.9, 0.95),
                       fractions: Sequence[float] = (0.25, 0.5, 0.75)) -> dict[str, float]:
    """Magnitude pruning (global, encoder matrices) at several sparsities, then fine-tuning to
    recover at 90 %; structured pruning of the least important heads and neurons (the same fraction
    of each, per layer), with recovery at 50 %: accuracy, CPU speed-up and size of the smaller model."""
    dense = sentiment_classifier(seed)
    train_rows = labeled("sentiment", "train", 500, seed)
    out = {"dense": _sentiment_accuracy(dense)}
    for s in sparsities:
        model = copy.deepcopy(dense)
        handles = apply_masks(model, magnitude_masks(prunable_weights(model), s))
        out[f"magnitude_{s}"] = _sentiment_accuracy(model)
        if s == 0.9:
            out[f"magnitude_{s}_recovered"] = _sentiment_accuracy(finetune(model, train_rows, recover_steps, seed))
        for h in handles:
            h.remove()
    batches = [train_rows[i:i + 32] for i in range(0, 256, 32)]
    heads, neurons = structured_importance(dense, batches, classification_step)
    for f in fractions:
        model = prune_neurons(prune_heads(copy.deepcopy(dense), lowest(heads, f)), lowest(neurons, f))
        out[f"structured_{f}"] = _sentiment_accuracy(model)
        if f == 0.5:
            smaller = finetune(model, train_rows, recover_steps, seed)
            out[f"structured_{f}_recovered"] = _sentiment_accuracy(smaller)
    return out | _speed_and_size({"dense": dense, "structured": smaller}, "dense")


# --- 6. a pipeline of stages --------------------------------------------------------------------------

def pipeline_stages(seed: int = 0, adapt_steps: int = 400, labels: int = 100, steps: int = 300,
                    distill_steps: int = 800, recover_steps: int = 200) -> list[tuple[str, Callable]]:
    """pretrain (the committed course model) → adapt (masked-LM on health documents) → multi-task
    fine-tune (health sentiment with ``labels`` labels, general sentiment with 500) → distill (into
    a student of half the width and depth, on the health labels plus 2,000 unlabeled health review
    sentences) → prune (half of the student's heads and neurons, then distillation again)."""
    health = labeled("health_sentiment", "train", labels, seed)
    teacher: dict[str, torch.nn.Module] = {}

    def multitask(encoder: torch.nn.Module) -> torch.nn.Module:
        torch.manual_seed(seed)
        model = MultiTaskModel.from_pretrained(encoder, {"health": ("sequence", 2), "general": ("sequence", 2)})
        batches = MultiTaskBatches({"health": health, "general": labeled("sentiment", "train", 500, seed)},
                                   temperature=math.inf, seed=seed)
        train(model, batches, multitask_step_fn(), TrainConfig(max_steps=steps, lr=1e-3, warmup_ratio=0.1, seed=seed,
                                                             progress=False, device="cpu"))
        teacher["model"] = model.tasks["health"].eval()
        return teacher["model"]

    def transfer_set() -> TensorDataset:
        reviews = [s for doc in load_task("health_pretrain", "train")["sentences"][:2000] for s in doc if " was " in s]
        unlabeled = encode_classification([{"text": s, "label": -100} for s in reviews[:2000]], course_model()[1])
        return concat_datasets(health, unlabeled)

    def distill(model: torch.nn.Module) -> torch.nn.Module:
        torch.manual_seed(seed)
        config = student_config(model.bert.config, num_layers=1, hidden_size=32, num_heads=2)
        student = BertForSequenceClassification(config, 2, pooling="mean")
        init_embeddings_by_projection(student, model)
        step_fn = distillation_step_fn(model, temperature=2.0, alpha=0.9)
        return finetune(student, transfer_set(), distill_steps, seed, lr=3e-3, batch_size=64, step_fn=step_fn)

    def prune(student: torch.nn.Module) -> torch.nn.Module:
        batches = [health[i:i + 32] for i in range(0, len(health), 32)]
        heads, neurons = structured_importance(student, batches, classification_step)
        prune_neurons(prune_heads(student, lowest(heads, 0.5)), lowest(neurons, 0.5))
        step_fn = distillation_step_fn(teacher["model"], temperature=2.0, alpha=0.9)
        return finetune(student, transfer_set(), recover_steps, seed, lr=1e-3, batch_size=64, step_fn=step_fn)

    return [("pretrain", lambda m: m),
            ("adapt", lambda m: continue_pretraining(m, "health_pretrain", adapt_steps, seed)),
            ("multi-task fine-tune", multitask), ("distill", distill), ("prune", prune)]


def pipeline_experiment(seed: int = 0, **kwargs: Any) -> dict[str, float]:
    """Every stage of :func:`pipeline_stages`: parameters, size on disk, CPU speed-up over the
    fine-tuned model, held-out masked-token accuracy on health text (the pretraining stages) and
    health sentiment accuracy (the stages with a classifier)."""
    models = run_stages(course_model()[0], pipeline_stages(seed, **kwargs), progress=False)
    out = {}
    for name, model in models.items():
        if isinstance(model, BertForPreTraining):
            out[f"{name}_health_mlm"] = mlm_accuracy(model, "health_pretrain")
        else:
            out[f"{name}_test"] = evaluate_classifier(model, labeled("health_sentiment", "test"))
            out[f"{name}_test_unseen"] = evaluate_classifier(model, labeled("health_sentiment", "test_unseen"))
    encoders = {name: m.bert if isinstance(m, BertForPreTraining) else m for name, m in models.items()}
    return out | _speed_and_size(encoders, "multi-task fine-tune")
