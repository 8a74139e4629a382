"""Multi-task learning: one encoder, one head per task, trained on batches drawn from every task.

Each task keeps the head it would have alone (:class:`~mlstep.BertForSequenceClassification`,
:class:`~mlstep.BertForTokenClassification`); all of them are built around *one*
:class:`~mlstep.BertModel`, so every task's gradient moves the shared encoder. A batch holds one
task's rows (``batch["task"]`` names it), and the loss is that task's, times its weight.

How often each task is drawn matters as much as the loss weights: with ``temperature`` τ, task
``i`` with ``n_i`` rows is drawn with probability ``∝ n_i^(1/τ)`` (Arivazhagan et al., 2019;
mT5): τ = 1 follows the data sizes (a task with 50 labels is almost never seen), larger τ
flattens towards uniform (τ = ∞), which a low-resource task needs to be trained at all.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from mlstep.bert import BertModel
from mlstep.finetune import (
    BertForSequenceClassification,
    BertForTokenClassification,
    classification_step,
)
from mlstep.tasks.labeled import TensorDataset
from mlstep.transformer import find_backbone

__all__ = ["MultiTaskModel", "MultiTaskBatches", "task_probabilities", "multitask_step_fn"]

HEADS = {"sequence": BertForSequenceClassification, "token": BertForTokenClassification}


class MultiTaskModel(nn.Module):
    """``tasks[name]`` is a complete single-task model; all of them share ``bert``.

    ``model.tasks["sentiment"]`` is an ordinary classifier: :func:`mlstep.tasks.labeled.predict`,
    :func:`~mlstep.tasks.labeled.evaluate_classifier` and :func:`~mlstep.tasks.labeled.evaluate_tagger` take it
    as they are. ``model("sentiment", **inputs)`` runs it.
    """

    def __init__(self, bert: BertModel, heads: Mapping[str, tuple[str, int]], **head_kwargs: Any):
        """``heads``: ``{task: (kind, num_labels)}`` with kind ``"sequence"`` or ``"token"``;
        ``head_kwargs`` (``dropout``, ``pooling``) go to the sequence heads."""
        super().__init__()
        if not heads:
            raise ValueError("a multi-task model needs at least one task")
        bad = {name: kind for name, (kind, _) in heads.items() if kind not in HEADS}
        if bad:
            raise ValueError(f"head kinds must be 'sequence' or 'token', got {bad}")
        self.bert = bert
        token_kwargs = {k: v for k, v in head_kwargs.items() if k == "dropout"}
        self.tasks = nn.ModuleDict({
            name: HEADS[kind](bert, num_labels, **(head_kwargs if kind == "sequence" else token_kwargs))
            for name, (kind, num_labels) in heads.items()})

    @classmethod
    def from_pretrained(cls, pretrained: nn.Module, heads: Mapping[str, tuple[str, int]],
                        **head_kwargs: Any) -> MultiTaskModel:
        """New heads on a *copy* of the encoder inside ``pretrained``."""
        return cls(copy.deepcopy(find_backbone(pretrained).model), heads, **head_kwargs)

    def forward(self, task: str, **inputs: Tensor) -> Any:
        if task not in self.tasks:
            raise KeyError(f"unknown task {task!r}; this model has {list(self.tasks)}")
        return self.tasks[task](**inputs)


def task_probabilities(sizes: Mapping[str, int], temperature: float = 1.0) -> dict[str, float]:
    """``p_i ∝ n_i^(1/τ)``: τ = 1 proportional to the sizes, ``math.inf`` uniform."""
    if not sizes or min(sizes.values()) <= 0 or not temperature > 0:
        raise ValueError(f"need positive sizes and temperature > 0, got {dict(sizes)}, {temperature}")
    scores = {name: n ** (1.0 / temperature) for name, n in sizes.items()}  # n^0 = 1 at τ = inf
    total = sum(scores.values())
    return {name: s / total for name, s in scores.items()}


class MultiTaskBatches:
    """Batches of one task each, the task drawn at random with :func:`task_probabilities`.

    One pass yields ``batches_per_pass`` batches (default: as many as one epoch of every task,
    ``Σ ceil(n_i / batch_size)``). Each task's rows are reshuffled whenever they run out. Every
    random choice comes from ``generator``, which :func:`mlstep.train` saves and restores, so a
    resumed run sees the same batches.
    """

    def __init__(self, datasets: Mapping[str, TensorDataset], batch_size: int = 32,
                 temperature: float = 1.0, seed: int = 0, batches_per_pass: int | None = None):
        self.datasets, self.batch_size = dict(datasets), batch_size
        self.probabilities = task_probabilities({k: len(d) for k, d in self.datasets.items()}, temperature)
        self.batches_per_pass = batches_per_pass or sum(math.ceil(len(d) / batch_size) for d in self.datasets.values())
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.batches_per_pass

    def __iter__(self) -> Iterator[dict[str, Any]]:
        names = list(self.datasets)
        weights = torch.tensor([self.probabilities[n] for n in names], dtype=torch.float64)
        draws = torch.multinomial(weights, self.batches_per_pass, replacement=True, generator=self.generator)
        order = {n: torch.empty(0, dtype=torch.long) for n in names}  # rows left in each task's epoch
        for i in draws.tolist():
            name, data = names[i], self.datasets[names[i]]
            if len(order[name]) < self.batch_size:  # a new epoch of this task: reshuffle
                order[name] = torch.cat([order[name], torch.randperm(len(data), generator=self.generator)])
            rows, order[name] = order[name][: self.batch_size], order[name][self.batch_size:]
            yield {"task": name, **{k: v[rows] for k, v in data.tensors.items()}}


def multitask_step_fn(weights: Mapping[str, float] | None = None
                      ) -> Callable[[MultiTaskModel, Mapping[str, Any]], tuple[Tensor, dict[str, float]]]:
    """A ``step_fn`` for :func:`mlstep.train`: :func:`mlstep.finetune.classification_step` on the
    batch's task, its loss times ``weights[task]`` (1 for a task not given)."""
    weights = dict(weights or {})

    def step_fn(model: MultiTaskModel, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, float]]:
        task = batch["task"]
        loss, values = classification_step(functools.partial(model, task), batch)  # model(task, **inputs)
        return loss * weights.get(task, 1.0), values

    return step_fn
