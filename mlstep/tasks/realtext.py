"""Real English (chapter 10): the pretraining corpus, the real-text recipe and model, label budgets.

The course's other chapters train on a generated corpus built so that each lesson shows in
minutes. This module does the same steps on real text:

1. :func:`pretraining_corpus` turns full copies of WikiText-2 (Wikipedia), UD English EWT (web
   text) and the SST-2 phrases (film reviews) into documents for :func:`mlstep.tasks.masked_lm.
   pretrain_on_corpus`: general text plus the *unlabeled* text of the two tasks (labels unused).
2. :data:`REALTEXT_RECIPE` is the recipe; ``python -m mlstep.tasks realtext --data DIR`` (DIR:
   wikitext2/, ud_english_ewt/, sst2/) runs it and saves the model with its cost (steps, tokens,
   CPU-minutes) and held-out scores to ``data/realtext/model``, which chapter 10 starts from
   (``load_course_model("realtext")``, :mod:`mlstep.tasks.course`).

3. :func:`fine_tune` fine-tunes it, or the same architecture from random weights, on a labeled
   budget drawn in :func:`sample_order`; the chapter and ``benchmarks/realdata.py`` share it, so a
   seed the chapter reruns is the benchmark's run.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from mlstep.bert import BertConfig
from mlstep.data import load_conllu, load_sst2, load_wikitext2
from mlstep.finetune import (
    BertForSequenceClassification,
    BertForTokenClassification,
    freeze_encoder,
)
from mlstep.tasks.labeled import TensorDataset, finetune_config, fit
from mlstep.tasks.masked_lm import PretrainRecipe
from mlstep.tools.runtime import set_seed

__all__ = ["REALTEXT_RECIPE", "UD_SLICE_SENTENCES", "sample_order", "clean_wikitext", "wikitext_documents",
           "treebank_documents", "grouped", "pretraining_corpus", "FinetuneSetting", "fine_tune"]

UD_SLICE_SENTENCES = 1000  # training sentences of UD English EWT committed in data/realtext
WIKITEXT_ESCAPES = {" @-@ ": "-", " @,@ ": ",", " @.@ ": ".", "<unk>": "[UNK]"}

REALTEXT_RECIPE = PretrainRecipe(
    objective="mlm",  # no sentence-pair task: a second objective costs steps the MLM needs
    vocab_size=8192,  # WordPiece pieces, trained on the pretraining text (chapter 10 shows why)
    max_length=64,  # tokens per pair of consecutive sentences (longer pairs are cut)
    max_position=128,  # fine-tuning inputs up to 128 pieces: all but 0.01 % of the UD test words
    hidden_size=128, num_layers=2, num_heads=4, intermediate_size=512,  # Google's BERT-Tiny shape
    dropout=0.1,
    steps=6000, batch_size=64, lr=2e-3, embedding_lr=2e-3,
    warmup_ratio=0.06, decay_ratio=1.0,  # linear decay from the end of the warmup
    eval_every=500, whole_word=True, seed=0,
)


def sample_order(n: int, seed: int) -> list[int]:
    """A seeded order of ``range(n)``: a label budget of ``k`` examples is its first ``k`` indices."""
    return random.Random(seed).sample(range(n), n)


# --- the pretraining corpus ----------------------------------------------------------------------

def clean_wikitext(line: str) -> str:
    """Undo WikiText's escapes (``@-@`` → ``-``) and spell ``<unk>`` as the tokenizer's ``[UNK]``."""
    for old, new in WIKITEXT_ESCAPES.items():
        line = line.replace(old, new)
    return line.strip()


def wikitext_documents(lines: Sequence[str], limit: int | None = None) -> list[list[str]]:
    """Paragraphs → documents (lists of sentences, split at `` . ``); headings, empty lines and
    one-sentence paragraphs dropped; at most ``limit`` documents."""
    documents = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("="):  # "= Heading =" and "= = Sub-heading = ="
            continue
        sentences = [s.strip() + " ." for s in clean_wikitext(line).rstrip(" .").split(" . ") if s.strip()]
        if len(sentences) >= 2:
            documents.append(sentences)
        if limit is not None and len(documents) >= limit:
            break
    return documents


def treebank_documents(treebank) -> list[list[str]]:
    """The ``text`` of a UD split grouped by ``doc_id``, in file order (documents of ≥ 2 sentences)."""
    documents: dict[str, list[str]] = {}
    for doc_id, text in zip(treebank["doc_id"], treebank["text"]):
        documents.setdefault(doc_id, []).append(text)
    return [doc for doc in documents.values() if len(doc) >= 2]


def grouped(texts: Sequence[str], size: int = 8) -> list[list[str]]:
    """Unrelated short texts (SST-2 phrases) as "documents" of ``size`` consecutive ones."""
    return [list(texts[i:i + size]) for i in range(0, len(texts) - 1, size) if len(texts[i:i + size]) >= 2]


def pretraining_corpus(data: str | os.PathLike) -> tuple[list, list, dict[str, int]]:
    """``(documents, held_out, words per source)`` from ``data/{wikitext2,ud_english_ewt,sst2}``.

    Training text: WikiText-2 train, the text of the UD EWT training sentences and the SST-2
    training phrases (their labels unused); held out: WikiText-2 validation.
    """
    data = Path(data)
    wiki = load_wikitext2(data / "wikitext2")
    sources = {"wikitext2": wikitext_documents(wiki["train"]["text"]),
               "ud_english_ewt": treebank_documents(load_conllu(data / "ud_english_ewt")["train"]),
               "sst2": grouped(load_sst2(data / "sst2")["train"]["text"])}
    words = {name: sum(len(s.split()) for doc in docs for s in doc) for name, docs in sources.items()}
    return [doc for docs in sources.values() for doc in docs], wikitext_documents(wiki["validation"]["text"]), words


# --- fine-tuning on a label budget ---------------------------------------------------------------

@dataclass(frozen=True)
class FinetuneSetting:
    """How one arm is fine-tuned on one budget (chosen on a validation split)."""

    lr: float  # peak learning rate (warmup 10 %, then linear decay)
    steps: int  # optimizer steps
    batch_size: int = 32


def fine_tune(pretrained: nn.Module | None, config: BertConfig, data: TensorDataset, num_labels: int,
              setting: FinetuneSetting, seed: int = 0, task: str = "tagging", probe: bool = False) -> nn.Module:
    """A token (``task="tagging"``) or mean-pooled sequence classifier, fine-tuned on ``data``.

    ``pretrained=None`` starts from random weights of the same ``config`` (the from-scratch arm).
    ``seed`` seeds the head (and, for scratch, the encoder) and the data order. ``probe=True``
    freezes the encoder: only the head learns (a linear probe of the features).
    """
    if task not in ("tagging", "classification"):
        raise ValueError(f"task must be 'tagging' or 'classification', got {task!r}")
    set_seed(seed)
    if task == "tagging":
        model = (BertForTokenClassification(config, num_labels) if pretrained is None
                 else BertForTokenClassification.from_pretrained(pretrained, num_labels))
    else:
        model = (BertForSequenceClassification(config, num_labels, pooling="mean") if pretrained is None
                 else BertForSequenceClassification.from_pretrained(pretrained, num_labels, pooling="mean"))
    if probe:
        freeze_encoder(model)
    fit(model, data, finetune_config(setting.steps, setting.lr, seed=seed), batch_size=setting.batch_size)
    return model.eval()
