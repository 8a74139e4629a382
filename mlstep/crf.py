"""A linear-chain CRF output layer for tagging: the forward algorithm and Viterbi decoding.

A per-token softmax picks every word's tag on its own, so nothing stops it from predicting
``O I-PER`` (an inside tag that no ``B-PER`` begins). A conditional random field scores a whole
tag sequence ``y`` of a sentence of ``T`` words::

    score(y) = start[y_1] + Σ_t emissions[t, y_t] + Σ_t transitions[y_{t-1}, y_t] + end[y_T]

and ``p(y | x) = exp(score(y)) / Z`` with ``Z`` summed over all ``C^T`` sequences. The forward
algorithm computes ``log Z`` in ``T`` steps of ``(C × C)``; Viterbi finds the best sequence the
same way, with ``max`` in place of ``logsumexp``. The emissions come from the encoder (one vector
of C scores per word); the CRF adds only ``C² + 2C`` parameters.

Here ``T`` counts words: :func:`pack_words` keeps the first piece of every word, left-aligned,
with a mask ``(B, T)`` that is True on real words. Shapes follow the package legend.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mlstep.finetune import BertForTokenClassification
from mlstep.tools.checks import check_ids
from mlstep.tools.runtime import IGNORE_INDEX
from mlstep.transformer import ClassifierOutput

__all__ = ["CRF", "pack_words", "BertCRFTagger"]


def _check_inputs(emissions: Tensor, mask: Tensor, num_tags: int) -> None:
    if emissions.dim() != 3 or emissions.shape[-1] != num_tags:
        raise ValueError(f"emissions must be (batch, words, num_tags={num_tags}), got {tuple(emissions.shape)}")
    if mask.dtype != torch.bool or mask.shape != emissions.shape[:2]:
        raise ValueError(f"mask must be a boolean (batch, words) = {tuple(emissions.shape[:2])} tensor, "
                         f"got {mask.dtype} {tuple(mask.shape)}")
    lengths = mask.sum(1)
    if not (mask == (torch.arange(mask.shape[1], device=mask.device) < lengths[:, None])).all() or (lengths == 0).any():
        raise ValueError("mask must mark each sentence's words left-aligned (True, ..., True, False, ...), "
                         "with at least one word per sentence")


class CRF(nn.Module):
    """Transition scores between ``num_tags`` tags, on top of per-word emission scores.

    The scores start at zero: an untrained CRF decodes exactly like a per-token argmax.
    """

    def __init__(self, num_tags: int):
        super().__init__()
        if not isinstance(num_tags, int) or num_tags < 2:
            raise ValueError(f"num_tags must be an integer >= 2, got {num_tags!r}")
        self.num_tags = num_tags
        self.start = nn.Parameter(torch.zeros(num_tags))  # (C,) score of the first word's tag
        self.end = nn.Parameter(torch.zeros(num_tags))  # (C,) score of the last word's tag
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))  # (C, C): [previous tag, tag]

    def score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """``score(y)`` of the given tag sequences ``tags (B, T)``: ``(B,)``."""
        real = mask.to(emissions.dtype)  # (B, T)
        emitted = emissions.gather(-1, tags.unsqueeze(-1)).squeeze(-1)  # (B, T)
        moved = self.transitions[tags[:, :-1], tags[:, 1:]]  # (B, T-1)
        last = tags.gather(1, (mask.sum(1) - 1).unsqueeze(1)).squeeze(1)  # (B,) each sentence's last tag
        return (self.start[tags[:, 0]] + (emitted * real).sum(1) + (moved * real[:, 1:]).sum(1)
                + self.end[last])

    def log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """``log Z`` by the forward algorithm: ``(B,)``."""
        # alpha[b, c]: log of the summed exp-scores of every prefix that ends in tag c
        alpha = self.start + emissions[:, 0]  # (B, C)
        for t in range(1, emissions.shape[1]):
            # (B, C_prev, 1) + (C_prev, C) + (B, 1, C) -> logsumexp over the previous tag -> (B, C)
            step = (alpha.unsqueeze(2) + self.transitions + emissions[:, t].unsqueeze(1)).logsumexp(1)
            alpha = torch.where(mask[:, t, None], step, alpha)  # past a sentence's end, alpha stays
        return (alpha + self.end).logsumexp(-1)

    def forward(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """The mean negative log-likelihood ``log Z - score(tags)`` over the batch.

        Args:
            emissions: ``(B, T, C)`` scores of every tag for every word.
            tags: ``(B, T)`` gold tag ids (any value in ``[0, C)`` past a sentence's end).
            mask: ``(B, T)`` boolean, True on each sentence's words, left-aligned.
        """
        _check_inputs(emissions, mask, self.num_tags)
        check_ids("tags", tags, self.num_tags, "num_tags", shape=mask.shape)
        return (self.log_partition(emissions, mask) - self.score(emissions, tags, mask)).mean()

    @torch.no_grad()
    def decode(self, emissions: Tensor, mask: Tensor) -> list[list[int]]:
        """The best tag sequence of every sentence (Viterbi), one list of tag ids per sentence."""
        _check_inputs(emissions, mask, self.num_tags)
        best = self.start + emissions[:, 0]  # (B, C): score of the best prefix ending in each tag
        back = []  # back[t - 1][b, c]: the previous tag on the best path into tag c at word t
        for t in range(1, emissions.shape[1]):
            score, previous = (best.unsqueeze(2) + self.transitions).max(1)  # (B, C) each
            best = torch.where(mask[:, t, None], score + emissions[:, t], best)
            back.append(previous)
        best = best + self.end
        paths = []
        for b, length in enumerate(mask.sum(1).tolist()):
            path = [int(best[b].argmax())]
            for t in range(length - 1, 0, -1):  # follow the pointers back from the last word
                path.append(int(back[t - 1][b, path[-1]]))
            paths.append(path[::-1])
        return paths


def pack_words(pieces: Tensor, starts: Tensor) -> tuple[Tensor, Tensor]:
    """Keep the rows of ``pieces (B, T_pieces, C)`` where ``starts`` is True (each word's first
    piece), left-aligned: ``(words (B, T, C), mask (B, T))`` with T the most words in a sentence."""
    lengths = starts.sum(1)  # (B,)
    mask = torch.arange(int(lengths.max()), device=pieces.device) < lengths[:, None]  # (B, T)
    words = pieces.new_zeros(*mask.shape, pieces.shape[-1])  # (B, T, C)
    words[mask] = pieces[starts]  # (M, C): row-major order keeps each sentence's words in order
    return words, mask


class BertCRFTagger(BertForTokenClassification):
    """:class:`~mlstep.finetune.BertForTokenClassification` whose per-word scores feed a :class:`CRF`.

    Training needs ``labels`` on the first piece of every word and −100 elsewhere (what
    :func:`mlstep.tasks.labeled.encode_tagging` gives); those positions are where words start.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.crf = CRF(self.num_labels)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None,
                attention_mask: Tensor | None = None, labels: Tensor | None = None) -> ClassifierOutput:
        """``logits (B, T, C)`` are the emissions; ``loss`` is the CRF's negative log-likelihood."""
        logits = super().forward(input_ids, token_type_ids, attention_mask).logits  # (B, T, C)
        if labels is None:
            return ClassifierOutput(None, logits)
        check_ids("labels", labels, self.num_labels, "num_labels", shape=input_ids.shape, ignore=IGNORE_INDEX)
        starts = labels != IGNORE_INDEX  # (B, T): each word's first piece
        if not starts.any(1).all():
            raise ValueError("every sentence needs at least one labelled word (labels are all -100 in a row)")
        emissions, mask = pack_words(logits, starts)
        tags, _ = pack_words(labels.unsqueeze(-1), starts)  # (B, T, 1)
        return ClassifierOutput(self.crf(emissions, tags.squeeze(-1), mask), logits)

    @torch.no_grad()
    def decode(self, input_ids: Tensor, token_type_ids: Tensor | None, attention_mask: Tensor | None,
               starts: Tensor) -> list[list[int]]:
        """Viterbi tag ids for the words of each sentence; ``starts (B, T)`` marks first pieces."""
        logits = super().forward(input_ids, token_type_ids, attention_mask).logits  # (B, T, C)
        return self.crf.decode(*pack_words(logits, starts))
