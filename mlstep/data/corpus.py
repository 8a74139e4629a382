"""The seeded generator of the offline corpus: pretraining documents and five labeled tasks.

Everything here is plain Python driven by ``random.Random(seed).random()`` alone (the only
method whose sequence Python promises to keep across versions), with no sets or dicts iterated
in hash order, so the same seed writes the same bytes on every machine.

Why the corpus is shaped this way (see data/README.md, the data card):

* **Dense templates.** Related words sit 1–3 tokens apart ("the soup was good , splendid and
  lovely .", "anna cooked the soup and the cake ."). A tiny model learns such co-occurrences in
  minutes; spread-out sentences made a prototype stall for thousands of steps.
* **Coherent documents** for next-sentence prediction: one topic, one polarity, one protagonist
  per document, in a fixed order (intro → "first / then / later" events → reviews of the things
  the events introduced → a conclusion that returns to the intro's person and place).
* **Unseen words**: half of the polar adjectives, topic words and a fifth of the names never
  occur in a task's labeled training split but do occur in pretraining text, in contexts that
  give them away. That is what makes "pretraining helps on unseen words" measurable.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from mlstep.data import lexicon as lx
from mlstep.data.domain import HEALTH, Domain
from mlstep.data.sampling import _a, _full, _maybe_int, _org, _Rng

__all__ = ["CorpusConfig", "generate_corpus", "TOPICS", "SENTIMENT_LABELS", "TAGS", "NLI_LABELS",
           "TASK_SPLITS"]

TOPICS = list(lx.TOPICS)
SENTIMENT_LABELS = ["negative", "positive"]  # 0, 1 (as in SST-2)
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
NLI_LABELS = ["entailment", "neutral", "contradiction"]  # 0, 1, 2 (as in MNLI)
# Every (task, split) the corpus holds; its records are under the key f"{task}_{split}".
TASK_SPLITS = {
    "pretrain": ("train", "validation"),
    "sentiment": ("train", "validation", "test", "test_unseen"),
    "topic": ("train", "validation", "test", "test_unseen"),
    "tagging": ("train", "validation", "test", "test_unseen"),
    "nli": ("train", "validation", "test"),
    "health_pretrain": ("train", "validation"),  # a held-out domain (mlstep.data.domain)
    "health_sentiment": ("train", "validation", "test", "test_unseen"),
}


@dataclass(frozen=True)
class CorpusConfig:
    """What to generate. Sizes are numbers of records; ``*_sizes`` follow ``TASK_SPLITS``."""

    seed: int = 0  # drives every random choice (the lexicon itself is fixed)
    num_documents: int = 20_000  # unlabeled pretraining documents (~1.2 M tokens)
    num_validation_documents: int = 1_000  # held-out documents (masked-token / NSP accuracy)
    sentiment_sizes: tuple[int, ...] = (2_000, 500, 1_000, 1_000)  # train, val, test, test_unseen
    topic_sizes: tuple[int, ...] = (2_000, 500, 1_000, 1_000)  # train, val, test, test_unseen
    tagging_sizes: tuple[int, ...] = (2_000, 500, 1_000, 1_000)  # train, val, test, test_unseen
    nli_sizes: tuple[int, ...] = (3_000, 600, 1_200)  # train, validation, test
    unseen_fraction_validation: float = 0.5  # share of validation records that use unseen words
    health_pretrain_sizes: tuple[int, ...] = (4_000, 200)  # held-out domain documents: train, validation
    health_sentiment_sizes: tuple[int, ...] = (1_000, 200, 1_000, 1_000)  # train, val, test, test_unseen

    def __post_init__(self) -> None:
        for task in ("sentiment", "topic", "tagging", "nli", "health_pretrain", "health_sentiment"):
            sizes = getattr(self, f"{task}_sizes")
            if len(sizes) != len(TASK_SPLITS[task]) or any(int(s) < 0 for s in sizes):
                raise ValueError(
                    f"{task}_sizes must be {len(TASK_SPLITS[task])} non-negative counts "
                    f"for the splits {TASK_SPLITS[task]}, got {sizes!r}"
                )
        if self.num_documents < 0 or self.num_validation_documents < 0:
            raise ValueError("num_documents and num_validation_documents must be >= 0")
        if not 0.0 <= self.unseen_fraction_validation <= 1.0:
            raise ValueError(
                f"unseen_fraction_validation must be in [0, 1], got {self.unseen_fraction_validation}"
            )


# --- pretraining documents ---------------------------------------------------------------------

_MARKERS = {1: ["one day ,"], 2: ["first ,", "then"], 3: ["first ,", "then", "later ,"]}


@dataclass(frozen=True)
class _Story:
    """What one document is about, drawn before its first sentence; every sentence draws on it."""

    pol: int  # the document's polarity: 1 positive, 0 negative
    polar: list[str]  # the adjectives of that polarity
    opposite: list[str]  # the adjectives of the other
    x_first: str  # the protagonist
    x_full: str  # the protagonist, sometimes with a surname
    y: str  # a second person
    place: str
    role: str  # the protagonist's role, a topic word
    venue: str
    org: str
    nouns: list[str]  # five topic nouns, in the order the events use them
    verbs: list[tuple[str, str, str]]  # three topic verbs: (base, past, participle)


def _story(rng: _Rng, t: lx.Topic, pos: list[str], neg: list[str]) -> _Story:
    """Draw a document's polarity, people, place and topic words."""
    pol = rng.index(2)
    polar, opposite = (pos, neg) if pol else (neg, pos)
    x_first, y = rng.sample(lx.PERSONS, 2)
    x_full = _full(rng, x_first, 0.4)
    place, role, venue = rng.choice(lx.PLACES), rng.choice(t.roles), rng.choice(t.venues)
    org = _org(rng.choice(lx.ORGS), t)
    nouns, verbs = rng.sample(t.nouns, 5), rng.sample(t.verbs, 3)
    return _Story(pol, polar, opposite, x_first, x_full, y, place, role, venue, org, nouns, verbs)


