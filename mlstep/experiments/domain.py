"""Chapter 09's domain-adaptation experiment, one seed per call: sentiment in the held-out health
domain with few labels, fine-tuned from models adapted (or not) to the domain's unlabeled text."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from mlstep.bert import BertForPreTraining
from mlstep.experiments.multistage_setup import (
    course_model,
    documents,
    finetune,
    health_tokenizer,
    health_words,
    labeled,
    mlm_accuracy,
)
from mlstep.finetune import BertForSequenceClassification
from mlstep.multistage.adapt import continue_pretraining, extend_vocabulary
from mlstep.tasks.labeled import evaluate_classifier

__all__ = ["DOMAIN_ARMS", "adapted_model", "domain_experiment"]

DOMAIN_ARMS = ("scratch", "no_adaptation", "no_adaptation_tuned", "new_vocabulary", "domain_mlm",
               "domain_mlm_new_vocabulary")
# the grid the "tuned" baseline picks from on the validation split (half of it unseen words)
BASELINE_GRID = {"pooling": ("cls", "mean"), "lr": (1e-3, 3e-3), "steps": (200, 400)}


def adapted_model(seed: int = 0, steps: int = 500, new_vocabulary: bool = True) -> tuple[BertForPreTraining, Any]:
    """The course model after ``steps`` masked-LM steps on the health documents (lr 1e-3, the word
    embeddings at 1e-2), with the domain's new words in its vocabulary or not: ``(model, tokenizer)``."""
    model, tokenizer = course_model()
    if new_vocabulary:
        model, tokenizer = extend_vocabulary(model, tokenizer, health_words())[0], health_tokenizer()
    else:
        model = copy.deepcopy(model)
    return continue_pretraining(model, tokenizer, documents("health_pretrain"), steps, embedding_lr=1e-2, seed=seed), tokenizer


def _classifier(encoder: BertForPreTraining | None, pooling: str) -> BertForSequenceClassification:
    if encoder is None:  # random weights, the course architecture
        return BertForSequenceClassification(course_model()[0].config, 2, pooling=pooling)
    return BertForSequenceClassification.from_pretrained(encoder, 2, pooling=pooling)


def _tuned(encoder: BertForPreTraining, tokenizer: Any, labels: int, seed: int) -> BertForSequenceClassification:
    """The best of :data:`BASELINE_GRID` on the validation split."""
    best, best_accuracy = None, -1.0
    for pooling, lr, steps in itertools.product(*BASELINE_GRID.values()):
        torch.manual_seed(seed)
        model = finetune(_classifier(encoder, pooling), labeled("health_sentiment", "train", labels, seed, tokenizer),
                         steps, seed, lr=lr)
        accuracy = evaluate_classifier(model, labeled("health_sentiment", "validation", tokenizer=tokenizer))
        if accuracy > best_accuracy:
            best, best_accuracy = model, accuracy
    return best


def domain_experiment(seed: int = 0, adapt_steps: int = 500, labels: int = 100, steps: int = 200,
                      arms: Sequence[str] = DOMAIN_ARMS, keep: dict[str, Any] | None = None,
                      progress: bool = False) -> dict[str, float]:
    """Health sentiment with ``labels`` labels ([CLS] pooling, ``steps`` steps, lr 1e-3) fine-tuned
    from: random weights; the course model as it is (and the same with pooling, lr and steps picked
    from :data:`BASELINE_GRID` on validation, a tuned baseline); the course model with the domain's
    new words in its vocabulary (embeddings from their pieces, no training); after ``adapt_steps``
    masked-LM steps on health documents with the old vocabulary; and with the new one.
    ``arms``: a subset of :data:`DOMAIN_ARMS`; ``keep``: receives each arm's ``(encoder, tokenizer)``;
    ``progress``: a bar over the arms."""
    pretrained, tokenizer = course_model()
    starts: dict[str, Callable[[], tuple[Any, Any]]] = {
        "scratch": lambda: (None, tokenizer),
        "no_adaptation": lambda: (pretrained, tokenizer),
        "no_adaptation_tuned": lambda: (pretrained, tokenizer),
        "new_vocabulary": lambda: (extend_vocabulary(pretrained, tokenizer, health_words())[0], health_tokenizer()),
        "domain_mlm": lambda: adapted_model(seed, adapt_steps, new_vocabulary=False),
        "domain_mlm_new_vocabulary": lambda: adapted_model(seed, adapt_steps, new_vocabulary=True),
    }
    out: dict[str, float] = {}
    for arm in tqdm(arms, desc="arms", disable=not progress):
        encoder, tok = starts[arm]()
        if keep is not None:
            keep[arm] = (encoder, tok)
        if arm == "no_adaptation_tuned":
            model = _tuned(encoder, tok, labels, seed)
        else:
            torch.manual_seed(seed)
            model = finetune(_classifier(encoder, "cls"), labeled("health_sentiment", "train", labels, seed, tok), steps, seed)
        for split in ("test", "test_unseen"):
            out[f"{arm}_{split}"] = evaluate_classifier(model, labeled("health_sentiment", split, tokenizer=tok))
        if encoder is not None and arm.startswith("domain_mlm"):  # what adapting costs on the general domain
            out[f"{arm}_general_mlm"] = mlm_accuracy(encoder, "pretrain", tok)
    if "no_adaptation" in arms:
        out["no_adaptation_general_mlm"] = mlm_accuracy(pretrained, "pretrain")
    return out
