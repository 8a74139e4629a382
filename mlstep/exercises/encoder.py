"""Checks for chapter 03: WordPiece segmentation of one word, and the parameter count of a BERT.

Neither answer is a tensor, so these checks call the learner through ``_call`` and compare by
hand: a list of pieces per (vocabulary, word), an integer per configuration. On a mismatch the
learner's answers on *every* case are compared with the typical mistakes, so the message names
the mistake even when it only shows on some cases.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch

from mlstep.bert import BertConfig, BertModel
from mlstep.exercises._core import _call, _one_line, _passed, _register
from mlstep.tokenizers.wordpiece import SPECIAL_TOKENS, WordPieceTokenizer
from mlstep.tools.runtime import count_parameters

__all__ = ["check_wordpiece", "check_bert_parameter_count"]

UNK = "[UNK]"


# --- WordPiece -----------------------------------------------------------------------------------

# (vocabulary without the special tokens, words). Each vocabulary makes a different mistake
# visible: "un" + "##aff" + "##able" vs the single letters (shortest match), continuation pieces
# that exist only with "##" (missing prefix), a word whose end cannot be matched ([UNK]).
_WORDPIECE_CASES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("un", "u", "##aff", "##able", "##a", "##f", "##b", "##l", "##e", "##n", "##ab", "##ff"),
     ("unaffable", "unable", "unaffx", "u")),
    (("play", "playing", "p", "##l", "##a", "##y", "##ing", "##i", "##n", "##g", "##er", "##s", "##ed"),
     ("playing", "players", "played", "plays", "playx", "xplay")),
    (("a", "b", "ab", "##a", "##b", "##ab", "##ba", "##aba"),
     ("a", "b", "c", "abba", "ababab", "aabab")),
)


def _wp_reference(vocab: Sequence[str]) -> Callable[[str], list[str]]:
    """mlstep's segmentation of one word (WordPieceTokenizer's greedy longest-match-first)."""
    tok = WordPieceTokenizer(list(SPECIAL_TOKENS) + [t for t in vocab if t not in SPECIAL_TOKENS])
    return lambda word: [tok.id_to_token(i) for i in tok._word_ids(word)]


def _wp_variant(word: str, vocab: set[str], *, shortest: bool = False, prefix_rest: bool = True,
                prefix_first: bool = False, keep_prefix: bool = True, partial: str = "") -> list[str]:
    """A typical wrong WordPiece (deliberately wrong unless every flag has its default).

    shortest: take the shortest match instead of the longest. prefix_rest / prefix_first: look up
    "##" + piece for the pieces after the first / for the first. keep_prefix: keep "##" in the
    output. partial: "stop" = matched pieces + [UNK]; "skip" = [UNK] for one character, go on.
    """
    pieces, start = [], 0
    while start < len(word):
        ends = range(start + 1, len(word) + 1)  # every piece word[start:end]
        found = None
        for end in (ends if shortest else reversed(ends)):
            piece = word[start:end]
            if (start > 0 and prefix_rest) or (start == 0 and prefix_first):
                piece = "##" + piece
            if piece in vocab:
                found = (piece, end)
                break
        if found is None:
            if partial == "stop":
                return pieces + [UNK]
            if partial == "skip":
                pieces.append(UNK)
                start += 1
                continue
            return [UNK]
        piece, start = found
        pieces.append(piece if keep_prefix else piece.removeprefix("##"))
    return pieces


_WORDPIECE_MISTAKES: tuple[tuple[str, dict], ...] = (
    ("shortest match instead of the longest: at each position try the LONGEST piece first "
     "(end = len(word), then shrink) and take the first one that is in the vocabulary", dict(shortest=True)),
    ("missing '##' prefix: pieces after the first must carry '##' (look up and return '##' + "
     "word[start:end] when start > 0)", dict(keep_prefix=False)),
    ("missing '##' prefix: pieces after the first are looked up without '##', so continuation "
     "pieces like '##ing' are never found (look up '##' + word[start:end] when start > 0)",
     dict(prefix_rest=False)),
    ("'##' on the first piece: only the pieces AFTER the first carry '##' (start > 0)",
     dict(prefix_first=True)),
    ("partial pieces + [UNK]: if any position cannot be matched, the WHOLE word becomes ['[UNK]'] "
     "(return it alone, dropping the pieces found so far)", dict(partial="stop")),
    ("partial pieces + [UNK]: if any position cannot be matched, the WHOLE word becomes ['[UNK]'], "
     "not [UNK] for that character", dict(partial="skip")),
)


def _as_pieces(result: Any) -> list[str] | str:
    """The learner's pieces as a list of str, or a message saying why they are not."""
    if isinstance(result, str):
        return f"expected a list of pieces, got the str {result!r} (return e.g. ['play', '##ing'])"
    if not isinstance(result, (list, tuple)):
        return f"expected a list of str, got {type(result).__name__}"
    bad = [p for p in result if not isinstance(p, str)]
    if bad:
        return f"expected a list of str, but it contains {type(bad[0]).__name__} {_one_line(repr(bad[0]))}"
    return list(result)