def _intro(rng: _Rng, story: _Story) -> str:
    """The first sentence: who the protagonist is, and where."""
    x, y, place, org = story.x_full, story.y, story.place, story.org
    a_role = f"{_a(story.role)} {story.role}"
    return rng.choice([
        f"{x} is {a_role} from {place} .",
        f"{x} works as {a_role} at {org} in {place} .",
        f"this is the story of {x} , {a_role} from {place} .",
        f"{rng.choice(['last', 'on'])} {rng.choice(lx.TIMES)} , {x} , {a_role} , went to {place} with {y} .",
        f"{org} hired {x} as {a_role} in {place} .",
        f"{x} joined {org} as {a_role} in {place} .",
        f"{x} is {a_role} from {place} who likes to {story.verbs[0][0]} .",
        f"{x} , {a_role} , visited {place} with {y} .",
    ])


def _event(rng: _Rng, story: _Story, e: int, marker: str) -> tuple[str, list[str]]:
    """The ``e``-th event sentence, and the nouns it introduces."""
    s = story.x_first if rng.chance(0.7) else f"the {story.role}"
    base, past, part = story.verbs[e]
    n1, n2 = story.nouns[2 * e % 5], story.nouns[(2 * e + 1) % 5]
    y, place, venue, org = story.y, story.place, story.venue, story.org
    k = rng.index(9)
    if k == 0:
        sent, new = f"{marker} {s} {past} the {n1} and the {n2} .", [n1, n2]
    elif k == 7:
        sent, new = f"{marker} {s} wanted to {base} something , so {s} {past} the {n1} .", [n1]
    elif k == 8:
        sent, new = f"{marker} someone {past} the {n1} for {s} .", [n1]
    elif k == 1:
        sent, new = f"{marker} {s} {past} the {n1} at the {venue} .", [n1]
    elif k == 2:
        sent, new = f"{marker} {s} and {y} {past} the {n1} in {place} .", [n1]
    elif k == 3:
        sent, new = f"{marker} {s} met {y} at {org} and they {past} the {n1} .", [n1]
    elif k == 4:
        sent, new = f"{marker} the {n1} was {part} by {s} at the {venue} .", [n1]
    elif k == 5:
        adj = rng.choice(lx.NEUTRAL_ADJECTIVES)
        sent, new = f"{marker} {s} {past} the {adj} {n1} with {y} .", [n1]
    else:
        other = story.verbs[(e + 1) % 3][1]
        sent, new = f"{marker} {s} did not {base} the {n1} but {other} the {n2} .", [n2]
    return sent, new


