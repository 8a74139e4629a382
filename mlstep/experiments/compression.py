"""Chapter 09's compression experiments, one seed per call: pruning (magnitude and structured)
against the dense model, and a pipeline of stages (pretrain → adapt → multi-task fine-tune →
distill → prune) measured after every stage. Each returns a flat dict of numbers."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from mlstep.bert import BertForPreTraining
from mlstep.distill import distillation_step_fn, init_embeddings_by_projection, student_config
from mlstep.experiments.multistage_setup import (
    course_model,
    documents,
    finetune,
    health_tokenizer,
    health_words,
    labeled,
)
from mlstep.finetune import BertForSequenceClassification, classification_step
from mlstep.multistage.adapt import continue_pretraining, extend_vocabulary
from mlstep.multistage.multitask import MultiTaskBatches, MultiTaskModel, multitask_step_fn
from mlstep.multistage.pipeline import latencies, run_stages, size_on_disk
from mlstep.multistage.prune import (
    apply_masks,
    lowest,
    magnitude_masks,
    prunable_weights,
    prune_heads,
    prune_neurons,
    structured_importance,
)
from mlstep.tasks.labeled import concat_datasets, encode_classification, evaluate_classifier
from mlstep.tools.runtime import count_parameters
from mlstep.train import TrainConfig, train

__all__ = ["sentiment_classifier", "pruning_experiment", "pipeline_stages", "pipeline_table", "pipeline_experiment"]


# --- 5. pruning ------------------------------------------------------------------------------------

def sentiment_classifier(seed: int = 0, steps: int = 300) -> BertForSequenceClassification:
    """Chapter 06's model: the course BERT fine-tuned on 500 labeled sentiment sentences."""
    torch.manual_seed(seed)
    model = BertForSequenceClassification.from_pretrained(course_model()[0], 2)
    return finetune(model, labeled("sentiment", "train", 500, seed), steps, seed)


def _sentiment_accuracy(model: torch.nn.Module, task: str = "sentiment") -> float:
    """Mean accuracy over the seen-word and unseen-word test sets."""
    return (evaluate_classifier(model, labeled(task, "test")) + evaluate_classifier(model, labeled(task, "test_unseen"))) / 2


def _speed_and_size(models: dict[str, torch.nn.Module], reference: str, task: str = "sentiment") -> dict[str, float]:
    """Speed-up over ``reference`` (forward passes over 256 test sentences, timed in turn), bytes
    on disk and parameters of each model."""
    batch = {k: v[:256] for k, v in labeled(task, "test").tensors.items() if k != "labels"}
    timed = latencies(models, batch)
    return {**{f"{name}_speedup": timed[reference] / t for name, t in timed.items() if name != reference},
            **{f"{name}_bytes": size_on_disk(m) for name, m in models.items()},
            **{f"{name}_parameters": count_parameters(m) for name, m in models.items()}}


def pruning_experiment(seed: int = 0, recover_steps: int = 100,
                       sparsities: Sequence[float] = (0.5, 0.7, 0.8, 0.9, 0.95),
                       fractions: Sequence[float] = (0.25, 0.5, 0.75), progress: bool = False) -> dict[str, float]:
    """Magnitude pruning (global, encoder matrices) at several sparsities, each then fine-tuned
    for ``recover_steps`` with the pruned weights held at zero; structured pruning of the least
    important heads and neurons (the same fraction of each, per layer), fine-tuned at 50 %:
    accuracy, CPU speed-up and size of the smaller dense model. ``progress``: a bar over the sparsities and
    fractions."""
    dense = sentiment_classifier(seed)
    bar = tqdm(total=len(sparsities) + len(fractions), desc="prunings", disable=not progress)
    train_rows = labeled("sentiment", "train", 500, seed)
    out = {"dense": _sentiment_accuracy(dense)}
    for s in sparsities:
        model = copy.deepcopy(dense)
        handles = apply_masks(model, magnitude_masks(prunable_weights(model), s))
        out[f"magnitude_{s}"] = _sentiment_accuracy(model)
        out[f"magnitude_{s}_recovered"] = _sentiment_accuracy(finetune(model, train_rows, recover_steps, seed))
        for h in handles:
            h.remove()
        bar.update()
    batches = [train_rows[i:i + 32] for i in range(0, 256, 32)]
    heads, neurons = structured_importance(dense, batches, classification_step)
    for f in fractions:
        model = prune_neurons(prune_heads(copy.deepcopy(dense), lowest(heads, f)), lowest(neurons, f))
        out[f"structured_{f}"] = _sentiment_accuracy(model)
        if f == 0.5:
            smaller = finetune(model, train_rows, recover_steps, seed)
            out[f"structured_{f}_recovered"] = _sentiment_accuracy(smaller)
        bar.update()
    bar.close()
    return out | _speed_and_size({"dense": dense, "structured": smaller}, "dense")