@_register
def check_wordpiece(fn: Callable[..., Any]) -> tuple[bool, str]:
    """Check ``fn(word, vocab: set[str]) -> list[str]``: BERT's greedy longest-match-first pieces.

    Pieces after the first carry ``##``; a word with any position that no piece matches becomes
    ``["[UNK]"]``. The reference is :class:`mlstep.WordPieceTokenizer`'s per-word segmentation.

    Returns:
        True if every case matches (a ✅/❌ line is printed either way).
    """
    cases = []  # (vocab, word, expected)
    for vocab, words in _WORDPIECE_CASES:
        full = tuple(SPECIAL_TOKENS) + vocab  # a real vocabulary holds the special tokens too
        reference = _wp_reference(full)
        cases += [(full, w, reference(w)) for w in words]
    n = len(cases)

    answers: list[list[str]] = []
    first_bad = None
    for i, (vocab, word, expected) in enumerate(cases, start=1):
        where = f"(case {i}/{n}: word {word!r}, vocab of {len(vocab)} pieces)"
        given = set(vocab)
        result, err = _call(fn, word, given)  # a fresh set each time: in-place edits cannot leak
        if err:
            return False, f"{err} {where}"
        got = _as_pieces(result)
        if isinstance(got, str):
            return False, f"{got} {where}"
        if given != set(vocab):
            return False, f"your function changed the vocabulary it was given (add/remove/pop); only read it {where}"
        answers.append(got)
        if got != expected and first_bad is None:
            first_bad = (i, word, expected, got, where)
    if first_bad is None:
        return True, _passed(n)

    _, word, expected, got, where = first_bad
    for message, flags in _WORDPIECE_MISTAKES:
        if all(_wp_variant(w, set(v), **flags) == a for (v, w, _), a in zip(cases, answers, strict=True)):
            return False, f"{message} {where}"
    if UNK in got and len(got) > 1:
        return False, (f"partial pieces + [UNK]: you returned {got}; if any position cannot be matched "
                       f"the WHOLE word is ['[UNK]'] {where}")
    if got and got[0].startswith("##"):
        return False, f"'##' on the first piece: you returned {got}; only later pieces carry '##' {where}"
    return False, f"expected {expected}, got {got} {where}"


# --- parameter count -----------------------------------------------------------------------------

# Random small configurations: post-LN and pre-LN, and sizes that differ from one another so
# that each forgotten part changes the count by a different amount.
_CONFIGS = (
    dict(vocab_size=97, hidden_size=16, num_layers=2, num_heads=4, intermediate_size=40,
         max_position=33, type_vocab_size=2, pre_norm=False),
    dict(vocab_size=61, hidden_size=12, num_layers=3, num_heads=3, intermediate_size=28,
         max_position=21, type_vocab_size=3, pre_norm=True),
    dict(vocab_size=150, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=24,
         max_position=50, type_vocab_size=2, pre_norm=True),
    dict(vocab_size=45, hidden_size=24, num_layers=2, num_heads=6, intermediate_size=36,
         max_position=17, type_vocab_size=1, pre_norm=False),
)

