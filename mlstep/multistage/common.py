"""What chapter 09's experiments share: the course model, encoded labeled splits, masked-LM data
and its evaluation, continued pretraining, and a short fine-tuning call. Cached: every experiment
trains copies and never changes what it gets here."""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch.utils.data import DataLoader

from mlstep.bert import BertForPreTraining
from mlstep.data import TAGS, load_task
from mlstep.pretrain import (
    MaskingCollator,
    PairDataset,
    evaluate_pretraining,
    fixed_batches,
    load_course_model,
    make_pairs,
    pretraining_step,
)
from mlstep.tasks import TensorDataset, encode_classification, encode_tagging, fit
from mlstep.train import TrainConfig, train

__all__ = ["NUM_LABELS", "course_model", "labeled", "mlm_dataset", "mlm_collator", "mlm_accuracy",
           "continue_pretraining", "finetune"]

NUM_LABELS = {"sentiment": 2, "topic": 5, "nli": 3, "tagging": len(TAGS), "health_sentiment": 2}


@functools.lru_cache(maxsize=1)
def course_model() -> tuple[BertForPreTraining, Any]:
    """The committed course BERT and its tokenizer (never modified: experiments train copies)."""
    model, tokenizer, _ = load_course_model()
    return model, tokenizer


@functools.cache
def _encoded(task: str, split: str) -> TensorDataset:
    tokenizer = course_model()[1]
    if task == "tagging":
        return encode_tagging(load_task(task, split), tokenizer, TAGS)
    pair = "hypothesis" if task == "nli" else None
    text = "premise" if task == "nli" else "text"
    return encode_classification(load_task(task, split), tokenizer, text_key=text, pair_key=pair)


def labeled(task: str, split: str, n: int | None = None, seed: int | None = None) -> TensorDataset:
    """A labeled split, encoded; with ``n``, ``n`` rows (the first, or drawn with ``seed``)."""
    data = _encoded(task, split)
    if n is None:
        return data
    g = None if seed is None else torch.Generator().manual_seed(seed)
    rows = torch.arange(n) if g is None else torch.randperm(len(data), generator=g)[:n]
    return TensorDataset({k: v[rows] for k, v in data.tensors.items()})


@functools.cache
def mlm_dataset(task: str, split: str, max_length: int = 64, documents: int = 4000) -> PairDataset:
    """Consecutive-sentence pairs of the first ``documents`` documents of ``"pretrain"`` or
    ``"health_pretrain"`` (4,000 give ~20k pairs: more than these experiments' steps use)."""
    texts = load_task(task, split)["sentences"][:documents]
    return PairDataset(make_pairs(texts, "mlm"), course_model()[1], max_length)


def mlm_collator() -> MaskingCollator:
    """Pads and masks pairs for masked-LM only (no sentence labels)."""
    return MaskingCollator(course_model()[1], sentence_labels=False)


@functools.cache
def _mlm_eval_batches(task: str) -> tuple[dict, ...]:
    return tuple(fixed_batches(mlm_dataset(task, "validation"), mlm_collator(), limit=1000))


def mlm_accuracy(model: BertForPreTraining, task: str) -> float:
    """Held-out masked-token accuracy on ``task``'s validation documents (fixed masks)."""
    return evaluate_pretraining(model, _mlm_eval_batches(task))["mlm_accuracy"]


def continue_pretraining(model: BertForPreTraining, task: str, steps: int, seed: int = 0,
                         lr: float = 1e-3, progress: bool = False) -> BertForPreTraining:
    """More masked-LM training of ``model`` (in place) on ``task``'s documents: with the new
    domain's text this is domain-adaptive pretraining (Gururangan et al., 2020)."""
    loader = DataLoader(mlm_dataset(task, "train"), batch_size=64, shuffle=True, collate_fn=mlm_collator(),
                        generator=torch.Generator().manual_seed(seed))
    config = TrainConfig(max_steps=steps, lr=lr, warmup_ratio=0.06, seed=seed, progress=progress, device="cpu")
    train(model, loader, pretraining_step, config)
    return model.eval()


def finetune(model: torch.nn.Module, data: TensorDataset, steps: int, seed: int, lr: float = 1e-3,
             **kwargs: Any) -> torch.nn.Module:
    """:func:`mlstep.tasks.fit` with ``lr`` and ``seed``; returns the model in eval mode."""
    fit(model, data, steps=steps, lr=lr, seed=seed, **kwargs)
    return model.eval()
