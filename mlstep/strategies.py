"""Fine-tuning strategies as recipes, so that chapter 06 and its multi-seed sweep run the same code.

Each strategy is a few lines of :mod:`mlstep.finetune` and :mod:`mlstep.lora` (chapter 06 explains
them one by one); :func:`finetune_with` builds the model for one of them, trains it with
:func:`mlstep.tasks.fit` and returns it. ``scripts/sweep_finetuning.py`` tunes each strategy's
learning rate and steps on the validation split and runs several seeds.
"""

from __future__ import annotations

import torch
from torch import nn

from mlstep.finetune import (
    BertForSequenceClassification,
    GradualUnfreezer,
    classification_step,
    find_bert,
    freeze_encoder,
    layerwise_lr_groups,
)
from mlstep.lora import apply_lora
from mlstep.tasks import TensorDataset, fit

__all__ = ["STRATEGIES", "finetune_with", "sample_rows"]

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
        model = BertForSequenceClassification(find_bert(pretrained).config, num_labels)
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
    fit(model, data, steps=steps, lr=lr, seed=seed, **extra)
    return model


def sample_rows(data: TensorDataset, n: int, seed: int) -> TensorDataset:
    """``n`` rows of ``data`` drawn without replacement (a label budget; another seed, other rows)."""
    rows = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    return TensorDataset({k: v[rows] for k, v in data.tensors.items()},
                         {k: [v[int(i)] for i in rows] for k, v in data.extra.items()})