def _review(rng: _Rng, story: _Story, mentioned: list[str]) -> str:
    """A review of nouns the events mentioned.

    Reviews are mostly *lists of same-polarity adjectives*, the densest signal of a word's
    polarity; about one sentence in six mixes in a negated opposite ("not awful , it was good"),
    which teaches negation but blurs plain co-occurrence, so it is kept rare."""
    n = rng.choice(mentioned)
    n2 = rng.choice([m for m in mentioned if m != n] or [n])
    a1, a2, a3 = rng.sample(story.polar, 3)
    x_first, y, opposite = story.x_first, story.y, story.opposite
    k = rng.index(12)
    if k < 3:
        sent = f"the {n} was {a1} , {a2} and {a3} ."
    elif k < 5:
        sent = f"{y} thought the {n} was {a1} and {a2} ."
    elif k < 7 and n2 != n:
        sent = f"the {n} and the {n2} were {a1} and {a2} ."
    elif k < 7:
        sent = f"{x_first} said the {n} was {_maybe_int(rng)}{a1} and {a2} ."
    elif k == 7:
        sent = f"{x_first} {rng.choice(lx.POLAR_VERBS[story.pol])} the {n} , it was {_maybe_int(rng)}{a1} ."
    elif k == 8:
        sent = f"everyone at the {story.venue} said the {n} was {_maybe_int(rng)}{a1} ."
    elif k == 9:
        words = f"{_maybe_int(rng, attributive=True)}{a1}"
        sent = f"it was {_a(words)} {words} {n} ."
    elif k == 10:
        sent = f"the {n} was not {rng.choice(opposite)} , it was {a1} ."
    elif rng.chance(0.5):
        o1, o2 = rng.sample(opposite, 2)
        sent = f"the {n} was not {o1} or {o2} , it was {a1} ."
    else:
        sent = f"{y} found the {n} {_maybe_int(rng)}{a1} and did not find it {rng.choice(opposite)} ."
    return sent


def _conclusion(rng: _Rng, story: _Story) -> str:
    """The last sentence: how the story ended, in the document's polarity."""
    pol, x_first, place = story.pol, story.x_first, story.place
    k = rng.index(4)
    if k == 3:
        go = "leave" if pol else "go back to"
        return f"after that , nobody wanted to {go} {place} ."
    if k == 0:
        feel = "was happy and will come back to" if pol else "was upset and will never return to"
        return f"in the end , {x_first} {feel} {place} ."
    if k == 1:
        would = "would" if pol else "would not"
        return f"overall , {x_first} {would} recommend {story.org} to {rng.choice(lx.COMPANIONS)} ."
    return f"after that day , {x_first} went home {'happy' if pol else 'sad'} ."


def _document(rng: _Rng, doc_id: int, domain: Domain | None = None) -> dict[str, Any]:
    """One pretraining document: an intro, one to three events, reviews of what the events
    introduced and, usually, a conclusion; about one of ``TOPICS`` or about ``domain``."""
    topic_id = rng.index(len(TOPICS)) if domain is None else None
    t = lx.TOPIC_WORDS[TOPICS[topic_id]] if domain is None else domain.topic
    pos, neg = (lx.POSITIVE, lx.NEGATIVE) if domain is None else domain.review_adjectives()
    story = _story(rng, t, pos, neg)
    sentences = [_intro(rng, story)]
    n_events = 1 + rng.index(3)
    n_reviews = 2 if n_events == 3 else 2 + rng.index(2)  # at most 7 sentences in all
    mentioned: list[str] = []  # nouns the events introduced; the reviews refer back to them
    for e, marker in enumerate(_MARKERS[n_events]):
        sent, new = _event(rng, story, e, marker)
        sentences.append(sent)
        mentioned += [n for n in new if n not in mentioned]
    sentences += [_review(rng, story, mentioned) for _ in range(n_reviews)]
    if not rng.chance(0.1):  # a few documents end without a conclusion
        sentences.append(_conclusion(rng, story))
    return {"doc_id": doc_id, **({} if domain else {"topic": topic_id}), "polarity": story.pol,
            "sentences": sentences}


# --- labeled tasks -----------------------------------------------------------------------------

def _any_noun(rng: _Rng, domain: Domain | None = None) -> str:
    return rng.choice(lx.TOPIC_WORDS[rng.choice(TOPICS)].nouns if domain is None else domain.topic.nouns)