# (what was forgotten, parameters it covers by name). A learner's count is explained by the
# smallest set of these that matches it on every configuration.
_PARTS: tuple[tuple[str, Callable[[str, int], bool]], ...] = (
    ("the LayerNorm parameters (weight and bias of every LayerNorm, 2·H each)",
     lambda name, layer: "norm" in name.lower()),
    ("the biases of the Linear layers", lambda name, layer: name.endswith(".bias") and "norm" not in name.lower()),
    ("the position embeddings (max_position × H)", lambda name, layer: "position_embeddings" in name),
    ("the segment (token type) embeddings (type_vocab_size × H)",
     lambda name, layer: "token_type_embeddings" in name),
    ("the pooler (an H × H Linear with bias on [CLS])", lambda name, layer: name.startswith("pooler.")),
    ("the final LayerNorm that pre-LN adds after the last layer (config.pre_norm)",
     lambda name, layer: "final_norm" in name),
    ("to multiply the per-layer parameters by num_layers", lambda name, layer: layer > 0),
    ("the embedding LayerNorm", lambda name, layer: name.startswith("embeddings.LayerNorm")),
)


def _layer_of(name: str) -> int:
    """The encoder layer index in a parameter name, -1 outside the layers."""
    parts = name.split(".")
    return int(parts[2]) if len(parts) > 2 and parts[1] == "layers" and parts[2].isdigit() else -1


def _as_count(result: Any) -> int | str:
    """The learner's count as an int, or a message saying why it is not one."""
    if isinstance(result, torch.Tensor) and result.numel() == 1 and not result.dtype.is_floating_point:
        result = int(result.item())
    if isinstance(result, bool) or not isinstance(result, numbers.Real):
        return f"expected an int, got {type(result).__name__} {_one_line(repr(result))[:60]}"
    if isinstance(result, numbers.Integral):
        return int(result)
    if float(result).is_integer():
        return int(result)
    return f"expected a whole number of parameters, got {result!r}"


def _config_label(cfg: BertConfig) -> str:
    return (f"vocab {cfg.vocab_size}, H {cfg.hidden_size}, {cfg.num_layers} layer(s), FFN "
            f"{cfg.intermediate_size}, max_position {cfg.max_position}, type_vocab {cfg.type_vocab_size}, "
            f"{'pre' if cfg.pre_norm else 'post'}-LN")


@_register
def check_bert_parameter_count(fn: Callable[..., Any]) -> tuple[bool, str]:
    """Check ``fn(config: BertConfig) -> int``: the number of parameters of ``BertModel(config)``.

    That is the embeddings (word, position, segment, LayerNorm), every encoder layer (attention,
    feed-forward, two LayerNorms), the final LayerNorm when ``config.pre_norm``, and the pooler.
    The reference is ``mlstep.count_parameters(mlstep.BertModel(config))``.

    Returns:
        True if every case matches (a ✅/❌ line is printed either way).
    """
    configs = [BertConfig(**kw) for kw in _CONFIGS]
    expected, sizes = [], []  # sizes[i]: {parameter name: numel} of config i
    # (building a model draws from the global RNG; the registered check restores it afterwards)
    for cfg in configs:
        model = BertModel(cfg)
        expected.append(count_parameters(model))
        sizes.append({name: p.numel() for name, p in model.named_parameters()})
    n = len(configs)

    answers, first_bad = [], None
    for i, cfg in enumerate(configs, start=1):
        where = f"(case {i}/{n}: {_config_label(cfg)})"
        result, err = _call(fn, cfg)
        if err:
            return False, f"{err} {where}"
        got = _as_count(result)
        if isinstance(got, str):
            return False, f"{got} {where}"
        answers.append(got)
        if got != expected[i - 1] and first_bad is None:
            first_bad = (i - 1, where)
    if first_bad is None:
        return True, _passed(n)

    i, where = first_bad
    diff = answers[i] - expected[i]
    # The smallest set of forgotten parts that explains the answer on every configuration.
    for k in (1, 2, 3):
        for combo in itertools.combinations(range(len(_PARTS)), k):
            def without(s: dict[str, int], combo=combo) -> int:
                return sum(v for name, v in s.items()
                           if not any(_PARTS[j][1](name, _layer_of(name)) for j in combo))
            if all(without(s) == a for s, a in zip(sizes, answers, strict=True)):
                forgot = " and ".join(_PARTS[j][0] for j in combo)
                return False, f"your count is {-diff} too small: you forgot {forgot} {where}"
    return False, (f"expected {expected[i]}, got {answers[i]} ({'+' if diff > 0 else ''}{diff}); count "
                   f"the embeddings, every layer, the final LayerNorm when pre_norm, and the pooler {where}")
