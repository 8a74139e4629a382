"""A WordPiece tokenizer trained from scratch, as BERT uses: normalise, pre-tokenise, learn pieces.

Three stages turn text into ids:

1. **Normalisation** (BERT's ``BasicTokenizer``): control characters are removed, every kind of
   whitespace becomes a space, CJK ideographs get spaces around them, the text is NFC-normalised
   and, when ``lowercase=True``, lower-cased and stripped of accents (NFD, then combining marks
   dropped: "Café" → "cafe").
2. **Pre-tokenisation**: split on whitespace, and every punctuation character (Unicode ``P*`` and
   all non-alphanumeric ASCII) becomes a word of its own: "Hi, you!" → ``hi , you !``.
3. **WordPiece**: each word is cut greedily into the longest pieces found in the vocabulary, left
   to right; a piece that continues a word carries the prefix ``##`` ("playing" → ``play ##ing``).
   A word that cannot be cut, or is longer than 100 characters, becomes ``[UNK]`` as a whole.

Training learns the vocabulary bottom-up ("WordPiece" as described in the Hugging Face course):
start from single characters (``a`` at the start of a word, ``##a`` inside one) and repeatedly
merge the adjacent pair with the best likelihood score ``freq(ab) / (freq(a) · freq(b))``. The
score prefers pairs whose parts rarely occur apart, unlike BPE, which merges the most frequent
pair. The default here is ``scoring="frequency"`` (BPE's rule, also what the ``tokenizers``
library's WordPiece trainer does): on a small vocabulary it keeps frequent words whole, where the
likelihood score spends the vocabulary on pieces of rare words and splits "the" into ``th ##e``
(chapter 03 compares the two; pass ``scoring="likelihood"`` for the course's formula). Training works on the
word-frequency table with incremental pair counts, so a million words take a few seconds.

The special tokens ``[PAD] [UNK] [CLS] [SEP] [MASK]`` get ids 0..4 in a trained vocabulary, and
the exact strings are recognised when they appear in raw text ("the film was [MASK] .").
``decode`` returns the *normalised, pre-tokenised* text: words and punctuation joined by single
spaces, ``##`` pieces glued to the piece before them.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch

__all__ = ["WordPieceTokenizer", "Encoding", "normalize_and_pretokenize", "SPECIAL_TOKENS"]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_INPUT_CHARS_PER_WORD = 100  # longer words become [UNK], as in BERT
_FORMAT, _FORMAT_VERSION = "mlstep-wordpiece", 1
_CACHE_SIZE = 200_000  # word -> pieces cache entries before it is cleared


# --- normalisation and pre-tokenisation ----------------------------------------------------------

def _is_cjk(cp: int) -> bool:
    """CJK Unified Ideographs blocks, the set BERT puts spaces around (not kana or hangul)."""
    return (
        0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F
    )


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    # BERT treats every non-alphanumeric ASCII character ($, ^, `, ...) as punctuation too.
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _clean_rule(cp: int) -> str | None:
    ch = chr(cp)
    if ch in " \t\n\r" or unicodedata.category(ch) == "Zs":
        return " "
    if cp == 0 or cp == 0xFFFD or unicodedata.category(ch).startswith("C"):
        return None  # control / format / unassigned characters are dropped
    return f" {ch} " if _is_cjk(cp) else ch


class _CharTable(dict):
    """A ``str.translate`` table that classifies a code point on first sight and caches it.

    ``str.translate`` then runs in C for every character already seen, which makes normalising
    a large corpus fast without a hand-written table of all of Unicode.
    """

    def __init__(self, rule: Callable[[int], str | None]):
        super().__init__()
        self.rule = rule

    def __missing__(self, cp: int) -> str | None:
        value = self[cp] = self.rule(cp)
        return value


_CLEAN = _CharTable(_clean_rule)
_STRIP_ACCENTS = _CharTable(lambda cp: None if unicodedata.category(chr(cp)) == "Mn" else chr(cp))
_SPACE_PUNCT = _CharTable(lambda cp: f" {chr(cp)} " if _is_punctuation(chr(cp)) else chr(cp))


def normalize_and_pretokenize(text: str, lowercase: bool = True) -> list[str]:
    """Normalise ``text`` and split it into words, exactly as BERT's ``BasicTokenizer`` does.

    Args:
        text: raw text.
        lowercase: lower-case and strip accents (BERT "uncased").

    Returns:
        The list of words; each punctuation character and each CJK ideograph is a word of its own.
        Special-token strings are *not* recognised here (see ``WordPieceTokenizer.pretokenize``).
    """
    text = unicodedata.normalize("NFC", text.translate(_CLEAN))
    if lowercase:
        text = unicodedata.normalize("NFD", text.lower()).translate(_STRIP_ACCENTS)
    # Spaces around every punctuation character, then one split: each becomes its own word.
    return text.translate(_SPACE_PUNCT).split()


# --- the encoding ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Encoding:
    """One encoded text (or text pair); all lists have the same length.

    ``word_ids[i]`` is the index of the pre-tokenised word (or, with ``is_pretokenized=True``, of
    the given word) that token ``i`` comes from, counted from 0 *within its segment*; it is None
    for [CLS], [SEP] and [PAD]. ``sequence_ids[i]`` says which segment (0 = text, 1 = pair) token
    ``i`` belongs to, None for added special tokens and padding; with it, ``(sequence_ids[i],
    word_ids[i])`` names a word unambiguously.
    """

    ids: list[int]  # token ids
    tokens: list[str]  # the pieces, e.g. ["[CLS]", "play", "##ing", "[SEP]"]
    token_type_ids: list[int]  # segment ids: 0 for [CLS] text [SEP], 1 for pair [SEP]
    attention_mask: list[int]  # 1 = real token, 0 = padding
    word_ids: list[int | None]  # word index within the segment, None for added specials/padding
    sequence_ids: list[int | None]  # 0 or 1 = segment, None for added specials/padding

    def __len__(self) -> int:
        return len(self.ids)


# --- training ---------------------------------------------------------------------------------------

def _learn_pieces(
    word_counts: dict[str, int],
    max_pieces: int,
    min_frequency: int,
    max_piece_length: int | None,
    scoring: str,
) -> list[str]:
    """Learn at most ``max_pieces`` pieces (alphabet first, then merges in order).

    ``scoring="likelihood"`` ranks a pair by ``freq(ab) / (freq(a) · freq(b))``,
    ``scoring="frequency"`` by ``freq(ab)`` alone (BPE's rule). Ties in the score go to the more
    frequent pair, then to the alphabetically first (a, b), so training is deterministic. A merge whose result already exists (the same string reached by
    another split) reuses that piece.
    """
    symbols: list[str] = sorted(
        {w[0] for w in word_counts} | {"##" + c for w in word_counts for c in w[1:]}
    )
    if len(symbols) > max_pieces:
        raise ValueError(
            f"vocab_size leaves room for {max_pieces} pieces after the special tokens, but the "
            f"training text has an alphabet of {len(symbols)} pieces (characters at the start "
            f"and inside words); raise vocab_size to at least {len(symbols) + len(SPECIAL_TOKENS)}"
        )
    sym_id = {s: i for i, s in enumerate(symbols)}
    sym_len = [len(s) - 2 if s.startswith("##") else len(s) for s in symbols]
    splits = [[sym_id[w[0]]] + [sym_id["##" + c] for c in w[1:]] for w in word_counts]
    freqs = list(word_counts.values())

    # Counts live in float64 arrays so that each step scores every pair in one vectorised pass;
    # they stay exact integers (< 2**53), so equal scores compare equal.
    tok_freq = np.zeros(2 * len(symbols) + 1024)  # how often symbol t occurs in the current splits
    pair_a = np.zeros(1024, dtype=np.int64)  # pair p = (pair_a[p], pair_b[p])
    pair_b = np.zeros(1024, dtype=np.int64)
    pair_freq = np.zeros(1024)  # how often pair p occurs in the current splits
    pair_id: dict[tuple[int, int], int] = {}
    pair_words: list[set[int]] = []  # words that contained pair p (may be stale: checked on use)

    def grow(arr: np.ndarray, n: int) -> np.ndarray:
        return arr if n < len(arr) else np.concatenate([arr, np.zeros_like(arr)])

    def count(w: int, sign: int) -> None:
        """Add (sign=+1) or remove (sign=-1) word w's symbols and pairs from the counts."""
        nonlocal pair_a, pair_b, pair_freq
        f, split = sign * freqs[w], splits[w]
        for t in split:
            tok_freq[t] += f
        for a, b in pairwise(split):
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

    n_pieces = len(symbols)
    while n_pieces < max_pieces and pair_words:
        n = len(pair_words)
        pf, pa, pb = pair_freq[:n], pair_a[:n], pair_b[:n]
        if scoring == "likelihood":
            denom = tok_freq[pa] * tok_freq[pb]
            score = np.divide(pf, denom, out=np.zeros(n), where=pf > 0)
        else:
            score = pf.copy()
        allowed = pf >= max(min_frequency, 1)
        if max_piece_length is not None:
            lengths = np.asarray(sym_len)
            allowed &= lengths[pa] + lengths[pb] <= max_piece_length
        score[~allowed] = -1.0
        best = score.max()
        if best < 0:
            break  # no pair left that may be merged
        cands = np.flatnonzero(score == best)
        p = int(min(cands, key=lambda c: (-pf[c], symbols[pa[c]], symbols[pb[c]])))
        a, b = int(pa[p]), int(pb[p])

        merged = symbols[a] + symbols[b][2:]  # b is always a "##" piece: it follows a
        new = sym_id.get(merged)
        if new is None:
            new = sym_id[merged] = len(symbols)
            symbols.append(merged)
            sym_len.append(sym_len[a] + sym_len[b])
            tok_freq = grow(tok_freq, new)
            n_pieces += 1
        for w in list(pair_words[p]):
            split = splits[w]
            if not any(x == a and y == b for x, y in pairwise(split)):
                continue  # stale entry: an earlier merge already changed this word
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
    return symbols


# --- the tokenizer --------------------------------------------------------------------------------

class WordPieceTokenizer:
    """BERT-style WordPiece tokenizer: ``train`` one, ``encode``/``decode``, ``save``/``load``.

    Args:
        vocab: the pieces in id order (a trained vocabulary has the special tokens at 0..4; a
            BERT ``vocab.txt`` read as lines also works: special ids are looked up by name).
        lowercase: lower-case and strip accents before splitting (BERT "uncased").
    """

    def __init__(self, vocab: Sequence[str], lowercase: bool = True):
        vocab = list(vocab)
        if len(set(vocab)) != len(vocab):
            dupes = sorted(t for t, c in Counter(vocab).items() if c > 1)[:5]
            raise ValueError(f"vocabulary has duplicate tokens, e.g. {dupes}")
        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise ValueError(f"vocabulary lacks the special tokens {missing}")
        self._itos: list[str] = vocab
        self._stoi: dict[str, int] = {t: i for i, t in enumerate(vocab)}
        self.lowercase = bool(lowercase)
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
            self._stoi[t] for t in SPECIAL_TOKENS
        )
        self.special_ids: tuple[int, ...] = tuple(sorted(self._stoi[t] for t in SPECIAL_TOKENS))
        # Only pieces up to the longest in the vocabulary can match, which bounds the search.
        self._max_piece = max(len(t) - 2 if t.startswith("##") else len(t) for t in vocab)
        self._special_re = re.compile("(" + "|".join(map(re.escape, SPECIAL_TOKENS)) + ")")
        self._cache: dict[str, list[int]] = {}

    # -- training -----------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 2000,
        min_frequency: int = 2,
        lowercase: bool = True,
        max_piece_length: int | None = None,
        scoring: str = "frequency",
    ) -> WordPieceTokenizer:
        """Learn a WordPiece vocabulary from ``texts``.

        Args:
            texts: an iterable of strings (documents or sentences).
            vocab_size: the largest vocabulary wanted, special tokens included; training stops
                earlier when no pair is left to merge. Must hold the 5 specials and the alphabet.
            min_frequency: a pair must occur at least this often to be merged.
            lowercase: lower-case and strip accents (BERT "uncased").
            max_piece_length: if set, no piece longer than this many characters (without ``##``)
                is made.
            scoring: "likelihood" merges the pair with the best ``freq(ab) / (freq(a)·freq(b))``
                (WordPiece as in the Hugging Face course); "frequency" merges the most frequent
                pair (BPE's rule, which the ``tokenizers`` library's WordPiece trainer also uses).
                The likelihood score favours pairs of *rare* parts, so a small vocabulary keeps
                frequent words split ("th ##e"); "frequency" gives fewer pieces per word.

        Returns:
            The trained tokenizer; specials at ids 0..4, then the alphabet (sorted), then the
            merged pieces in the order they were learned.

        Words longer than 100 characters are left out of training (they encode as [UNK]).
        """
        if isinstance(texts, str):
            raise TypeError("train expects an iterable of texts, got a single str; wrap it in a list")
        if not isinstance(vocab_size, int) or vocab_size <= len(SPECIAL_TOKENS):
            raise ValueError(f"vocab_size must be an int > {len(SPECIAL_TOKENS)}, got {vocab_size!r}")
        if scoring not in ("likelihood", "frequency"):
            raise ValueError(f"scoring must be 'likelihood' or 'frequency', got {scoring!r}")
        if max_piece_length is not None and max_piece_length < 1:
            raise ValueError(f"max_piece_length must be >= 1 or None, got {max_piece_length}")
        probe = cls(SPECIAL_TOKENS, lowercase=lowercase)  # only its pre-tokeniser is used
        counts: Counter[str] = Counter()
        n_texts = 0
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"training texts must be str, got {type(text).__name__} at {n_texts}")
            counts.update(probe.pretokenize(text))
            n_texts += 1
        for w in [w for w in counts if w in SPECIAL_TOKENS or len(w) > MAX_INPUT_CHARS_PER_WORD]:
            del counts[w]
        if not counts:
            raise ValueError(f"no words to train on in {n_texts} texts (empty corpus?)")
        pieces = _learn_pieces(
            dict(counts), vocab_size - len(SPECIAL_TOKENS), min_frequency, max_piece_length, scoring
        )
        return cls(list(SPECIAL_TOKENS) + pieces, lowercase=lowercase)

    # -- vocabulary -----------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self._itos)

    def __len__(self) -> int:
        return len(self._itos)

    @property
    def vocab(self) -> dict[str, int]:
        """A copy of the token → id mapping."""
        return dict(self._stoi)

    def token_to_id(self, token: str) -> int | None:
        """The id of ``token``, or None when it is not in the vocabulary."""
        return self._stoi.get(token)

    def id_to_token(self, i: int) -> str:
        """The token with id ``i``; IndexError names the valid range."""
        if not 0 <= int(i) < len(self._itos):
            raise IndexError(f"token id {i} out of range [0, {len(self._itos)})")
        return self._itos[int(i)]

    def __repr__(self) -> str:
        n_cont = sum(t.startswith("##") for t in self._itos)
        return (
            f"WordPieceTokenizer(vocab_size={self.vocab_size}, lowercase={self.lowercase}, "
            f"word-initial pieces={self.vocab_size - n_cont - len(SPECIAL_TOKENS)}, "
            f"'##' pieces={n_cont})"
        )

    # -- tokenising -----------------------------------------------------------------------------

    def pretokenize(self, text: str) -> list[str]:
        """Normalised words of ``text``; special-token strings ("[MASK]") are kept as words."""
        words: list[str] = []
        for i, part in enumerate(self._special_re.split(text)):
            if i % 2:  # the capturing split puts the matched special tokens at odd positions
                words.append(part)
            elif part:
                words.extend(normalize_and_pretokenize(part, self.lowercase))
        return words

    def _word_ids(self, word: str) -> list[int]:
        """Greedy longest-match-first pieces of one word (BERT's WordpieceTokenizer)."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        if word in SPECIAL_TOKENS:
            ids = [self._stoi[word]]
        elif len(word) > MAX_INPUT_CHARS_PER_WORD:
            ids = [self.unk_id]
        else:
            ids, start = [], 0
            while start < len(word):
                end = min(len(word), start + self._max_piece)
                while end > start:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    if piece in self._stoi:
                        ids.append(self._stoi[piece])
                        break
                    end -= 1
                if end == start:  # no piece fits here: the whole word is unknown
                    ids = [self.unk_id]
                    break
                start = end
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[word] = ids
        return ids

    def tokenize(self, text: str) -> list[str]:
        """The pieces of ``text`` (no [CLS]/[SEP] added)."""
        return [self._itos[i] for w in self.pretokenize(text) for i in self._word_ids(w)]

    def _segment(self, text: str | Sequence[str], is_pretokenized: bool) -> tuple[list, list]:
        """(ids, word_ids) of one segment."""
        if is_pretokenized:
            if isinstance(text, str) or not all(isinstance(w, str) for w in text):
                raise TypeError("with is_pretokenized=True, pass a list of words (str)")
            groups = [self.pretokenize(w) for w in text]  # a given word may split further ("U.S.")
        else:
            if not isinstance(text, str):
                raise TypeError(
                    f"encode expects a str, got {type(text).__name__}; for a list of words "
                    "pass is_pretokenized=True"
                )
            groups = [[w] for w in self.pretokenize(text)]
        ids: list[int] = []
        word_ids: list[int] = []
        cache = self._cache
        for wi, words in enumerate(groups):
            for w in words:
                pieces = cache.get(w) or self._word_ids(w)  # the cache hit is the hot path
                ids += pieces
                word_ids += [wi] * len(pieces)
        return ids, word_ids

    def encode(
        self,
        text: str | Sequence[str],
        pair: str | Sequence[str] | None = None,
        max_length: int | None = None,
        truncation: bool = True,
        padding: bool | str = False,
        add_special_tokens: bool = True,
        is_pretokenized: bool = False,
    ) -> Encoding:
        """Encode a text, or a text pair, as BERT does.

        Args:
            text: the text (or, with ``is_pretokenized=True``, a list of words).
            pair: optional second segment, giving ``[CLS] text [SEP] pair [SEP]``.
            max_length: total length, special tokens included, for truncation and padding.
            truncation: cut to ``max_length`` from the end; for pairs "longest first" (one token
                at a time from the longer segment, from ``pair`` on ties, as Hugging Face does).
                With ``truncation=False`` a longer sequence is returned whole.
            padding: False = none; True or "max_length" = pad with [PAD] up to ``max_length``
                ("longest" is accepted and does nothing for a single sequence).
            add_special_tokens: add [CLS]/[SEP] (token type 0 up to the first [SEP], then 1).
            is_pretokenized: ``text``/``pair`` are lists of words, e.g. tagging data; ``word_ids``
                then index those words (a word may still split at punctuation; one that
                normalises to nothing, like "" or a control character, gets no token).

        Returns:
            An :class:`Encoding`.
        """
        a_ids, a_words = self._segment(text, is_pretokenized)
        b_ids, b_words = self._segment(pair, is_pretokenized) if pair is not None else ([], [])
        n_special = (3 if pair is not None else 2) if add_special_tokens else 0
        if padding not in (False, None, True, "max_length", "longest", "do_not_pad"):
            raise ValueError(f"padding must be False, True, 'max_length' or 'longest', got {padding!r}")
        pad_to_max = padding in (True, "max_length")
        if max_length is not None:
            if not isinstance(max_length, int) or max_length < max(n_special, 1):
                raise ValueError(
                    f"max_length={max_length!r} cannot hold the {n_special} special tokens of "
                    f"{'[CLS] a [SEP] b [SEP]' if pair is not None else '[CLS] a [SEP]'}; "
                    f"use max_length >= {max(n_special, 1)}"
                )
            if truncation:
                n_a, n_b = len(a_ids), len(b_ids)
                budget = max_length - n_special
                if n_a + n_b > budget:  # "longest first": shorten the longer side, pair on ties
                    if pair is None:
                        n_a = budget
                    else:
                        n_a, n_b = self._longest_first(n_a, n_b, budget)
                    a_ids, a_words, b_ids, b_words = a_ids[:n_a], a_words[:n_a], b_ids[:n_b], b_words[:n_b]
        elif pad_to_max:
            raise ValueError(f"padding={padding!r} needs max_length")

        if add_special_tokens:
            ids = [self.cls_id, *a_ids, self.sep_id]
            word_ids = [None, *a_words, None]
            seq_ids: list[int | None] = [None, *[0] * len(a_ids), None]
            types = [0] * len(ids)
            if pair is not None:
                ids += [*b_ids, self.sep_id]
                word_ids += [*b_words, None]
                seq_ids += [*[1] * len(b_ids), None]
                types += [1] * (len(b_ids) + 1)
        else:
            ids, word_ids = a_ids + b_ids, a_words + b_words
            seq_ids = [0] * len(a_ids) + [1] * len(b_ids)
            types = seq_ids.copy()
        mask = [1] * len(ids)
        if pad_to_max and len(ids) < max_length:
            n_pad = max_length - len(ids)
            ids, types, mask = ids + [self.pad_id] * n_pad, types + [0] * n_pad, mask + [0] * n_pad
            word_ids, seq_ids = word_ids + [None] * n_pad, seq_ids + [None] * n_pad
        return Encoding(
            ids=ids,
            tokens=[self._itos[i] for i in ids],
            token_type_ids=types,
            attention_mask=mask,
            word_ids=word_ids,
            sequence_ids=seq_ids,
        )

    @staticmethod
    def _longest_first(n_a: int, n_b: int, budget: int) -> tuple[int, int]:
        """Lengths after removing one token at a time from the longer segment (pair on ties)."""
        budget = max(budget, 0)
        while n_a + n_b > budget:
            if n_a > n_b:
                n_a -= 1
            else:
                n_b -= 1
        return n_a, n_b

    def encode_batch(
        self,
        texts: Sequence[str] | Sequence[Sequence[str]],
        pairs: Sequence[str] | Sequence[Sequence[str]] | None = None,
        max_length: int | None = None,
        padding: bool | str = "longest",
        return_tensors: str | None = "pt",
        truncation: bool = True,
        add_special_tokens: bool = True,
        is_pretokenized: bool = False,
    ) -> dict:
        """Encode a batch and pad it to one length.

        Args:
            texts: the texts (or lists of words with ``is_pretokenized=True``).
            pairs: optional second segments, one per text.
            max_length: truncate each sequence to this length (special tokens included).
            padding: "longest" (or True) = pad to the longest in the batch; "max_length" = pad to
                ``max_length``; False = no padding (then ``return_tensors`` must be None unless
                all sequences have the same length).
            return_tensors: "pt" for torch.long tensors ``(B, T)``, None for lists of lists.
            truncation, add_special_tokens, is_pretokenized: as in :meth:`encode`.

        Returns:
            A dict with ``input_ids``, ``token_type_ids``, ``attention_mask`` (``(B, T)``) and
            ``word_ids`` / ``sequence_ids`` (lists of lists, None at specials and padding).
        """
        if isinstance(texts, str):
            raise TypeError("encode_batch expects a list of texts, got a single str; use encode")
        texts = list(texts)
        if not texts:
            raise ValueError("encode_batch got an empty list of texts")
        if pairs is not None:
            pairs = list(pairs)
            if len(pairs) != len(texts):
                raise ValueError(f"got {len(texts)} texts but {len(pairs)} pairs")
        if return_tensors not in ("pt", None):
            raise ValueError(f"return_tensors must be 'pt' or None, got {return_tensors!r}")
        if padding not in (False, None, True, "longest", "max_length", "do_not_pad"):
            raise ValueError(f"padding must be 'longest', 'max_length' or False, got {padding!r}")
        if padding == "max_length" and max_length is None:
            raise ValueError("padding='max_length' needs max_length")
        encs = [
            self.encode(t, pairs[i] if pairs is not None else None, max_length=max_length,
                        truncation=truncation, add_special_tokens=add_special_tokens,
                        is_pretokenized=is_pretokenized)
            for i, t in enumerate(texts)
        ]
        longest = max(len(e) for e in encs)
        if padding == "max_length":
            target = max(max_length, longest)  # longer only with truncation=False
        elif padding in (True, "longest"):
            target = longest
        else:
            target = None

        def pad(rows: list[list], value) -> list[list]:
            return rows if target is None else [r + [value] * (target - len(r)) for r in rows]

        out = {
            "input_ids": pad([e.ids for e in encs], self.pad_id),
            "token_type_ids": pad([e.token_type_ids for e in encs], 0),
            "attention_mask": pad([e.attention_mask for e in encs], 0),
        }
        if return_tensors == "pt":
            if len({len(r) for r in out["input_ids"]}) > 1:
                raise ValueError(
                    "sequences have different lengths and padding=False: pass padding='longest' "
                    "or return_tensors=None"
                )
            out = {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}  # (B, T)
        out["word_ids"] = pad([e.word_ids for e in encs], None)
        out["sequence_ids"] = pad([e.sequence_ids for e in encs], None)
        return out

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        """Text of ``ids``: pieces joined by spaces, ``##`` pieces glued to the one before.

        The result is the normalised, pre-tokenised text ("Hello, World!" → "hello , world !").
        ``skip_special_tokens`` drops all five specials, [UNK] included (as Hugging Face does).
        """
        if isinstance(ids, (torch.Tensor, np.ndarray)):
            if ids.ndim != 1:
                raise ValueError(f"decode expects a 1-D sequence of ids, got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        words: list[str] = []
        for i in ids:
            if not 0 <= int(i) < len(self._itos):
                raise ValueError(f"token id {i} out of range [0, {len(self._itos)})")
            i = int(i)
            if skip_special_tokens and i in self.special_ids:
                continue
            tok = self._itos[i]
            if tok.startswith("##") and words:
                words[-1] += tok[2:]
            else:
                words.append(tok)
        return " ".join(words)

    # -- persistence ----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer as JSON (atomically: a temporary file, then a rename)."""
        path = Path(path)
        data = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "lowercase": self.lowercase,
            "max_input_chars_per_word": MAX_INPUT_CHARS_PER_WORD,
            "special_tokens": list(SPECIAL_TOKENS),
            "vocab": self._itos,  # in id order
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, ensure_ascii=False, indent=0)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike) -> WordPieceTokenizer:
        """Read a tokenizer written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer file at {str(path)!r}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{str(path)!r} is not a tokenizer JSON file: {e}") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(f"{str(path)!r} is not an mlstep WordPiece tokenizer file")
        if data.get("version") != _FORMAT_VERSION:
            raise ValueError(
                f"{str(path)!r} has format version {data.get('version')!r}; this mlstep reads "
                f"version {_FORMAT_VERSION}"
            )
        vocab = data.get("vocab")
        if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab):
            raise ValueError(f"{str(path)!r}: 'vocab' must be a list of strings")
        return cls(vocab, lowercase=bool(data.get("lowercase", True)))
