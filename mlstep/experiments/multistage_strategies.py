"""Chapter 09's training strategies, each against its plain baseline, one seed per call: layer-wise
losses, a short-to-long curriculum and multi-task learning (domain adaptation is in
:mod:`mlstep.experiments.domain`).

Both arms of a comparison get the same data, steps, batch size and learning rate; only the
strategy differs. Each function returns a flat dict of numbers (see :mod:`mlstep.experiments.multistage`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mlstep.bert import BertForPreTraining
from mlstep.data import TAGS
from mlstep.experiments.multistage_setup import (
    NUM_LABELS,
    course_model,
    finetune,
    labeled,
    mlm_accuracy,
    mlm_collator,
    mlm_dataset,
)
from mlstep.finetune import (
    BertForSequenceClassification,
    BertForTokenClassification,
    freeze_encoder,
)
from mlstep.multistage.curriculum import Curriculum
from mlstep.multistage.layerwise import LayerwiseClassifier, layer_accuracies
from mlstep.multistage.multitask import MultiTaskBatches, MultiTaskModel, multitask_step_fn
from mlstep.tasks.labeled import evaluate_classifier, evaluate_tagger
from mlstep.tasks.masked_lm import pretraining_step
from mlstep.train import TrainConfig, train

__all__ = ["layerwise_experiment", "curriculum_experiment", "MULTITASK_LABELS", "MULTITASK_ARMS",
           "multitask_experiment"]


# --- 1. layer-wise losses ------------------------------------------------------------------------------

def layerwise_experiment(seed: int = 0, probe_steps: int = 150, steps: int = 200,
                         progress: bool = False) -> dict[str, float]:
    """Where each task's information lives (a frozen encoder with a linear probe on every layer),
    and deep supervision (α = 1 on every layer) against the last layer alone (α = 0, 0, 1) when
    fine-tuning NLI with 1,000 pairs: accuracy of each head. ``progress``: a bar over the 5 trainings."""
    pretrained, out = course_model()[0], {}
    tests = {"sentiment": "test_unseen", "topic": "test_unseen", "nli": "test"}
    bar = tqdm(total=len(tests) + 2, desc="trainings", disable=not progress)
    for task, test in tests.items():
        torch.manual_seed(seed)
        probe = freeze_encoder(LayerwiseClassifier.from_pretrained(pretrained, NUM_LABELS[task]))
        finetune(probe, labeled(task, "train", 500, seed), probe_steps, seed, lr=1e-2)
        accuracies = layer_accuracies(probe, labeled(task, test))
        out |= {f"probe_{task}_layer{layer}": a for layer, a in accuracies.items()}
        bar.update()
    for arm, weights in (("last", [0.0, 0.0, 1.0]), ("deep", [1.0, 1.0, 1.0])):
        torch.manual_seed(seed)
        model = LayerwiseClassifier.from_pretrained(pretrained, 3, weights=weights)
        finetune(model, labeled("nli", "train", 1000, seed), steps, seed)
        accuracies = layer_accuracies(model, labeled("nli", "test"))
        out |= {f"{arm}_layer{layer}": a for layer, a in accuracies.items() if weights[layer] > 0}
        bar.update()
    bar.close()
    return out


# --- 2. curriculum: short sequences first ----------------------------------------------------------------

def _mlm_eval_with_cpu_seconds() -> Callable[[BertForPreTraining], dict[str, float]]:
    """An ``eval_fn``: held-out masked-token accuracy, and the CPU seconds spent *training* since
    this function was called (the evaluations' own time left out)."""
    clock = {"training": 0.0, "since": time.process_time()}

    def eval_fn(model: BertForPreTraining) -> dict[str, float]:
        clock["training"] += time.process_time() - clock["since"]
        accuracy = mlm_accuracy(model, "pretrain")
        clock["since"] = time.process_time()
        return {"mlm_accuracy": accuracy, "cpu_seconds": clock["training"]}

    return eval_fn


def curriculum_experiment(seed: int = 0, steps: int = 400, short_length: int = 24, short_fraction: float = 0.7,
                          eval_every: int = 50, target: float = 0.4, progress: bool = False) -> dict[str, Any]:
    """Masked-LM pretraining from scratch, random order at full length (≤ 64 tokens) against a
    curriculum that trains the first ``short_fraction`` of the steps on pairs cut to
    ``short_length`` tokens (BERT's two-phase recipe, in small), at the same number of steps.
    Held-out accuracy on full-length pairs, with the CPU seconds spent training (evaluation excluded).
    ``progress``: each arm's training bar."""
    pretrained = course_model()[0]
    collator = mlm_collator()
    out: dict[str, Any] = {}

    def loader(length: int) -> DataLoader:
        return DataLoader(mlm_dataset("pretrain", "train", length), batch_size=64, shuffle=True,
                          collate_fn=collator, generator=torch.Generator().manual_seed(seed))

    short_steps = round(short_fraction * steps)
    arms = {"random": loader(64), "curriculum": Curriculum([(loader(short_length), short_steps),
                                                            (loader(64), steps - short_steps)])}
    for arm, data in arms.items():
        torch.manual_seed(seed)
        model = BertForPreTraining(pretrained.config)  # the course architecture, random weights
        config = TrainConfig(max_steps=steps, lr=3e-3, warmup_ratio=0.06, decay_ratio=0.2, eval_every=eval_every,
                             seed=seed, progress=progress, device="cpu")
        history = train(model, data, pretraining_step, config, eval_fn=_mlm_eval_with_cpu_seconds())
        evals = history.evals
        reached = next((e for e in evals if e["mlm_accuracy"] >= target), None)
        out |= {f"{arm}_final": evals[-1]["mlm_accuracy"], f"{arm}_cpu_seconds": evals[-1]["cpu_seconds"],
                f"{arm}_steps_to_target": reached["step"] if reached else None,
                f"{arm}_seconds_to_target": reached["cpu_seconds"] if reached else None,
                f"{arm}_curve": [(e["step"], e["cpu_seconds"], e["mlm_accuracy"]) for e in evals]}
    return out


# --- 3. multi-task learning ------------------------------------------------------------------------------

MULTITASK_LABELS = {"sentiment": 40, "topic": 500, "tagging": 300, "nli": 1000}  # sentiment: low-resource


def _score(model: torch.nn.Module, task: str) -> float:
    """Test accuracy, or entity F1 for tagging; on the unseen-word split where the task has one."""
    if task == "tagging":
        return evaluate_tagger(model, labeled(task, "test_unseen"), TAGS)["f1"]
    return evaluate_classifier(model, labeled(task, "test" if task == "nli" else "test_unseen"))


MULTITASK_ARMS = ("single", "uniform", "proportional")


def multitask_experiment(seed: int = 0, steps_per_task: int = 100, arms: Sequence[str] = MULTITASK_ARMS,
                         progress: bool = False) -> dict[str, float]:
    """One encoder with four heads trained together for ``4 × steps_per_task`` steps (every loss
    weighted 1) against four single-task models of ``steps_per_task`` steps each: the same total
    compute. Tasks are drawn uniformly (τ = ∞: each gets its single model's share of steps) or in
    proportion to their sizes (τ = 1). Sentiment has only 40 labels: can it borrow from the others?
    ``arms``: the subset of :data:`MULTITASK_ARMS` to run; ``progress``: a bar over the trainings."""
    pretrained, out = course_model()[0], {}
    data = {task: labeled(task, "train", n, seed) for task, n in MULTITASK_LABELS.items()}
    trainings = len(data) * ("single" in arms) + len(set(arms) - {"single"})
    bar = tqdm(total=trainings, desc="trainings", disable=not progress)
    for task, rows in data.items() if "single" in arms else ():
        torch.manual_seed(seed)
        kind = BertForTokenClassification if task == "tagging" else BertForSequenceClassification
        model = finetune(kind.from_pretrained(pretrained, NUM_LABELS[task]), rows, steps_per_task, seed)
        out[f"single_{task}"] = _score(model, task)
        bar.update()
    heads = {task: ("token" if task == "tagging" else "sequence", NUM_LABELS[task]) for task in data}
    for arm, temperature in (("uniform", math.inf), ("proportional", 1.0)):
        if arm not in arms:
            continue
        torch.manual_seed(seed)
        model = MultiTaskModel.from_pretrained(pretrained, heads)
        batches = MultiTaskBatches(data, batch_size=32, temperature=temperature, seed=seed)
        config = TrainConfig(max_steps=steps_per_task * len(data), lr=1e-3, warmup_ratio=0.1, seed=seed,
                             progress=False, device="cpu")
        train(model, batches, multitask_step_fn(), config)
        model.eval()
        out |= {f"{arm}_{task}": _score(model.tasks[task], task) for task in data}
        out |= {f"{arm}_share_{task}": p for task, p in batches.probabilities.items()}
        bar.update()
    bar.close()
    return out
