"""What chapter 09's experiments share: the course model, encoded labeled splits, documents and
masked-LM data, the held-out domain's new words, and a short fine-tuning call. Cached: every
experiment trains copies and never changes what it gets here."""

from __future__ import annotations

import functools
from typing import Any

import torch

from mlstep.bert import BertForPreTraining
from mlstep.data import TAGS, load_task
from mlstep.multistage.adapt import extend_vocabulary, new_words
from mlstep.tasks.course import load_course_model
from mlstep.tasks.labeled import (
    TensorDataset,
    encode_classification,
    encode_tagging,
    finetune_config,
    fit,
)
from mlstep.tasks.masked_lm import (
    MaskingCollator,
    PairDataset,
    evaluate_pretraining,
    fixed_batches,
    make_pairs,
)
from mlstep.tokenizers.wordpiece import WordPieceTokenizer

__all__ = ["NUM_LABELS", "course_model", "labeled", "documents", "health_words", "health_tokenizer", "mlm_dataset",
           "mlm_collator", "mlm_accuracy", "finetune"]

NUM_LABELS = {"sentiment": 2, "topic": 5, "nli": 3, "tagging": len(TAGS), "health_sentiment": 2}


@functools.lru_cache(maxsize=1)
def course_model() -> tuple[BertForPreTraining, WordPieceTokenizer]:
    """The committed course BERT and its tokenizer (never modified: experiments train copies)."""
    model, tokenizer, _ = load_course_model()
    return model, tokenizer


@functools.cache
def _encoded(task: str, split: str, tokenizer: WordPieceTokenizer) -> TensorDataset:
    if task == "tagging":
        return encode_tagging(load_task(task, split), tokenizer, TAGS)
    pair = "hypothesis" if task == "nli" else None
    text = "premise" if task == "nli" else "text"
    return encode_classification(load_task(task, split), tokenizer, text_key=text, pair_key=pair)


def labeled(task: str, split: str, n: int | None = None, seed: int | None = None,
            tokenizer: WordPieceTokenizer | None = None) -> TensorDataset:
    """A labeled split, encoded (with the course tokenizer unless given); with ``n``, ``n`` rows
    (the first, or drawn with ``seed``)."""
    data = _encoded(task, split, tokenizer or course_model()[1])
    if n is None:
        return data
    g = None if seed is None else torch.Generator().manual_seed(seed)
    rows = torch.arange(n) if g is None else torch.randperm(len(data), generator=g)[:n]
    return TensorDataset({k: v[rows] for k, v in data.tensors.items()})


@functools.cache
def documents(task: str, split: str = "train", n: int = 4000) -> tuple[tuple[str, ...], ...]:
    """The first ``n`` documents (tuples of sentences) of ``"pretrain"`` or ``"health_pretrain"``."""
    return tuple(tuple(doc) for doc in load_task(task, split)["sentences"][:n])


@functools.cache
def health_words() -> tuple[str, ...]:
    """The held-out domain's new words: frequent in its documents, absent from the general ones."""
    sentences = [s for doc in documents("health_pretrain") for s in doc]
    return tuple(new_words(sentences, [s for doc in documents("pretrain") for s in doc], course_model()[1]))


@functools.cache
def health_tokenizer() -> WordPieceTokenizer:
    """The course tokenizer with :func:`health_words` added (one object: encodings are cached per tokenizer)."""
    return extend_vocabulary(*course_model(), health_words())[1]


@functools.cache
def mlm_dataset(task: str, split: str, max_length: int = 64, tokenizer: WordPieceTokenizer | None = None
                ) -> PairDataset:
    """Consecutive-sentence pairs of :func:`documents` (4,000 give ~20k pairs)."""
    return PairDataset(make_pairs(documents(task, split), "mlm"), tokenizer or course_model()[1], max_length)


def mlm_collator(tokenizer: WordPieceTokenizer | None = None) -> MaskingCollator:
    """Pads and masks pairs for masked-LM only (no sentence labels)."""
    return MaskingCollator(tokenizer or course_model()[1], sentence_labels=False)


@functools.cache
def _mlm_eval_batches(task: str, tokenizer: WordPieceTokenizer) -> tuple[dict, ...]:
    return tuple(fixed_batches(mlm_dataset(task, "validation", tokenizer=tokenizer), mlm_collator(tokenizer),
                               limit=1000))


def mlm_accuracy(model: BertForPreTraining, task: str, tokenizer: WordPieceTokenizer | None = None) -> float:
    """Held-out masked-token accuracy on ``task``'s validation documents (fixed masks)."""
    return evaluate_pretraining(model, _mlm_eval_batches(task, tokenizer or course_model()[1]))["mlm_accuracy"]


def finetune(model: torch.nn.Module, data: TensorDataset, steps: int, seed: int, lr: float = 1e-3,
             **kwargs: Any) -> torch.nn.Module:
    """:func:`mlstep.tasks.labeled.fit` with ``lr`` and ``seed``; returns the model in eval mode."""
    fit(model, data, finetune_config(steps, lr, seed=seed), **kwargs)
    return model.eval()
