"""Pretraining data transforms: BERT's masked-language-model masking and sentence-pair builders.

* :func:`mask_tokens` turns a batch of token ids into MLM inputs and labels (BERT's 15 % with
  80/10/10, optionally whole-word masking).
* :func:`nsp_pairs` builds next-sentence-prediction pairs (BERT), :func:`sop_pairs`
  sentence-order-prediction pairs (ALBERT), from documents given as lists of sentences.

Shape legend: ``B`` batch, ``T`` sequence length. Every tensor in :func:`mask_tokens` is
``(B, T)``; nothing is reshaped.

Label conventions are Hugging Face's, so labels can be fed to their models too: MLM labels are
``-100`` (PyTorch's ``ignore_index``) where no prediction is asked; NSP label ``0`` = "b really
follows a", ``1`` = "b is a random sentence"; SOP label ``0`` = original order, ``1`` = swapped.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import TypeVar

import torch
from torch import Tensor

__all__ = ["IGNORE_INDEX", "mask_tokens", "nsp_pairs", "sop_pairs"]

IGNORE_INDEX = -100  # label of positions the loss skips (F.cross_entropy's default ignore_index)

S = TypeVar("S")  # a sentence: any type (a str, a list of ids, ...)


# --- masked language modeling -------------------------------------------------------------------

def _check_mask_args(
    input_ids: Tensor,
    vocab_size: int,
    mask_id: int,
    special_ids: Iterable[int],
    mlm_probability: float,
    mask_replace_prob: float,
    random_replace_prob: float,
    generator: torch.Generator | None,
) -> list[int]:
    if not isinstance(input_ids, Tensor):
        raise TypeError(f"input_ids must be a torch.Tensor, got {type(input_ids).__name__}")
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be 2-D (batch, seq_len), got shape {tuple(input_ids.shape)}")
    if input_ids.dtype != torch.long:
        raise TypeError(f"input_ids must be a long (int64) tensor, got {input_ids.dtype}; use .long()")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size <= 0:
        raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}")
    if not 0.0 < mlm_probability < 1.0:
        raise ValueError(f"mlm_probability must be in (0, 1), got {mlm_probability}")
    for name, p in (("mask_replace_prob", mask_replace_prob), ("random_replace_prob", random_replace_prob)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {p}")
    if mask_replace_prob + random_replace_prob > 1.0 + 1e-12:
        raise ValueError(
            f"mask_replace_prob + random_replace_prob must not exceed 1, got "
            f"{mask_replace_prob} + {random_replace_prob}"
        )
    specials = sorted({int(i) for i in (special_ids.tolist() if isinstance(special_ids, Tensor) else special_ids)}
                      | {int(mask_id)})
    bad = [i for i in specials if not 0 <= i < vocab_size]
    if bad:
        raise ValueError(f"mask_id/special_ids {bad} are outside the vocabulary [0, {vocab_size})")
    if len(specials) >= vocab_size:
        raise ValueError(
            f"every id in the vocabulary of size {vocab_size} is special: no token is left to mask "
            "or to draw as a random replacement"
        )
    if input_ids.numel() > 0:
        lo, hi = int(input_ids.min()), int(input_ids.max())
        if lo < 0 or hi >= vocab_size:
            raise ValueError(f"input_ids must lie in [0, {vocab_size}), found values in [{lo}, {hi}]")
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(
            f"generator must be a CPU torch.Generator (masks are drawn on the CPU so that a seed "
            f"gives the same masks on every device), got one on {generator.device}"
        )
    return specials


def _check_aux(name: str, x: Tensor | None, shape: torch.Size) -> Tensor | None:
    if x is None:
        return None
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.shape != shape:
        raise ValueError(f"{name} must have the shape of input_ids {tuple(shape)}, got {tuple(x.shape)}")
    if x.dtype.is_floating_point or x.dtype.is_complex:
        raise TypeError(f"{name} must be an integer or bool tensor, got {x.dtype}")
    return x.cpu()


def mask_tokens(
    input_ids: Tensor,
    *,
    vocab_size: int,
    mask_id: int,
    special_ids: Iterable[int],
    mlm_probability: float = 0.15,
    generator: torch.Generator | None = None,
    word_ids: Tensor | None = None,
    attention_mask: Tensor | None = None,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    at_least_one: bool = False,
) -> tuple[Tensor, Tensor]:
    """BERT's masked-language-model corruption: returns ``(inputs, labels)``, both ``(B, T)``.

    Each *maskable* position (not a special id, not padding) is chosen with probability
    ``mlm_probability``. A chosen position gets label = its original id and its input becomes
    ``mask_id`` with probability ``mask_replace_prob`` (80 %), a random non-special id with
    probability ``random_replace_prob`` (10 %), or stays unchanged (the other 10 %; the model must
    still predict it, so it cannot learn that only ``[MASK]`` positions matter). Every other
    position gets label ``-100`` and keeps its input. A random replacement may by chance equal the
    original id (probability 1 / number of non-special ids), exactly as in BERT.

    Rates hold in expectation (independent draws per position, as in BERT and Hugging Face's
    ``DataCollatorForLanguageModeling``), so a short sequence can get no masked position at all;
    ``at_least_one=True`` then masks one maskable position (one word with ``word_ids``) of each
    such sequence, which raises the rate slightly above ``mlm_probability``.

    Whole-word masking (``word_ids`` given): a *word* is a maximal run of consecutive maskable
    positions sharing the same non-negative id (so ids that restart in the second sentence of a
    pair are fine); ids at special or padding positions are ignored. Each word is chosen with
    probability ``mlm_probability``, so each token is still masked with that probability and
    ~15 % of *tokens* are masked. All pieces of a chosen word get labels; the 80/10/10 treatment
    is then drawn **independently per piece**, as in Google's original BERT whole-word masking.
    (Hugging Face's whole-word collator replaces every chosen piece by ``[MASK]``: pass
    ``mask_replace_prob=1.0`` to get that.)

    Randomness: only ``generator`` is used, which must be a **CPU** ``torch.Generator``; every
    draw happens on the CPU and the results are moved to ``input_ids.device``, so one seed gives
    the same masks on CPU and GPU and the global RNG is left alone. With ``generator=None`` the
    global CPU RNG is used instead (PyTorch's usual convention, so ``mlstep.set_seed`` makes
    it reproducible). The number of random numbers drawn depends only on the shape, never on
    the token values. ``input_ids`` is not modified.

    Args:
        input_ids: ``(B, T)`` long tensor of token ids in ``[0, vocab_size)``.
        vocab_size: size of the vocabulary.
        mask_id: id of ``[MASK]``; always treated as special (never chosen, never drawn).
        special_ids: ids never chosen and never drawn as random tokens (PAD, CLS, SEP, UNK, ...).
        mlm_probability: probability of choosing each maskable token (word), in ``(0, 1)``.
        generator: CPU ``torch.Generator`` for every random draw (None: global RNG).
        word_ids: optional ``(B, T)`` integer tensor, the word index of each piece, ``-1`` for
            specials and padding; turns on whole-word masking.
        attention_mask: optional ``(B, T)``, 1 = real token, 0 = padding (never chosen).
        mask_replace_prob: share of chosen positions replaced by ``mask_id`` (BERT: 0.8).
        random_replace_prob: share replaced by a random non-special id (BERT: 0.1).
        at_least_one: guarantee one chosen position (word) in each sequence that has any
            maskable position.

    Returns:
        ``(inputs, labels)``: new long tensors ``(B, T)`` on ``input_ids.device``; ``labels`` is
        the original id at chosen positions and ``-100`` elsewhere.
    """
    specials = _check_mask_args(
        input_ids, vocab_size, mask_id, special_ids, mlm_probability,
        mask_replace_prob, random_replace_prob, generator,
    )
    shape = input_ids.shape
    word_ids = _check_aux("word_ids", word_ids, shape)
    attention_mask = _check_aux("attention_mask", attention_mask, shape)
    ids = input_ids.detach().cpu()  # (B, T); all the work is done on the CPU, then moved back

    is_special = torch.zeros(vocab_size, dtype=torch.bool)
    is_special[specials] = True
    maskable = ~is_special[ids]  # (B, T) lookup: True where the token may be chosen
    if attention_mask is not None:
        maskable &= attention_mask.bool()

    # Fixed draws, independent of the token values: one uniform per position to choose, one to
    # pick mask/random/keep, one random id per position.
    choose_u = torch.rand(shape, generator=generator)  # (B, T)
    replace_u = torch.rand(shape, generator=generator)  # (B, T)
    normal_ids = (~is_special).nonzero().squeeze(1)  # (K,) the non-special ids
    random_ids = normal_ids[torch.randint(len(normal_ids), shape, generator=generator)]  # (B, T)

    if word_ids is not None:
        # Each piece takes the uniform of its word's first piece, so a word is chosen as a unit.
        w = word_ids.long().masked_fill(~maskable, -1)  # (B, T); non-maskable pieces belong to no word
        prev = torch.cat([torch.full_like(w[:, :1], -1), w[:, :-1]], dim=1)  # (B, T) id one step left
        starts = (w >= 0) & (w != prev)  # first piece of each word
        pos = torch.arange(shape[1]).expand(shape)  # (B, T)
        first = torch.where(starts, pos, torch.zeros_like(pos)).cummax(dim=1).values  # (B, T)
        choose_u = choose_u.gather(1, first)  # (B, T); meaningful at maskable positions only
    chosen = maskable & (choose_u < mlm_probability)  # (B, T)

    if at_least_one:
        # Rows with a maskable position but none chosen: take the position (word) with the
        # smallest uniform; uniforms are i.i.d., so that is a uniformly random position (word).
        empty = maskable.any(dim=1) & ~chosen.any(dim=1)  # (B,)
        u = choose_u.masked_fill(~maskable, 2.0)  # (B, T); 2 > any uniform
        smallest = u == u.min(dim=1, keepdim=True).values  # (B, T); all pieces of one word
        chosen |= smallest & maskable & empty[:, None]

    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))  # (B, T)
    to_mask = chosen & (replace_u < mask_replace_prob)
    to_random = chosen & ~to_mask & (replace_u < mask_replace_prob + random_replace_prob)
    inputs = torch.where(to_mask, torch.full_like(ids, int(mask_id)), ids)  # new tensor
    inputs = torch.where(to_random, random_ids, inputs)
    return inputs.to(input_ids.device), labels.to(input_ids.device)


# --- sentence pairs (NSP, SOP) ------------------------------------------------------------------

def _check_documents(documents: Sequence[Sequence[S]]) -> list[list[S]]:
    if isinstance(documents, (str, bytes)) or not isinstance(documents, Sequence):
        raise TypeError(f"documents must be a list of documents (lists of sentences), got "
                        f"{type(documents).__name__}")
    docs = []
    for i, doc in enumerate(documents):
        if isinstance(doc, (str, bytes)) or not isinstance(doc, Sequence):
            raise TypeError(
                f"document {i} must be a list of sentences, got {type(doc).__name__}; "
                "wrap a single document's sentences in a list: [[s1, s2, ...]]"
            )
        docs.append(list(doc))
    return docs


def _labels(n: int, rng: random.Random, balanced: bool) -> list[int]:
    """``n`` labels in {0, 1}: exactly half each (±1) in random order, or i.i.d. fair coins."""
    if not balanced:
        return [int(rng.random() < 0.5) for _ in range(n)]
    labels = [0] * (n - n // 2) + [1] * (n // 2)
    rng.shuffle(labels)
    return labels


def nsp_pairs(
    documents: Sequence[Sequence[S]], *, seed: int = 0, balanced: bool = True
) -> list[tuple[S, S, int]]:
    """Next-sentence-prediction pairs ``(a, b, label)`` from consecutive sentences (BERT).

    For every consecutive pair ``(a, b)`` of a document, either ``b`` is kept (label ``0``,
    "b follows a") or replaced by a sentence drawn uniformly from all sentences of the *other*
    documents (label ``1``). Pairs come out in document order (shuffle them in the data loader).
    Documents with fewer than two sentences give no pair but may supply random sentences. A
    random sentence can equal the true next one by coincidence if the corpus repeats sentences
    across documents; its label is still ``1``.

    Args:
        documents: list of documents, each a list of sentences of any type.
        seed: seed of the ``random.Random`` that draws labels and random sentences.
        balanced: True: exactly ``ceil(n/2)`` label-0 and ``floor(n/2)`` label-1 pairs in
            random order; False: each label an independent fair coin (balanced in expectation).

    Returns:
        list of ``(a, b, label)``.

    Raises:
        ValueError: fewer than two non-empty documents, or no document with two sentences.
    """
    docs = _check_documents(documents)
    if sum(1 for d in docs if d) < 2:
        raise ValueError(
            f"nsp_pairs needs at least 2 non-empty documents (random sentences come from another "
            f"document), got {sum(1 for d in docs if d)} out of {len(docs)}"
        )
    anchors = [(i, j) for i, d in enumerate(docs) for j in range(len(d) - 1)]
    if not anchors:
        raise ValueError("no document has 2 or more sentences, so there is no consecutive pair")

    flat = [s for d in docs for s in d]  # every sentence, documents one after another
    offsets = [0]
    for d in docs:
        offsets.append(offsets[-1] + len(d))

    rng = random.Random(seed)
    pairs = []
    for (i, j), label in zip(anchors, _labels(len(anchors), rng, balanced), strict=True):
        a = docs[i][j]
        if label == 0:
            b = docs[i][j + 1]
        else:
            # Uniform over the sentences outside document i: draw among the others, then skip
            # over document i's block in the flat list.
            k = rng.randrange(len(flat) - len(docs[i]))
            b = flat[k if k < offsets[i] else k + len(docs[i])]
        pairs.append((a, b, label))
    return pairs


def sop_pairs(
    documents: Sequence[Sequence[S]], *, seed: int = 0, balanced: bool = True
) -> list[tuple[S, S, int]]:
    """Sentence-order-prediction pairs ``(a, b, label)`` (ALBERT).

    Every consecutive pair ``(s_j, s_{j+1})`` of a document is kept in order (label ``0``) or
    swapped to ``(s_{j+1}, s_j)`` (label ``1``). Both sentences always come from the same
    document, so topic gives nothing away, unlike NSP. Pairs come out in document order.

    Args:
        documents: list of documents, each a list of sentences of any type.
        seed: seed of the ``random.Random`` that draws the labels.
        balanced: True: labels exactly balanced (±1) in random order; False: independent coins.

    Returns:
        list of ``(a, b, label)``.

    Raises:
        ValueError: no document has two sentences.
    """
    docs = _check_documents(documents)
    anchors = [(i, j) for i, d in enumerate(docs) for j in range(len(d) - 1)]
    if not anchors:
        raise ValueError("no document has 2 or more sentences, so there is no consecutive pair")
    rng = random.Random(seed)
    pairs = []
    for (i, j), label in zip(anchors, _labels(len(anchors), rng, balanced), strict=True):
        a, b = docs[i][j], docs[i][j + 1]
        pairs.append((a, b, 0) if label == 0 else (b, a, 1))
    return pairs