# --- 6. a pipeline of stages --------------------------------------------------------------------------

def pipeline_stages(seed: int = 0, adapt_steps: int = 500, labels: int = 100, steps: int = 300,
                    distill_steps: int = 800, recover_steps: int = 200) -> list[tuple[str, Callable]]:
    """pretrain (the committed course model) → adapt (the health words added to the vocabulary,
    then masked-LM on health documents) → multi-task fine-tune (health sentiment with ``labels``
    labels, general sentiment with 500, tasks drawn uniformly) → distill (into a student of half
    the width and depth, on the health labels plus 2,000 unlabeled health review sentences) →
    prune (half of the student's heads and neurons, then distillation again)."""
    tokenizer = health_tokenizer()  # the vocabulary the adapt stage makes
    health = labeled("health_sentiment", "train", labels, seed, tokenizer)
    reviews = [s for doc in documents("health_pretrain", n=2000) for s in doc if " was " in s][:2000]
    unlabeled = encode_classification([{"text": s, "label": -100} for s in reviews], tokenizer)
    transfer = concat_datasets(health, unlabeled)  # labels −100: the soft targets alone
    teacher: dict[str, torch.nn.Module] = {}

    def adapt(model: torch.nn.Module) -> torch.nn.Module:  # as adaptation.adapted_model does it
        model = extend_vocabulary(model, course_model()[1], health_words())[0]
        return continue_pretraining(model, tokenizer, documents("health_pretrain"), adapt_steps,
                                    embedding_lr=1e-2, seed=seed)

    def multitask(encoder: torch.nn.Module) -> torch.nn.Module:
        torch.manual_seed(seed)
        heads = {"health": ("sequence", 2), "general": ("sequence", 2)}
        model = MultiTaskModel.from_pretrained(encoder, heads)
        data = {"health": health, "general": labeled("sentiment", "train", 500, seed, tokenizer)}
        config = TrainConfig(max_steps=steps, lr=1e-3, warmup_ratio=0.1, seed=seed, progress=False, device="cpu")
        train(model, MultiTaskBatches(data, temperature=math.inf, seed=seed), multitask_step_fn(), config)
        teacher["model"] = model.tasks["health"].eval()
        return teacher["model"]

    def distill(model: torch.nn.Module) -> torch.nn.Module:
        torch.manual_seed(seed)
        config = student_config(model.bert.config, num_layers=1, hidden_size=32, num_heads=2)
        student = BertForSequenceClassification(config, 2, pooling="mean")
        init_embeddings_by_projection(student, model)
        step_fn = distillation_step_fn(model, temperature=2.0, alpha=0.9)
        return finetune(student, transfer, distill_steps, seed, lr=3e-3, batch_size=64, step_fn=step_fn)

    def prune(student: torch.nn.Module) -> torch.nn.Module:
        batches = [health[i:i + 32] for i in range(0, len(health), 32)]
        heads, neurons = structured_importance(student, batches, classification_step)
        prune_neurons(prune_heads(student, lowest(heads, 0.5)), lowest(neurons, 0.5))
        step_fn = distillation_step_fn(teacher["model"], temperature=2.0, alpha=0.9)
        return finetune(student, transfer, recover_steps, seed, lr=1e-3, batch_size=64, step_fn=step_fn)

    return [("pretrain", lambda m: m), ("adapt", adapt), ("multi-task fine-tune", multitask),
            ("distill", distill), ("prune", prune)]


def pipeline_table(models: dict[str, torch.nn.Module]) -> dict[str, float]:
    """Every stage's model measured: parameters, size on disk, CPU speed-up over the fine-tuned
    model (pretraining stages without their pretraining heads; every model timed on the same
    inputs, tokenized with the course vocabulary), and health sentiment accuracy of the stages that
    have a classifier (their inputs tokenized with the extended vocabulary)."""
    tokenizer = health_tokenizer()
    out = {}
    for name, model in models.items():
        if not isinstance(model, BertForPreTraining):
            for split in ("test", "test_unseen"):
                out[f"{name}_{split}"] = evaluate_classifier(model, labeled("health_sentiment", split, tokenizer=tokenizer))
    encoders = {name: m.bert if isinstance(m, BertForPreTraining) else m for name, m in models.items()}
    return out | _speed_and_size(encoders, "multi-task fine-tune", "health_sentiment")


def pipeline_experiment(seed: int = 0, **kwargs: Any) -> dict[str, float]:
    """:func:`pipeline_stages` run from the course model, and :func:`pipeline_table` of the result."""
    return pipeline_table(run_stages(course_model()[0], pipeline_stages(seed, **kwargs), progress=False))
