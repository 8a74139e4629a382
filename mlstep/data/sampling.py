"""The seeded draws of the corpus generator (:mod:`mlstep.data.corpus`): a random source built
on ``random.Random(seed).random()`` alone, and the small phrases its documents and labeled
records share.

``random()`` is the only method whose sequence Python promises to keep across versions, so every
other draw (an index, a choice, a sample, a shuffle) is made from it here.
"""

from __future__ import annotations

import random

from mlstep.data import lexicon as lx


class _Rng:
    """The few sampling helpers we need, built on ``random()`` only (stable across Pythons)."""

    def __init__(self, seed: int) -> None:
        self._r = random.Random(seed)

    def index(self, n: int) -> int:
        return int(self._r.random() * n)

    def chance(self, p: float) -> bool:
        return self._r.random() < p

    def choice(self, seq):
        return seq[self.index(len(seq))]

    def sample(self, seq, k: int) -> list:
        """``k`` distinct items (a partial Fisher–Yates shuffle of a copy)."""
        pool = list(seq)
        for i in range(k):
            j = i + self.index(len(pool) - i)
            pool[i], pool[j] = pool[j], pool[i]
        return pool[:k]

    def shuffle(self, items: list) -> None:
        for i in range(len(items) - 1, 0, -1):
            j = self.index(i + 1)
            items[i], items[j] = items[j], items[i]


def _a(word: str) -> str:
    """The indefinite article for ``word``."""
    return "an" if word[0] in "aeiou" else "a"


def _org(base: str, topic: lx.Topic) -> str:
    return f"{base} {topic.org_word}"


def _full(rng: _Rng, first: str, p: float = 0.3) -> str:
    """``first``, sometimes with a surname ("anna kovel")."""
    return f"{first} {rng.choice(lx.SURNAMES)}" if rng.chance(p) else first


def _maybe_int(rng: _Rng, p: float = 0.4, attributive: bool = False) -> str:
    """An intensifier and a space, or nothing ("so" only before a predicate: "it was so good")."""
    pool = lx.INTENSIFIERS[:-1] if attributive else lx.INTENSIFIERS
    return rng.choice(pool) + " " if rng.chance(p) else ""
