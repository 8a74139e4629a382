"""A byte-level BPE tokenizer trained from scratch, as GPT-2 uses: any text in, no unknown token.

Three stages turn text into ids:

1. **Bytes.** The text is encoded as UTF-8, and each of the 256 byte values is a symbol of the
   base vocabulary. Every string is then encodable — a character never seen in training (an emoji,
   Chinese) costs one token per byte in the worst case — so there is no ``[UNK]``. Bytes are shown
   as printable characters (GPT-2's table: printable ASCII and Latin-1 stand for themselves, the
   others are shifted past 255; a space is ``Ġ``, a newline ``Ċ``).
2. **Pre-tokenisation.** GPT-2's regular expression cuts the text into words that carry their
   leading space (``" hello"``, ``"'s"``, ``" 42"``, ``" !!"``), so no merge crosses a word and
   ``"hello"`` at the start of a text differs from ``" hello"`` after a space. Nothing is
   lower-cased or normalised: decoding gives back the exact text.
3. **BPE merges**, learned by :func:`mlstep.tokenizers.merges.learn_merges` (the most frequent adjacent pair,
   again and again) and applied to each word by merging its pair of lowest *rank* (learned
   earliest) until no learned pair is left — the result Hugging Face ``tokenizers`` gives for the
   same merges (tested).

Special tokens (default ``<|endoftext|>``, which separates documents and pads batches) are
recognised in raw text and never split.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import regex

from mlstep.tokenizers.base import Tokenizer
from mlstep.tokenizers.merges import learn_merges

__all__ = ["ByteLevelBPETokenizer", "bytes_to_unicode", "GPT2_PATTERN"]

# GPT-2's pre-tokeniser: contractions, letters, numbers, other symbols, each with one optional
# leading space; runs of whitespace stay whole, except the last space before a word.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from the 256 byte values to printable characters (so pieces can be shown)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = iter(range(256, 512))
    return {b: chr(b) if b in printable else chr(next(shifted)) for b in range(256)}


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


class ByteLevelBPETokenizer(Tokenizer):
    """GPT-2's tokenizer: ``train`` one, ``encode``/``decode`` (exact round trip), ``save``/``load``.

    Args:
        vocab: the pieces in id order; must hold the special tokens and all 256 byte symbols.
        merges: the learned pairs ``(a, b)`` in the order they were learned (their rank).
        special_tokens: whole-string tokens; the first is the end-of-text token (``eos_id``), which
            also pads batches (``pad_id``).
    """

    FORMAT = "mlstep-bytelevel-bpe"
    OPTIONS = ("merges", "special_tokens")

    def __init__(self, vocab: Sequence[str], merges: Iterable[Sequence[str]],
                 special_tokens: Sequence[str] = ("<|endoftext|>",)):
        super().__init__(vocab)
        self.merges = [(a, b) for a, b in merges]
        self.special_tokens = list(special_tokens)
        missing = [t for t in [*self.special_tokens, *BYTE_TO_CHAR.values()] if t not in self._stoi]
        if not self.special_tokens or missing:
            raise ValueError(f"the vocabulary needs at least one special token and every byte symbol; "
                             f"missing {missing[:5]}")
        unknown = [a + b for a, b in self.merges if a + b not in self._stoi]
        if unknown:
            raise ValueError(f"merges make pieces that are not in the vocabulary, e.g. {unknown[:3]}")
        self.ranks: dict[tuple[str, str], int] = {}
        for rank, pair in enumerate(self.merges):
            self.ranks.setdefault(pair, rank)
        self.eos_id = self.pad_id = self._stoi[self.special_tokens[0]]
        self.special_ids: tuple[int, ...] = tuple(sorted(self._stoi[t] for t in self.special_tokens))
        self._special_re = regex.compile("(" + "|".join(map(regex.escape, self.special_tokens)) + ")")
        self._words = regex.compile(GPT2_PATTERN)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 2000, min_frequency: int = 2,
              special_tokens: Sequence[str] = ("<|endoftext|>",)) -> ByteLevelBPETokenizer:
        """Learn merges from ``texts`` until the vocabulary holds ``vocab_size`` pieces (the special
        tokens and the 256 bytes included), or no pair occurs ``min_frequency`` times."""
        if isinstance(texts, str):
            raise TypeError("train expects an iterable of texts, got a single str; wrap it in a list")
        base = len(special_tokens) + 256
        if not isinstance(vocab_size, int) or vocab_size < base:
            raise ValueError(f"vocab_size must be an int >= {base} (special tokens + 256 bytes), got {vocab_size!r}")
        probe = cls([*special_tokens, *BYTE_TO_CHAR.values()], [], special_tokens)  # only its pre-tokeniser is used
        counts = Counter(w for text in texts for w in probe.pretokenize(text) if w not in special_tokens)
        if not counts:
            raise ValueError("no words to train on (empty corpus?)")
        words = {tuple(BYTE_TO_CHAR[b] for b in w.encode("utf-8")): n for w, n in counts.items()}
        seen = {c for w in words for c in w}
        symbols, merges = learn_merges(words, vocab_size - base + len(seen), min_frequency=min_frequency)
        vocab = [*special_tokens, *BYTE_TO_CHAR.values(), *symbols[len(seen):]]  # bytes, then merged pieces
        return cls(vocab, merges, special_tokens)

    def __repr__(self) -> str:
        return (f"ByteLevelBPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={self.special_tokens})")

    def pretokenize(self, text: str) -> list[str]:
        """GPT-2's words of ``text``, each with its leading space; special tokens kept whole."""
        words: list[str] = []
        for i, part in enumerate(self._special_re.split(text)):
            if i % 2:  # the capturing split puts the special tokens at odd positions
                words.append(part)
            else:
                words.extend(self._words.findall(part))
        return words

    def _pieces(self, word: str) -> list[int]:
        """The BPE pieces of one word: merge the adjacent pair of lowest rank until none is left."""
        if word in self.special_tokens:
            return [self._stoi[word]]
        pieces = [BYTE_TO_CHAR[b] for b in word.encode("utf-8")]
        while len(pieces) > 1:
            rank, i = min((self.ranks.get(pair, len(self.ranks)), i) for i, pair in enumerate(zip(pieces, pieces[1:])))
            if rank == len(self.ranks):
                break  # no learned pair left
            pieces[i:i + 2] = [pieces[i] + pieces[i + 1]]
        return [self._stoi[p] for p in pieces]

    def _given_word(self, word: str, index: int) -> list[str]:
        """Given words are joined by single spaces: every word but the first gets its leading space."""
        return self.pretokenize(word if index == 0 else " " + word)

    def _join(self, tokens: list[str]) -> str:
        """The pieces' characters back to bytes, decoded as UTF-8: the exact text (a cut through a
        multi-byte character decodes as U+FFFD)."""
        return bytes(CHAR_TO_BYTE[c] for c in "".join(tokens)).decode("utf-8", errors="replace")