def _sentiment(rng: _Rng, label: int, unseen: bool, domain: Domain | None = None) -> dict[str, Any]:
    """A review-like sentence whose only polar words are adjectives (seen or unseen; or ``domain``'s)."""
    negated = rng.chance(0.3)
    polarity = label ^ int(negated)  # "not good" is negative
    if domain is not None:
        pool = domain.adjectives(polarity, unseen)
    elif polarity:
        pool = lx.POSITIVE_UNSEEN if unseen else lx.POSITIVE_SEEN
    else:
        pool = lx.NEGATIVE_UNSEEN if unseen else lx.NEGATIVE_SEEN
    a, a2 = rng.sample(pool, 2)
    n, x, p = _any_noun(rng, domain), rng.choice(lx.PERSONS), rng.choice(lx.PLACES)
    k = rng.index(6)
    if negated:
        text = [f"the {n} was not {a} .", f"the {n} at {p} was not {a} .",
                f"{x} said the {n} was not {a} .", f"it was not {_a(a)} {a} {n} .",
                f"the {n} was not {a} or {a2} .", f"{x} did not find the {n} {a} ."][k]
    else:
        i = _maybe_int(rng, attributive=k == 3)
        text = [f"the {n} was {i}{a} .", f"the {n} at {p} was {i}{a} .",
                f"{x} said the {n} was {i}{a} .", f"it was {_a(i + a)} {i}{a} {n} .",
                f"the {n} was {a} and {a2} .", f"{x} found the {n} {i}{a} ."][k]
    return {"text": text, "label": label, "unseen": unseen}


def _half(words: tuple, unseen: bool) -> tuple:
    """The seen (first) or unseen (second) half of a topic's word list."""
    h = len(words) // 2
    return words[h:] if unseen else words[:h]


def _topic(rng: _Rng, label: int, unseen: bool) -> dict[str, Any]:
    """A sentence about one topic, using only its seen (or only its unseen) words."""
    t = lx.TOPIC_WORDS[TOPICS[label]]
    roles, verbs = _half(t.roles, unseen), _half(t.verbs, unseen)
    n1, n2 = rng.sample(_half(t.nouns, unseen), 2)
    r, (_, past, part), v = rng.choice(roles), rng.choice(verbs), rng.choice(_half(t.venues, unseen))
    x, p = rng.choice(lx.PERSONS), rng.choice(lx.PLACES)
    text = [f"{x} {past} the {n1} and the {n2} .", f"the {r} {past} the {n1} at the {v} .",
            f"{x} and the {r} {past} the {n1} in {p} .", f"the {n1} was {part} by the {r} .",
            f"on {rng.choice(lx.TIMES)} , {x} {past} the {n1} .",
            f"{x} , {_a(r)} {r} , {past} the {n1} and the {n2} ."][rng.index(6)]
    return {"text": text, "label": label, "unseen": unseen}


def _tagging(rng: _Rng, label: int, unseen: bool) -> dict[str, Any]:
    """A sentence with entity mentions, as words and BIO tags; names held out if ``unseen``.

    (``label`` is unused: tagging has no sentence label.)"""
    persons = lx.HELDOUT_PERSONS if unseen else lx.PERSONS[: len(lx.PERSONS) - len(lx.HELDOUT_PERSONS)]
    places = lx.HELDOUT_PLACES if unseen else lx.PLACES[: len(lx.PLACES) - len(lx.HELDOUT_PLACES)]
    orgs = lx.HELDOUT_ORGS if unseen else lx.ORGS[: len(lx.ORGS) - len(lx.HELDOUT_ORGS)]
    t = lx.TOPIC_WORDS[rng.choice(TOPICS)]
    r, n, (_, past, _) = rng.choice(t.roles), rng.choice(t.nouns), rng.choice(t.verbs)
    x, y = rng.sample(persons, 2)
    ent = {"PER": _full(rng, x), "PER2": _full(rng, y), "LOC": rng.choice(places), "ORG": _org(rng.choice(orgs), t)}
    frame = rng.choice([
        "PER is {a} {r} from LOC .", "PER works as {a} {r} at ORG in LOC .", "PER met PER2 at ORG .",
        "last {time} , PER went to LOC with PER2 .", "ORG hired PER as {a} {r} .",
        "PER {past} the {n} in LOC .", "PER joined ORG in LOC .", "the {r} from ORG visited LOC .",
        "overall , PER would recommend ORG .", "in the end , PER was happy and will come back to LOC .",
    ]).format(a=_a(r), r=r, n=n, past=past, time=rng.choice(lx.TIMES))
    tokens: list[str] = []
    tags: list[str] = []
    for slot in frame.split():
        if slot in ent:
            words = ent[slot].split()
            kind = slot[:3]
            tokens += words
            tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(words) - 1)
        else:
            tokens.append(slot)
            tags.append("O")
    return {"tokens": tokens, "tags": tags, "unseen": unseen}


