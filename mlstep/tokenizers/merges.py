"""Learning a subword vocabulary by merging pairs, the training step WordPiece and BPE share.

Start from single characters (or bytes) and repeatedly merge the adjacent pair of symbols that
scores best, until the vocabulary is full:

* ``scoring="frequency"``: the most frequent pair (BPE's rule; also what the ``tokenizers``
  library's WordPiece trainer does);
* ``scoring="likelihood"``: the best ``freq(ab) / (freq(a) · freq(b))`` (WordPiece as described in
  the Hugging Face course), which prefers pairs whose parts rarely occur apart.

It works on the table of word frequencies, with pair counts updated incrementally, so a million
words take a few seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import numpy as np

__all__ = ["learn_merges"]


def learn_merges(words: dict[tuple[str, ...], int], max_symbols: int, *, min_frequency: int = 2,
                 scoring: str = "frequency", join: Callable[[str, str], str] = str.__add__
                 ) -> tuple[list[str], list[tuple[str, str]]]:
    """Learn merges from ``words``: each word split into its initial symbols, with its count.

    Args:
        words: e.g. ``{("p", "##l", "##a", "##y"): 12}`` (WordPiece) or ``{("Ġ", "t", "h", "e"): 40}`` (BPE).
        max_symbols: the most symbols to end with, initial alphabet included.
        min_frequency: a pair must occur at least this often to be merged.
        scoring: ``"frequency"`` or ``"likelihood"`` (see the module docstring).
        join: the symbol a merge of ``a`` and ``b`` makes (WordPiece drops ``b``'s ``##``).

    Returns:
        ``(symbols, merges)``: the sorted alphabet then each new symbol in the order it was made,
        and every merge ``(a, b)`` in order (a merge may make a symbol that already exists).
        Ties go to the more frequent pair, then the alphabetically first, so training is
        deterministic.
    """
    if scoring not in ("likelihood", "frequency"):
        raise ValueError(f"scoring must be 'likelihood' or 'frequency', got {scoring!r}")
    symbols = sorted({c for word in words for c in word})
    if len(symbols) > max_symbols:
        raise ValueError(f"the vocabulary leaves room for {max_symbols} symbols but the training text "
                         f"has an alphabet of {len(symbols)}; raise vocab_size")
    sym_id = {s: i for i, s in enumerate(symbols)}
    counts = _PairCounts([[sym_id[c] for c in word] for word in words], list(words.values()), len(symbols))
    merges: list[tuple[str, str]] = []
    while len(symbols) < max_symbols and counts.pair_words:
        p = counts.best_pair(symbols, scoring, min_frequency)
        if p is None:
            break  # no pair is frequent enough
        a, b = int(counts.pair_a[p]), int(counts.pair_b[p])
        merges.append((symbols[a], symbols[b]))
        merged = join(symbols[a], symbols[b])
        if merged not in sym_id:
            sym_id[merged] = len(symbols)
            symbols.append(merged)
        counts.merge(p, sym_id[merged])
    return symbols, merges


def _grow(arr: np.ndarray, n: int) -> np.ndarray:
    """``arr``, doubled in length when it has no index ``n``."""
    return arr if n < len(arr) else np.concatenate([arr, np.zeros_like(arr)])


def _merged(split: list[int], a: int, b: int, new: int) -> list[int]:
    """``split`` with each adjacent ``a, b`` replaced by ``new``, from left to right."""
    out, i = [], 0
    while i < len(split):
        if i + 1 < len(split) and split[i] == a and split[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(split[i])
            i += 1
    return out


class _PairCounts:
    """Every word's current split (symbol ids), and how often each symbol and adjacent pair occurs.

    Counts live in float64 arrays so that each step scores every pair in one vectorised pass;
    they stay exact integers (< 2**53), so equal scores compare equal.
    """

    def __init__(self, splits: list[list[int]], freqs: list[int], n_symbols: int):
        self.splits, self.freqs = splits, freqs
        self.sym_freq = np.zeros(2 * n_symbols + 1024)  # occurrences of each symbol in the current splits
        self.pair_a, self.pair_b = np.zeros(1024, np.int64), np.zeros(1024, np.int64)
        self.pair_freq = np.zeros(1024)
        self.pair_id: dict[tuple[int, int], int] = {}
        self.pair_words: list[set[int]] = []  # the words that contained each pair (checked when used)
        for w in range(len(splits)):
            self.count(w, +1)

    def count(self, w: int, sign: int) -> None:
        """Add (+1) or remove (-1) word w's symbols and pairs from the counts."""
        f = sign * self.freqs[w]
        for t in self.splits[w]:
            self.sym_freq[t] += f
        for a, b in pairwise(self.splits[w]):
            p = self.pair_id.get((a, b))
            if p is None:
                p = self.pair_id[(a, b)] = len(self.pair_words)
                self.pair_a, self.pair_b = _grow(self.pair_a, p), _grow(self.pair_b, p)
                self.pair_freq = _grow(self.pair_freq, p)
                self.pair_a[p], self.pair_b[p] = a, b
                self.pair_words.append(set())
            self.pair_freq[p] += f
            if sign > 0:
                self.pair_words[p].add(w)

    def best_pair(self, symbols: list[str], scoring: str, min_frequency: int) -> int | None:
        """The pair that scores best (ties: more frequent, then alphabetically first), None when no
        pair occurs ``min_frequency`` times."""
        n = len(self.pair_words)
        pf, pa, pb = self.pair_freq[:n], self.pair_a[:n], self.pair_b[:n]
        score = pf.copy()
        if scoring == "likelihood":
            score = np.divide(pf, self.sym_freq[pa] * self.sym_freq[pb], out=np.zeros(n), where=pf > 0)
        score[pf < max(min_frequency, 1)] = -1.0
        best = score.max()
        if best < 0:
            return None
        ties = np.flatnonzero(score == best)
        return int(min(ties, key=lambda c: (-pf[c], symbols[pa[c]], symbols[pb[c]])))

    def merge(self, p: int, new: int) -> None:
        """Replace pair ``p`` by the symbol ``new`` in every word that still contains it."""
        a, b = int(self.pair_a[p]), int(self.pair_b[p])
        self.sym_freq = _grow(self.sym_freq, new + 1)  # room for the new symbol's count
        for w in list(self.pair_words[p]):
            if not any(x == a and y == b for x, y in pairwise(self.splits[w])):
                continue  # stale: an earlier merge already changed this word
            self.count(w, -1)
            self.splits[w] = _merged(self.splits[w], a, b, new)
            self.count(w, +1)
        self.pair_words[p] = set()
