"""Which sentences the corpus generator can write: an exact recogniser of the documents' grammar.

Every sentence of a pretraining document comes from a fixed template (``corpus._document``): an
introduction, events, reviews, a conclusion. Here each template is written once more as a pattern
of word slots, and :func:`is_corpus_sentence` accepts a sentence when a pattern matches it **and**
its words agree the way the generator makes them agree:

* the topic words (role, nouns, verbs, venue, the organisation's second word) share one topic;
* the polar adjectives (and the liking verb) of a review share one polarity, and the negated
  adjectives ("not X") have the other;
* words drawn together differ (two people, two nouns, two verbs, three adjectives), and a slot the
  template repeats holds the same word ("anna wanted to cook something , so anna cooked …");
* "a" / "an" agree with the next word.

Only the sentence is judged, not the document around it: that a review's person is the
introduction's protagonist, for instance, is not checked. ``tests/test_data.py`` checks that every
sentence of a generated corpus is accepted and that perturbed ones are rejected.
"""

from __future__ import annotations

import functools
import re

from mlstep.data import lexicon as lx

__all__ = ["is_corpus_sentence", "sentence_kind", "TEMPLATES"]

# One pattern per template of corpus._document, in the same order. {slot} is a word slot (see
# _SLOTS); "v1:past" is a form of verb v1; (?:a|b) are literal alternatives.
TEMPLATES = {
    "intro": [
        "{x} is {a_role} from {place} .",
        "{x} works as {a_role} at {org} in {place} .",
        "this is the story of {x} , {a_role} from {place} .",
        "(?:last|on) {time} , {x} , {a_role} , went to {place} with {y} .",
        "{org} hired {x} as {a_role} in {place} .",
        "{x} joined {org} as {a_role} in {place} .",
        "{x} is {a_role} from {place} who likes to {v1:base} .",
        "{x} , {a_role} , visited {place} with {y} .",
    ],
    "event": [
        "{m} {s} {v1:past} the {n1} and the {n2} .",
        "{m} {s} wanted to {v1:base} something , so {s} {v1:past} the {n1} .",
        "{m} someone {v1:past} the {n1} for {s} .",
        "{m} {s} {v1:past} the {n1} at the {venue} .",
        "{m} {s} and {y} {v1:past} the {n1} in {place} .",
        "{m} {s} met {y} at {org} and they {v1:past} the {n1} .",
        "{m} the {n1} was {v1:part} by {s} at the {venue} .",
        "{m} {s} {v1:past} the {adj} {n1} with {y} .",
        "{m} {s} did not {v1:base} the {n1} but {v2:past} the {n2} .",
    ],
    "review": [
        "the {n1} was {p1} , {p2} and {p3} .",
        "{y} thought the {n1} was {p1} and {p2} .",
        "the {n1} and the {n2} were {p1} and {p2} .",
        "{y} said the {n1} was {int}{p1} and {p2} .",
        "{y} {pv} the {n1} , it was {int}{p1} .",
        "everyone at the {venue} said the {n1} was {int}{p1} .",
        "it was {a_int_p1} {n1} .",
        "the {n1} was not {o1} , it was {p1} .",
        "the {n1} was not {o1} or {o2} , it was {p1} .",
        "{y} found the {n1} {int}{p1} and did not find it {o1} .",
    ],
    "conclusion": [
        "after that , nobody wanted to (?:leave|go back to) {place} .",
        "in the end , {y} (?:was happy and will come back to|was upset and will never return to) {place} .",
        "overall , {y} (?:would|would not) recommend {org} to {companion} .",
        "after that day , {y} went home (?:happy|sad) .",
    ],
}


def _words(words) -> str:
    """A regex alternation of literal words, longest first."""
    return "(?:" + "|".join(re.escape(w) for w in sorted(set(words), key=lambda w: (-len(w), w))) + ")"


_TOPICS = list(lx.TOPIC_WORDS.values())
_VERBS = [v for t in _TOPICS for v in t.verbs]
_ARTICLE = "(?:an (?=[aeiou])|a (?=[^aeiou]))"  # "an" before a vowel, as corpus._a writes it
_INT = _words(lx.INTENSIFIERS)
_ATTRIBUTIVE_INT = _words(lx.INTENSIFIERS[:-1])  # "so" only stands before a predicate
_POLAR = _words(lx.POSITIVE + lx.NEGATIVE)
# slot kind -> regex; a slot's name is its kind plus a number ("n2" -> "n"), or the kind itself
_SLOTS = {
    "x": f"{_words(lx.PERSONS)}(?: {_words(lx.SURNAMES)})?",  # a first name, maybe a surname
    "y": _words(lx.PERSONS),
    "s": f"(?:{_words(lx.PERSONS)}|the {_words(r for t in _TOPICS for r in t.roles)})",
    "a_role": f"{_ARTICLE}{_words(r for t in _TOPICS for r in t.roles)}",
    "place": _words(lx.PLACES),
    "org": f"{_words(lx.ORGS)} {_words(t.org_word for t in _TOPICS)}",
    "time": _words(lx.TIMES),
    "companion": _words(lx.COMPANIONS),
    "m": "(?:one day ,|first ,|then|later ,)",
    "n": _words(n for t in _TOPICS for n in t.nouns),
    "venue": _words(v for t in _TOPICS for v in t.venues),
    "adj": _words(lx.NEUTRAL_ADJECTIVES),
    "base": _words(v[0] for v in _VERBS), "past": _words(v[1] for v in _VERBS),
    "part": _words(v[2] for v in _VERBS),
    "p": _POLAR, "o": _POLAR, "pv": _words(w for ws in lx.POLAR_VERBS.values() for w in ws),
    "int": f"(?:{_INT} )?", "a_int_p1": f"{_ARTICLE}(?:{_ATTRIBUTIVE_INT} )?(?P<p1>{_POLAR})",
}
_SLOT = re.compile(r"\{(\w+)(?::(\w+))?\}")