def _nli(rng: _Rng, label: int, unseen: bool = False) -> dict[str, Any]:
    """A premise about one event and a hypothesis it entails / leaves open / contradicts.

    (``unseen`` is unused: NLI has no unseen-word split.)"""
    t = lx.TOPIC_WORDS[rng.choice(TOPICS)]
    x, y = rng.sample(lx.PERSONS, 2)
    p, p2 = rng.sample(lx.PLACES, 2)
    n1, n2, n3 = rng.sample(t.nouns, 3)
    base, past, part = rng.choice(t.verbs)
    two = rng.chance(0.4)
    objects = f"the {n1} and the {n2}" if two else f"the {n1}"
    premise = f"{x} {past} {objects} in {p} ."
    if label == 0:
        options = [f"{x} {past} something .", f"someone {past} the {n1} .", f"{x} was in {p} .",
                   f"the {n1} was {part} by {x} ."] + ([f"{x} {past} the {n2} ."] if two else [])
    elif label == 1:
        adj = rng.choice(lx.POSITIVE + lx.NEGATIVE)
        options = [f"{x} {past} the {n3} .", f"the {n1} was {adj} .", f"{y} was in {p} .",
                   f"{y} did not {base} the {n1} .", f"{x} {past} the {n1} with {y} ."]
    else:
        options = [f"{x} did not {base} the {n1} .", f"nobody {past} the {n1} .",
                   f"{x} did not {base} anything .", f"{x} was never in {p} .",
                   f"{x} {past} {objects} in {p2} ."]
    return {"premise": premise, "hypothesis": rng.choice(options), "label": label}


def _split(rng: _Rng, make, num_labels: int, n: int, unseen_fraction: float) -> list[dict[str, Any]]:
    """``n`` records from ``make(rng, label, unseen)``, labels as balanced as ``n`` allows and a
    share ``unseen_fraction`` of them made from unseen words, in shuffled order."""
    n_unseen = round(n * unseen_fraction)
    records = [make(rng, i % num_labels, False) for i in range(n - n_unseen)]
    records += [make(rng, i % num_labels, True) for i in range(n_unseen)]
    rng.shuffle(records)
    return records


def generate_corpus(config: CorpusConfig | None = None) -> dict[str, list[dict[str, Any]]]:
    """Generate every split of the offline corpus in memory.

    Args:
        config: sizes and seed; ``CorpusConfig()`` (the course's corpus) when None.

    Returns:
        ``{f"{task}_{split}": [record, ...]}`` for every entry of ``TASK_SPLITS``. Records are
        plain dicts of str / int / bool / lists (see data/README.md for their fields). Each split
        draws from its own random stream, so changing one size leaves the other splits as they were.
    """
    cfg = config if config is not None else CorpusConfig()
    if not isinstance(cfg, CorpusConfig):
        raise TypeError(f"config must be a CorpusConfig, got {type(cfg).__name__}")
    out: dict[str, list[dict[str, Any]]] = {}

    def rng_for(stream: int) -> _Rng:
        return _Rng(cfg.seed * 1_000 + stream)  # one independent stream per split

    rng = rng_for(0)
    out["pretrain_train"] = [_document(rng, i) for i in range(cfg.num_documents)]
    rng = rng_for(1)
    out["pretrain_validation"] = [
        _document(rng, cfg.num_documents + i) for i in range(cfg.num_validation_documents)
    ]

    tasks = [  # (task, record maker, number of labels)
        ("sentiment", _sentiment, len(SENTIMENT_LABELS)),
        ("topic", _topic, len(TOPICS)),
        ("tagging", _tagging, 1),
        ("nli", _nli, len(NLI_LABELS)),
        ("health_sentiment", functools.partial(_sentiment, domain=HEALTH), len(SENTIMENT_LABELS)),
    ]
    for t_i, (task, make, num_labels) in enumerate(tasks):
        sizes = getattr(cfg, f"{task}_sizes")
        for s_i, (split, n) in enumerate(zip(TASK_SPLITS[task], sizes, strict=True)):
            # validation mixes seen and unseen words (each record's "unseen" field says which)
            unseen_fraction = {"validation": cfg.unseen_fraction_validation,
                               "test_unseen": 1.0}.get(split, 0.0) if task != "nli" else 0.0
            rng = rng_for(10 + 10 * t_i + s_i)
            out[f"{task}_{split}"] = _split(rng, make, num_labels, n, unseen_fraction)
    for s_i, (split, n) in enumerate(zip(TASK_SPLITS["health_pretrain"], cfg.health_pretrain_sizes)):
        rng, first = rng_for(100 + s_i), sum(cfg.health_pretrain_sizes[:s_i])  # (streams of its own)
        out[f"health_pretrain_{split}"] = [_document(rng, first + i, HEALTH) for i in range(n)]
    return out
