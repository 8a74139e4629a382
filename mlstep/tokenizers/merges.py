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
    splits = [[sym_id[c] for c in word] for word in words]
    freqs = list(words.values())

    # Counts live in float64 arrays so that each step scores every pair in one vectorised pass;
    # they stay exact integers (< 2**53), so equal scores compare equal.
    sym_freq = np.zeros(2 * len(symbols) + 1024)  # occurrences of each symbol in the current splits
    pair_a, pair_b, pair_freq = np.zeros(1024, np.int64), np.zeros(1024, np.int64), np.zeros(1024)
    pair_id: dict[tuple[int, int], int] = {}
    pair_words: list[set[int]] = []  # the words that contained each pair (checked when used)

    def grow(arr: np.ndarray, n: int) -> np.ndarray:
        return arr if n < len(arr) else np.concatenate([arr, np.zeros_like(arr)])

    def count(w: int, sign: int) -> None:
        """Add (+1) or remove (-1) word w's symbols and pairs from the counts."""
        nonlocal pair_a, pair_b, pair_freq
        f = sign * freqs[w]
        for t in splits[w]:
            sym_freq[t] += f
        for a, b in pairwise(splits[w]):
            p = pair_id.get((a, b))
            if p is None:
                p = pair_id[(a, b)] = len(pair_words)
                pair_a, pair_b, pair_freq = grow(pair_a, p), grow(pair_b, p), grow(pair_freq, p)
                pair_a[p], pair_b[p] = a, b
                pair_words.append(set())
            pair_freq[p] += f
            if sign > 0:
                pair_words[p].add(w)

    for w in range(len(splits)):
        count(w, +1)
    merges: list[tuple[str, str]] = []
    while len(symbols) < max_symbols and pair_words:
        n = len(pair_words)
        pf, pa, pb = pair_freq[:n], pair_a[:n], pair_b[:n]
        score = pf.copy()
        if scoring == "likelihood":
            score = np.divide(pf, sym_freq[pa] * sym_freq[pb], out=np.zeros(n), where=pf > 0)
        score[pf < max(min_frequency, 1)] = -1.0
        best = score.max()
        if best < 0:
            break  # no pair is frequent enough
        p = int(min(np.flatnonzero(score == best), key=lambda c: (-pf[c], symbols[pa[c]], symbols[pb[c]])))
        a, b = int(pa[p]), int(pb[p])
        merges.append((symbols[a], symbols[b]))
        merged = join(symbols[a], symbols[b])
        if merged not in sym_id:
            sym_id[merged] = len(symbols)
            symbols.append(merged)
            sym_freq = grow(sym_freq, len(symbols))
        new = sym_id[merged]
        for w in list(pair_words[p]):
            split = splits[w]
            if not any(x == a and y == b for x, y in pairwise(split)):
                continue  # stale: an earlier merge already changed this word
            count(w, -1)
            out, i = [], 0
            while i < len(split):
                if i + 1 < len(split) and split[i] == a and split[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(split[i])
                    i += 1
            splits[w] = out
            count(w, +1)
        pair_words[p] = set()
    return symbols, merges