def _compile(template: str) -> re.Pattern:
    """The template as a regex with one named group per slot (a repeated slot: a back-reference)."""
    seen: set[str] = set()

    def slot(m: re.Match) -> str:
        name, form = m[1], m[2]
        group = f"{name}_{form}" if form else name
        if group in seen:
            return f"(?P={group})"
        seen.add(group)
        kind = form or (name if name in _SLOTS else name.rstrip("0123456789"))
        pattern = _SLOTS[kind]
        return pattern if kind in ("int", "a_int_p1") else f"(?P<{group}>{pattern})"  # (no words / its own group)

    return re.compile(_SLOT.sub(slot, template.replace(" .", r" \.")))


@functools.lru_cache(maxsize=1)
def _patterns() -> list[tuple[str, re.Pattern]]:
    return [(kind, _compile(t)) for kind, templates in TEMPLATES.items() for t in templates]


@functools.lru_cache(maxsize=1)
def _word_facts() -> dict[str, tuple]:
    """word -> (topic, verb id or None) for topic words, and adjective / liking verb -> polarity."""
    facts: dict[str, tuple] = {}
    for t in _TOPICS:
        for w in (*t.roles, *t.nouns, *t.venues, t.org_word):
            facts[w] = (t.name, None)
        for v in t.verbs:
            for form in v:
                facts[form] = (t.name, v[0])  # a verb is known by its base form
    for polarity, words in ((1, lx.POSITIVE), (0, lx.NEGATIVE)):
        for w in (*words, *lx.POLAR_VERBS[polarity]):
            facts[w] = (f"polarity {polarity}", None)
    return facts


def _agrees(groups: dict[str, str]) -> bool:
    """The agreement rules of the module docstring, on one match's slots (name -> words)."""
    facts = _word_facts()
    by_kind: dict[str, list[tuple[str, str]]] = {}
    for name, words in groups.items():  # "n2" -> kind "n", "v1_past" -> kind "v", "pv" -> "pv"
        by_kind.setdefault(re.sub(r"\d.*", "", name), []).append((name, words))
    topical = [w.split()[-1] for k in ("n", "v", "s", "venue", "a_role", "org") for _, w in by_kind.get(k, [])]
    if len({facts[w][0] for w in topical if w in facts}) > 1:  # (a subject may be a name: not topical)
        return False
    polar = {facts[w][0] for k in ("p", "pv") for _, w in by_kind.get(k, [])}
    opposite = {facts[w][0] for _, w in by_kind.get("o", [])}
    if len(polar) > 1 or len(opposite) > 1 or polar & opposite:
        return False
    verbs = {}  # "v1" -> the verb's base form, the same for every form of "v1"
    for name, w in by_kind.get("v", []):
        if verbs.setdefault(name.split("_")[0], facts[w][1]) != facts[w][1]:
            return False
    people = [w.split()[0] for k in ("x", "y", "s") for _, w in by_kind.get(k, []) if not w.startswith("the ")]
    adjectives = [w for k in ("p", "o") for _, w in by_kind.get(k, [])]
    nouns = [w for _, w in by_kind.get("n", [])]
    return all(len(set(drawn)) == len(drawn) for drawn in (people, nouns, list(verbs.values()), adjectives))


def sentence_kind(sentence: str) -> str | None:
    """Which part of a document the generator writes ``sentence`` as ("intro", "event",
    "review" or "conclusion"), or None if it cannot write it. Words are separated by single
    spaces, and the sentence ends with " ."."""
    if not isinstance(sentence, str):
        raise TypeError(f"sentence must be a str, got {type(sentence).__name__}")
    for kind, pattern in _patterns():
        m = pattern.fullmatch(sentence)
        if m and _agrees({k: v for k, v in m.groupdict().items() if v is not None}):
            return kind
    return None


def is_corpus_sentence(sentence: str) -> bool:
    """True if the corpus generator can write ``sentence``, its words agreeing as in the module
    docstring (see :func:`sentence_kind`)."""
    return sentence_kind(sentence) is not None
