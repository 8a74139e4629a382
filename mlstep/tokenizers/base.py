"""What every subword tokenizer of the course shares: a vocabulary, encoding one text or a pair
(special tokens, truncation, padding), batches as tensors, decoding, and JSON files.

A tokenizer says how a text becomes words (``pretokenize``), how a word becomes pieces
(``_pieces``) and how pieces become text again (``_join``); :class:`mlstep.WordPieceTokenizer`
(BERT) and :class:`mlstep.ByteLevelBPETokenizer` (GPT-2) are two.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mlstep.tools.runtime import atomic_write

__all__ = ["Encoding", "Tokenizer"]

_CACHE_SIZE = 200_000  # word -> pieces cache entries before it is cleared
_Segment = tuple[list[int], list[int]]  # (piece ids, word index of each) of one text


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


class Tokenizer:
    """The vocabulary and everything built on it. Subclasses set ``FORMAT`` (the name in their
    JSON files), the special ids (``pad_id``; ``cls_id`` and ``sep_id`` or None when no
    ``[CLS] a [SEP] b [SEP]`` template is added; ``special_ids``), and implement ``pretokenize``,
    ``_pieces`` and ``_join``; ``OPTIONS`` names the constructor arguments a saved file keeps."""

    FORMAT = "mlstep-tokenizer"
    VERSION = 1
    OPTIONS: tuple[str, ...] = ()  # attributes that save() stores and load() passes to __init__

    def __init__(self, vocab: Sequence[str]):
        vocab = list(vocab)
        if len(set(vocab)) != len(vocab):
            dupes = sorted(t for t, c in Counter(vocab).items() if c > 1)[:5]
            raise ValueError(f"vocabulary has duplicate tokens, e.g. {dupes}")
        self._itos: list[str] = vocab
        self._stoi: dict[str, int] = {t: i for i, t in enumerate(vocab)}
        self.cls_id: int | None = None
        self.sep_id: int | None = None
        self._cache: dict[str, list[int]] = {}  # word -> piece ids

    def pretokenize(self, text: str) -> list[str]:
        """The words of ``text``, each cut into pieces on its own."""
        raise NotImplementedError

    def _pieces(self, word: str) -> list[int]:
        """The piece ids of one word."""
        raise NotImplementedError

    def _word_ids(self, word: str) -> list[int]:
        """:meth:`_pieces`, remembered: a corpus says the same words again and again."""
        ids = self._cache.get(word)
        if ids is None:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            ids = self._cache[word] = self._pieces(word)
        return ids

    def tokenize(self, text: str) -> list[str]:
        """The pieces of ``text`` (no special tokens added)."""
        return [self._itos[i] for w in self.pretokenize(text) for i in self._word_ids(w)]

    def _given_word(self, word: str, index: int) -> list[str]:
        """The words of the ``index``-th word of a pre-tokenised text (it may split further, "U.S.")."""
        return self.pretokenize(word)

    def _segment(self, text: str | Sequence[str], is_pretokenized: bool) -> _Segment:
        """``(ids, word_ids)`` of one text: its pieces and the word each comes from."""
        if is_pretokenized:
            if isinstance(text, str) or not all(isinstance(w, str) for w in text):
                raise TypeError("with is_pretokenized=True, pass a list of words (str)")
            groups = [self._given_word(w, i) for i, w in enumerate(text)]
        else:
            if not isinstance(text, str):
                raise TypeError(f"encode expects a str, got {type(text).__name__}; for a list of words "
                                "pass is_pretokenized=True")
            groups = [[w] for w in self.pretokenize(text)]
        ids: list[int] = []
        word_ids: list[int] = []
        for wi, words in enumerate(groups):
            for w in words:
                pieces = self._word_ids(w)
                ids += pieces
                word_ids += [wi] * len(pieces)
        return ids, word_ids

    def _join(self, tokens: list[str]) -> str:
        """The text of a list of pieces."""
        raise NotImplementedError

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
        """Encode a text, or a text pair: ``[CLS] text [SEP] pair [SEP]`` when the tokenizer has
        that template (BERT), the pieces alone otherwise.

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
        is_pair = pair is not None
        a = self._segment(text, is_pretokenized)
        b = self._segment(pair, is_pretokenized) if is_pair else ([], [])
        add_special_tokens = add_special_tokens and self.cls_id is not None
        n_special = (3 if is_pair else 2) if add_special_tokens else 0
        pad_to_max = _pads_to_max_length(padding, max_length, n_special, is_pair)
        if max_length is not None and truncation:
            a, b = self._truncate(a, b, max_length - n_special, is_pair)
        enc = self._assemble(a, b, is_pair, add_special_tokens)
        return self._padded(enc, max_length) if pad_to_max and len(enc) < max_length else enc

    @classmethod
    def _truncate(cls, a: _Segment, b: _Segment, budget: int, is_pair: bool
                  ) -> tuple[_Segment, _Segment]:
        """``a`` and ``b`` cut to ``budget`` tokens in all: ``a`` alone from its end, a pair
        "longest first"."""
        n_a, n_b = len(a[0]), len(b[0])
        if n_a + n_b <= budget:
            return a, b
        n_a, n_b = cls._longest_first(n_a, n_b, budget) if is_pair else (budget, n_b)
        return (a[0][:n_a], a[1][:n_a]), (b[0][:n_b], b[1][:n_b])

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

    def _assemble(self, a: _Segment, b: _Segment, is_pair: bool, add_special_tokens: bool
                  ) -> Encoding:
        """The unpadded encoding of ``a`` (and ``b``): in ``[CLS] a [SEP] b [SEP]``, or bare."""
        (a_ids, a_words), (b_ids, b_words) = a, b
        if add_special_tokens:
            ids = [self.cls_id, *a_ids, self.sep_id]
            word_ids = [None, *a_words, None]
            seq_ids: list[int | None] = [None, *[0] * len(a_ids), None]
            types = [0] * len(ids)
            if is_pair:
                ids += [*b_ids, self.sep_id]
                word_ids += [*b_words, None]
                seq_ids += [*[1] * len(b_ids), None]
                types += [1] * (len(b_ids) + 1)
        else:
            ids, word_ids = a_ids + b_ids, a_words + b_words
            seq_ids = [0] * len(a_ids) + [1] * len(b_ids)
            types = seq_ids.copy()
        return Encoding(ids=ids, tokens=[self._itos[i] for i in ids], token_type_ids=types,
                        attention_mask=[1] * len(ids), word_ids=word_ids, sequence_ids=seq_ids)

    def _padded(self, enc: Encoding, length: int) -> Encoding:
        """``enc`` with [PAD] tokens appended up to ``length``."""
        n_pad = length - len(enc)
        ids = enc.ids + [self.pad_id] * n_pad
        return Encoding(
            ids=ids,
            tokens=[self._itos[i] for i in ids],
            token_type_ids=enc.token_type_ids + [0] * n_pad,
            attention_mask=enc.attention_mask + [0] * n_pad,
            word_ids=enc.word_ids + [None] * n_pad,
            sequence_ids=enc.sequence_ids + [None] * n_pad,
        )

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
        texts, pairs = _batch_inputs(texts, pairs, max_length, padding, return_tensors)
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
        return self._collate(encs, target, return_tensors)

    def _collate(self, encs: list[Encoding], target: int | None, return_tensors: str | None) -> dict:
        """The dict :meth:`encode_batch` returns: ``encs`` padded to ``target`` (None: as they are)."""
        out = {
            "input_ids": _pad_rows([e.ids for e in encs], self.pad_id, target),
            "token_type_ids": _pad_rows([e.token_type_ids for e in encs], 0, target),
            "attention_mask": _pad_rows([e.attention_mask for e in encs], 0, target),
        }
        if return_tensors == "pt":
            if len({len(r) for r in out["input_ids"]}) > 1:
                raise ValueError(
                    "sequences have different lengths and padding=False: pass padding='longest' "
                    "or return_tensors=None"
                )
            out = {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}  # (B, T)
        out["word_ids"] = _pad_rows([e.word_ids for e in encs], None, target)
        out["sequence_ids"] = _pad_rows([e.sequence_ids for e in encs], None, target)
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
        bad = [i for i in ids if not 0 <= int(i) < len(self._itos)]
        if bad:
            raise ValueError(f"token id {bad[0]} out of range [0, {len(self._itos)})")
        specials = set(self.special_ids) if skip_special_tokens else set()
        return self._join([self._itos[int(i)] for i in ids if int(i) not in specials])

    # -- persistence ----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer as JSON, atomically."""
        options = {k: getattr(self, k) for k in self.OPTIONS}
        data = {"format": self.FORMAT, "version": self.VERSION, **options, "vocab": self._itos}
        atomic_write(path, json.dumps(data, ensure_ascii=False, indent=0).encode("utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        """Read a tokenizer written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer file at {str(path)!r}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{str(path)!r} is not a tokenizer JSON file: {e}") from None
        if not isinstance(data, dict) or data.get("format") != cls.FORMAT or data.get("version") != cls.VERSION:
            found = (data.get("format"), data.get("version")) if isinstance(data, dict) else data
            raise ValueError(f"{str(path)!r} is not an {cls.FORMAT} file of version {cls.VERSION} "
                             f"(found format and version {found})")
        vocab = data.get("vocab")
        if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab):
            raise ValueError(f"{str(path)!r}: 'vocab' must be a list of strings")
        return cls(vocab, **{k: data[k] for k in cls.OPTIONS if k in data})


def _pads_to_max_length(padding: bool | str | None, max_length: int | None, n_special: int,
                        is_pair: bool) -> bool:
    """Check ``padding`` and ``max_length`` of :meth:`Tokenizer.encode`; True when it pads to
    ``max_length``."""
    if padding not in (False, None, True, "max_length", "longest", "do_not_pad"):
        raise ValueError(f"padding must be False, True, 'max_length' or 'longest', got {padding!r}")
    pad_to_max = padding in (True, "max_length")
    if max_length is not None:
        if not isinstance(max_length, int) or max_length < max(n_special, 1):
            raise ValueError(
                f"max_length={max_length!r} cannot hold the {n_special} special tokens of "
                f"{'[CLS] a [SEP] b [SEP]' if is_pair else '[CLS] a [SEP]'}; "
                f"use max_length >= {max(n_special, 1)}"
            )
    elif pad_to_max:
        raise ValueError(f"padding={padding!r} needs max_length")
    return pad_to_max


def _batch_inputs(texts, pairs, max_length: int | None, padding: bool | str | None,
                  return_tensors: str | None) -> tuple[list, list | None]:
    """``texts`` and ``pairs`` as lists, once they and the options of :meth:`Tokenizer.encode_batch`
    are checked."""
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
    return texts, pairs


def _pad_rows(rows: list[list], value, target: int | None) -> list[list]:
    """Each row extended with ``value`` to length ``target``; ``rows`` itself when it is None."""
    return rows if target is None else [r + [value] * (target - len(r)) for r in rows]
