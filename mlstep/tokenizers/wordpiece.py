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

Training (:mod:`mlstep.tokenizers.merges`) learns the vocabulary bottom-up: start from single characters
(``a`` at the start of a word, ``##a`` inside one) and repeatedly merge the best adjacent pair.
The default merges the most frequent pair (``scoring="frequency"``, what the ``tokenizers``
library's WordPiece trainer does); ``scoring="likelihood"`` ranks a pair by
``freq(ab) / (freq(a) · freq(b))``, which on a small vocabulary spends it on pieces of rare words
and splits "the" into ``th ##e`` (chapter 03 compares the two).

The special tokens ``[PAD] [UNK] [CLS] [SEP] [MASK]`` get ids 0..4 in a trained vocabulary, and
the exact strings are recognised when they appear in raw text ("the film was [MASK] .").
``decode`` returns the *normalised, pre-tokenised* text: words and punctuation joined by single
spaces, ``##`` pieces glued to the piece before them.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from mlstep.tokenizers.base import Tokenizer
from mlstep.tokenizers.merges import learn_merges

__all__ = ["WordPieceTokenizer", "normalize_and_pretokenize", "SPECIAL_TOKENS"]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_INPUT_CHARS_PER_WORD = 100  # longer words become [UNK], as in BERT


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


class WordPieceTokenizer(Tokenizer):
    """BERT's WordPiece tokenizer: ``train`` one, ``encode``/``decode``, ``save``/``load``.

    Args:
        vocab: the pieces in id order (a trained vocabulary has the special tokens at 0..4; a
            BERT ``vocab.txt`` read as lines also works: special ids are looked up by name).
        lowercase: lower-case and strip accents before splitting (BERT "uncased").
    """

    FORMAT = "mlstep-wordpiece"
    OPTIONS = ("lowercase",)

    def __init__(self, vocab: Sequence[str], lowercase: bool = True):
        super().__init__(vocab)
        missing = [t for t in SPECIAL_TOKENS if t not in self._stoi]
        if missing:
            raise ValueError(f"vocabulary lacks the special tokens {missing}")
        self.lowercase = bool(lowercase)
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (self._stoi[t] for t in SPECIAL_TOKENS)
        self.special_ids: tuple[int, ...] = tuple(sorted(self._stoi[t] for t in SPECIAL_TOKENS))
        # Only pieces up to the longest in the vocabulary can match, which bounds the search.
        self._max_piece = max(len(t) - 2 if t.startswith("##") else len(t) for t in self._itos)
        self._special_re = re.compile("(" + "|".join(map(re.escape, SPECIAL_TOKENS)) + ")")

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 2000,
        min_frequency: int = 2,
        lowercase: bool = True,
        scoring: str = "frequency",
    ) -> WordPieceTokenizer:
        """Learn a WordPiece vocabulary from ``texts``.

        Args:
            texts: an iterable of strings (documents or sentences).
            vocab_size: the largest vocabulary wanted, special tokens included; training stops
                earlier when no pair is left to merge. Must hold the 5 specials and the alphabet.
            min_frequency: a pair must occur at least this often to be merged.
            lowercase: lower-case and strip accents (BERT "uncased").
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
        # a word starts as its characters, "##" marking those inside it: "play" -> p ##l ##a ##y
        words = {(w[0], *("##" + c for c in w[1:])): n for w, n in counts.items()}
        pieces, _ = learn_merges(words, vocab_size - len(SPECIAL_TOKENS), min_frequency=min_frequency,
                                 scoring=scoring, join=lambda a, b: a + b[2:])
        return cls(list(SPECIAL_TOKENS) + pieces, lowercase=lowercase)

    def __repr__(self) -> str:
        n_cont = sum(t.startswith("##") for t in self._itos)
        return (
            f"WordPieceTokenizer(vocab_size={self.vocab_size}, lowercase={self.lowercase}, "
            f"word-initial pieces={self.vocab_size - n_cont - len(SPECIAL_TOKENS)}, "
            f"'##' pieces={n_cont})"
        )

    def pretokenize(self, text: str) -> list[str]:
        """Normalised words of ``text``; special-token strings ("[MASK]") are kept as words."""
        words: list[str] = []
        for i, part in enumerate(self._special_re.split(text)):
            if i % 2:  # the capturing split puts the matched special tokens at odd positions
                words.append(part)
            elif part:
                words.extend(normalize_and_pretokenize(part, self.lowercase))
        return words

    def _pieces(self, word: str) -> list[int]:
        """Greedy longest-match-first pieces of one word (BERT's WordpieceTokenizer)."""
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
        return ids

    def _join(self, tokens: list[str]) -> str:
        """Pieces joined by spaces, ``##`` pieces glued to the one before: the normalised,
        pre-tokenised text ("Hello, World!" → "hello , world !")."""
        words: list[str] = []
        for tok in tokens:
            if tok.startswith("##") and words:
                words[-1] += tok[2:]
            else:
                words.append(tok)
        return " ".join(words)
