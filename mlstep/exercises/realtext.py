"""Checks for chapter 10: reading a CoNLL-U treebank, and accuracy on unseen words.

``check_read_conllu`` gives the learner's reader CoNLL-U texts with the traps of real files
(multiword tokens ``1-2``, empty nodes ``8.1``, a hyphen inside a word, a ``#`` that is a word,
no blank line at the end) and compares with :func:`mlstep.data.parse_conllu`.
``check_unseen_word_accuracy`` compares with :func:`mlstep.tasks.labeled.word_accuracy` on random tagged
sentences built so that the usual slips (case-sensitive lookup, seen and unseen swapped, all
words, a mean of per-sentence accuracies) give different numbers.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from mlstep.data.conllu import UPOS_TAGS, parse_conllu
from mlstep.exercises._core import _call, _one_line, _passed, _register
from mlstep.tasks.labeled import word_accuracy

__all__ = ["check_read_conllu", "check_unseen_word_accuracy"]

_XPOS = {"PRON": "PRP", "AUX": "VBP", "PART": "RB", "VERB": "VB", "PUNCT": ".", "NOUN": "NN", "ADJ": "JJ",
         "DET": "DT", "ADP": "IN", "PROPN": "NNP", "ADV": "RB", "NUM": "CD", "CCONJ": "CC"}


# --- reading CoNLL-U ------------------------------------------------------------------------------

def _line(i: int | str, form: str, upos: str) -> str:
    return f"{i}\t{form}\t{form.lower()}\t{upos}\t{_XPOS.get(upos, 'XX')}\t_\t0\tdep\t_\t_"


def _conllu_texts(seed: int) -> list[str]:
    """Three CoNLL-U texts: a fixed one with every trap, two random ones."""
    fixed = "\n".join([
        "# newdoc id = doc-1", "# sent_id = 1", "# text = I don't like well-known #hashtags.",
        "1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_", _line(1, "I", "PRON"), _line(2, "do", "AUX"), _line(3, "n't", "PART"),
        _line(4, "like", "VERB"), _line(5, "well-known", "ADJ"), _line(6, "#hashtags", "NOUN"),
        _line(7, ".", "PUNCT"), "", "# sent_id = 2", _line(1, "Go", "VERB"), "1.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t0:root\t_",
        _line(2, "home", "ADV"), ""])
    rng = random.Random(seed)
    texts = [fixed + "\n"]
    for _ in range(2):
        blocks = []
        for s in range(rng.randint(3, 6)):
            lines = [f"# sent_id = r{s}"]
            for i in range(1, rng.randint(2, 9)):
                if rng.random() < 0.15:
                    lines.append(f"{i}-{i + 1}\tcontraction{i}\t_\t_\t_\t_\t_\t_\t_\t_")
                lines.append(_line(i, rng.choice(["cat", "Dog", "ran", "far", "the", "e-mail", "2", "!"]),
                                   rng.choice(list(_XPOS))))
            blocks.append("\n".join(lines))
        texts.append("\n\n".join(blocks))  # no blank line after the last sentence
    return texts


def _conllu_problem(got: Any, expected: list[tuple[list[str], list[str]]], text: str) -> str | None:
    if not isinstance(got, (list, tuple)) or not all(isinstance(s, (list, tuple)) and len(s) == 2 for s in got):
        return f"expected a list of (words, tags) pairs, one per sentence; got {_one_line(repr(got))[:80]}"
    got = [(list(w), list(t)) for w, t in got]
    if got == expected:
        return None
    words = [w for ws, _ in got for w in ws]
    if len(got) == len(expected) - 1 and got == expected[:-1]:
        return ("the last sentence is missing: the text need not end with a blank line, so finish the "
                "sentence in progress when the lines run out")
    if any(w == "don't" or w.startswith("contraction") for w in words):
        return ("kept a multiword token (ID like 1-2, e.g. \"don't\"): its words follow on their own lines; "
                "skip lines whose ID contains '-'")
    if "gone" in words:
        return "kept an empty node (ID like 1.1): it is not a word of the sentence; skip IDs that contain '.'"
    if any(w.startswith("#") and w != "#hashtags" for w in words):
        return "read comment lines (starting with '#') as words"
    expected_words = [w for ws, _ in expected for w in ws]
    if len(words) < len(expected_words) and "well-known" not in words:
        return ("dropped the word 'well-known': decide on the ID column (the first field), not on a '-' "
                "anywhere in the line")
    if len(words) < len(expected_words) and "#hashtags" not in words:
        return "dropped the word '#hashtags': only a line that STARTS with '#' is a comment"
    if [w for w, _ in got] == [w for w, _ in expected]:
        tags = {t for _, ts in got for t in ts}
        if tags <= set(_XPOS.values()) | {"XX", "VBN"}:
            return "these are the XPOS tags (5th column, Penn Treebank); the universal tag UPOS is the 4th"
        return "the words are right but some tags are not: the UPOS tag is the 4th column"
    for k, (g, e) in enumerate(zip(got, expected)):
        if g != e:
            return f"sentence {k + 1} differs: expected words {e[0]}, got {g[0]}"
    return f"expected {len(expected)} sentences, got {len(got)}"


@_register
def check_read_conllu(fn: Callable[..., Any]) -> tuple[bool, str]:
    """Check ``fn(text: str) -> list[(words, tags)]``: the words and UPOS tags of each sentence of
    a CoNLL-U text (multiword tokens and empty nodes skipped)."""
    texts = _conllu_texts(seed=10)
    for i, text in enumerate(texts, start=1):
        ref = parse_conllu(text.splitlines())
        expected = list(zip(ref["tokens"], ref["tags"]))
        result, err = _call(fn, text)
        problem = err or _conllu_problem(result, expected, text)
        if problem:
            return False, f"{problem} (case {i}/{len(texts)})"
    return True, _passed(len(texts))


# --- accuracy on words unseen in the labels ------------------------------------------------------

def _tagging_case(seed: int) -> tuple[list, list, list, list]:
    """Random (predicted, gold, words, labeled sentences); sentences of different lengths, seen
    and unseen words with different accuracies, capitalised forms of seen words."""
    rng = random.Random(seed)
    seen_vocab = [f"w{i}" for i in range(12)]
    unseen_vocab = [f"u{i}" for i in range(12)]
    labeled = [[rng.choice(seen_vocab) for _ in range(rng.randint(3, 7))] for _ in range(6)]
    labeled[0] += seen_vocab  # every seen word occurs in the labels
    predicted, gold, words = [], [], []
    for _ in range(8):
        n = rng.randint(2, 12)
        sentence = [rng.choice(unseen_vocab if rng.random() < 0.4 else seen_vocab) for _ in range(n)]
        sentence = [w.upper() if rng.random() < 0.3 else w for w in sentence]  # "W3" is the seen "w3"
        tags = [rng.choice(UPOS_TAGS) for _ in range(n)]
        right = [rng.random() < (0.4 if w.lower().startswith("u") else 0.9) for w in sentence]
        predicted.append([t if ok else UPOS_TAGS[(UPOS_TAGS.index(t) + 1) % len(UPOS_TAGS)]
                          for t, ok in zip(tags, right)])
        gold.append(tags)
        words.append(sentence)
    return predicted, gold, words, labeled


def _variants(predicted: list, gold: list, words: list, labeled: list) -> list[tuple[str, float]]:
    seen = {w.lower() for s in labeled for w in s}
    ref = word_accuracy(predicted, gold, words, seen)
    kept = [p == g for ps, gs, ws in zip(predicted, gold, words) for p, g, w in zip(ps, gs, ws) if w not in seen]
    per_sentence = []
    for p, g, ws in zip(predicted, gold, words):
        hits = [a == b for a, b, w in zip(p, g, ws) if w.lower() not in seen]
        if hits:
            per_sentence.append(sum(hits) / len(hits))
    return [("you scored the SEEN words (those in the labeled sentences); the question is about the unseen ones",
             ref["seen_accuracy"]),
            ("that is the accuracy over all words; keep only words whose lower-cased form never occurs in "
             "the labeled sentences", ref["accuracy"]),
            ("case-sensitive lookup: the tokenizer lower-cases, so 'W3' is the seen word 'w3'; compare "
             "lower-cased words", sum(kept) / len(kept)),
            ("a mean of per-sentence accuracies weighs short sentences more; count words over the whole set",
             sum(per_sentence) / len(per_sentence))]


@_register
def check_unseen_word_accuracy(fn: Callable[..., Any]) -> tuple[bool, str]:
    """Check ``fn(predicted, gold, words, labeled) -> float``: tag accuracy over the words whose
    lower-cased form occurs in no sentence of ``labeled`` (lists of words)."""
    seeds = (1, 2, 3)
    for i, seed in enumerate(seeds, start=1):
        predicted, gold, words, labeled = _tagging_case(seed)
        seen = {w.lower() for s in labeled for w in s}
        expected = word_accuracy(predicted, gold, words, seen)["unseen_accuracy"]
        result, err = _call(fn, predicted, gold, words, labeled)
        where = f"(case {i}/{len(seeds)})"
        if err:
            return False, f"{err} {where}"
        try:
            value = float(result)
        except (TypeError, ValueError):
            return False, f"expected a number (the accuracy), got {type(result).__name__} {where}"
        if math.isclose(value, 100 * expected, rel_tol=1e-9):
            return False, f"return a fraction in [0, 1], not a percentage {where}"
        if not math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-12):
            for diagnosis, wrong in _variants(predicted, gold, words, labeled):
                if math.isclose(value, wrong, rel_tol=1e-9):
                    return False, f"{diagnosis} {where}"
            return False, f"expected {expected:.4f}, got {value:.4f} {where}"
    return True, _passed(len(seeds))
