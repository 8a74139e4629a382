"""Pretraining data: BERT's masked-language-model corruption and the sentence-pair tasks.

* :func:`mask_tokens`: 15 % of the tokens become prediction targets; of those 80 % are replaced by
  ``[MASK]``, 10 % by a random token, 10 % stay as they are.
* :func:`nsp_pairs` (BERT) and :func:`sop_pairs` (ALBERT): sentence pairs with a label.

Labels follow Hugging Face's conventions: MLM labels are −100 where nothing is predicted; NSP
label 0 = "b follows a", 1 = "b is a random sentence"; SOP label 0 = in order, 1 = swapped.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mlstep.tools.checks import check_ids
from mlstep.tools.runtime import IGNORE_INDEX

__all__ = ["mask_tokens", "nsp_pairs", "sop_pairs"]

S = TypeVar("S")  # a sentence: a str, a list of ids, anything


def mask_tokens(input_ids: Tensor, *, vocab_size: int, mask_id: int, special_ids: Iterable[int],
                mlm_probability: float = 0.15, generator: torch.Generator | None = None,
                word_ids: Tensor | None = None, attention_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """BERT's masking of ``input_ids (B, T)``: returns new ``(inputs, labels)``, both ``(B, T)``.

    Each position that is not special (nor padding, 0 in ``attention_mask``) is chosen with
    probability ``mlm_probability``. A chosen position keeps its original id as label and its
    input becomes ``mask_id`` (80 %), a random non-special id (10 %), or stays (10 %: the model
    must predict every token, not only the ``[MASK]`` ones). Elsewhere the label is −100.

    ``word_ids (B, T)`` (the word index of each piece, −1 at specials) turns on whole-word masking:
    all pieces of a chosen word are targets, each with its own 80/10/10 draw (Google's BERT).

    Every random number comes from ``generator`` (a CPU ``torch.Generator``; None: the global
    one), drawn on the CPU in a fixed amount for a given shape, so a seed gives the same masks on
    every device.
    """
    check_ids("input_ids", input_ids, vocab_size, "vocab_size")
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, seq_len), got {tuple(input_ids.shape)}")
    if not 0.0 < mlm_probability < 1.0:
        raise ValueError(f"mlm_probability must be in (0, 1), got {mlm_probability}")
    specials = sorted({int(i) for i in special_ids} | {int(mask_id)})
    if not all(0 <= i < vocab_size for i in specials) or len(specials) >= vocab_size:
        raise ValueError(f"special ids {specials} must lie in [0, vocab_size={vocab_size}) and leave "
                         "at least one ordinary token")
    for name, x in (("word_ids", word_ids), ("attention_mask", attention_mask)):
        if x is not None and x.shape != input_ids.shape:
            raise ValueError(f"{name} must have shape {tuple(input_ids.shape)}, got {tuple(x.shape)}")
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(f"generator must be a CPU torch.Generator, got one on {generator.device}")

    ids = input_ids.cpu()  # (B, T)
    is_special = torch.zeros(vocab_size, dtype=torch.bool)
    is_special[specials] = True
    maskable = ~is_special[ids]  # (B, T)
    if attention_mask is not None:
        maskable &= attention_mask.cpu().bool()
    choose = torch.rand(ids.shape, generator=generator)  # (B, T) one uniform to choose,
    replace = torch.rand(ids.shape, generator=generator)  # one for [MASK] / random / keep,
    ordinary = (~is_special).nonzero().squeeze(1)
    random_ids = ordinary[torch.randint(len(ordinary), ids.shape, generator=generator)]  # one id
    if word_ids is not None:  # every piece takes the uniform of its word's first piece
        choose = choose.gather(1, _first_piece_of_word(word_ids.cpu().long(), maskable))
    chosen = maskable & (choose < mlm_probability)  # (B, T)

    labels = torch.where(chosen, ids, IGNORE_INDEX)
    inputs = torch.where(chosen & (replace < 0.8), mask_id, ids)
    inputs = torch.where(chosen & (replace >= 0.8) & (replace < 0.9), random_ids, inputs)
    return inputs.to(input_ids.device), labels.to(input_ids.device)


def _first_piece_of_word(word_ids: Tensor, maskable: Tensor) -> Tensor:
    """``(B, T)``: for each position, the index of the first piece of its word (a maximal run of
    maskable positions with one word id)."""
    w = word_ids.masked_fill(~maskable, -1)
    previous = F.pad(w[:, :-1], (1, 0), value=-1)  # the word id one step to the left
    starts = (w >= 0) & (w != previous)
    positions = torch.arange(w.shape[1]).expand_as(w)
    return torch.where(starts, positions, 0).cummax(dim=1).values


def _consecutive(documents: Sequence[Sequence[S]]) -> tuple[list[list[S]], list[tuple[int, int]]]:
    """The documents as lists, and ``(document, sentence)`` of every sentence followed by another."""
    if isinstance(documents, str) or any(isinstance(d, str) for d in documents):
        raise TypeError("documents must be a list of documents, each a list of sentences: "
                        "wrap one document's sentences in a list, [[s1, s2, ...]]")
    documents = [list(doc) for doc in documents]
    anchors = [(i, j) for i, doc in enumerate(documents) for j in range(len(doc) - 1)]
    if not anchors:
        raise ValueError("no document has 2 or more sentences, so there is no consecutive pair")
    return documents, anchors


def _balanced_labels(n: int, rng: random.Random) -> list[int]:
    labels = [0] * (n - n // 2) + [1] * (n // 2)
    rng.shuffle(labels)
    return labels


def nsp_pairs(documents: Sequence[Sequence[S]], *, seed: int = 0) -> list[tuple[S, S, int]]:
    """Next-sentence-prediction pairs ``(a, b, label)``, in document order (BERT).

    For every consecutive pair of a document, half of the time (exactly, in random order) ``b``
    is kept (label 0), otherwise replaced by a sentence drawn uniformly from the *other*
    documents (label 1).
    """
    documents, anchors = _consecutive(documents)
    if sum(1 for d in documents if len(d)) < 2:
        raise ValueError("nsp_pairs needs at least 2 non-empty documents: random sentences come "
                         "from another document")
    rng = random.Random(seed)
    offsets = [0]  # where each document starts in the list of every sentence
    for doc in documents:
        offsets.append(offsets[-1] + len(doc))
    flat = [s for doc in documents for s in doc]
    pairs = []
    for (i, j), label in zip(anchors, _balanced_labels(len(anchors), rng), strict=True):
        b = documents[i][j + 1]
        if label == 1:  # uniform over the sentences outside document i: skip over its block
            k = rng.randrange(len(flat) - len(documents[i]))
            b = flat[k if k < offsets[i] else k + len(documents[i])]
        pairs.append((documents[i][j], b, label))
    return pairs


def sop_pairs(documents: Sequence[Sequence[S]], *, seed: int = 0) -> list[tuple[S, S, int]]:
    """Sentence-order-prediction pairs ``(a, b, label)`` (ALBERT): every consecutive pair of a
    document, kept in order (label 0) or swapped (label 1), half each. Topic gives nothing away."""
    documents, anchors = _consecutive(documents)
    rng = random.Random(seed)
    pairs = []
    for (i, j), label in zip(anchors, _balanced_labels(len(anchors), rng), strict=True):
        a, b = documents[i][j], documents[i][j + 1]
        pairs.append((a, b, 0) if label == 0 else (b, a, 1))
    return pairs
