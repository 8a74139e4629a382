"""Instructions from the offline world (chapter 11): questions whose right answer the generator knows.

Each example is a short story drawn exactly as the pretraining documents are (:mod:`mlstep.data.corpus`)
and one instruction about it, in one of several phrasings; the generator drew the story's people,
place, topic and polarity first, so every answer is known and :func:`score_answer` checks a reply
exactly. Families (``INSTRUCTION_FAMILIES``):

* ``who``: the protagonist's first name; ``where``: the place; ``topic``: one of the five topics —
  all from the story's first two sentences;
* ``polarity``: "good" or "bad", from an event and two reviews. With ``negated=True`` the reviews
  only deny the opposite ("the soup was not awful ."): the targeted failure of chapter 11's DPO;
* ``companion`` (held out of SFT): the *other* person in the story, a name to copy as in ``who``.

Every family has six phrasings (``companion`` five); the first four are for training, the last two
are held out (``phrasings="heldout"``). Splits draw from their own random streams.
"""

from __future__ import annotations

from typing import Any

from mlstep.data import lexicon as lx
from mlstep.data.corpus import TOPICS, _event, _intro, _review, _story
from mlstep.data.sampling import _Rng
from mlstep.tools.checks import check_args

__all__ = ["INSTRUCTION_FAMILIES", "SFT_FAMILIES", "instruction_examples", "score_answer"]

INSTRUCTION_FAMILIES = {
    "who": ["who is this story about ?", "who is the main person ?", "name the main person .",
            "which person is the story about ?", "who is it about ?", "whose story is this ?"],
    "where": ["where does the story happen ?", "which place is it about ?", "name the place .",
              "where is this set ?", "where did it happen ?", "what place is it ?"],
    "topic": ["what is the topic ?", "which topic is this about ?", "name the topic .",
              "what is the story about , which topic ?", "topic of the story ?", "what topic is it ?"],
    "polarity": ["was it good or bad ?", "is the review good or bad ?", "good or bad ?",
                 "did they like it , good or bad ?", "how was it , good or bad ?", "rate it : good or bad ?"],
    "companion": ["who else is in the story ?", "who is the other person ?", "name the second person .",
                  "who was with them ?", "which other person appears ?"],
}
SFT_FAMILIES = ("who", "where", "topic", "polarity")  # companion is never seen in SFT
_SPLITS = {"train": 1, "validation": 2, "test": 3}
_FAMILY_STREAM = {name: i for i, name in enumerate(INSTRUCTION_FAMILIES)}


def _story_context(rng: _Rng, family: str, negated: bool) -> tuple[str, str]:
    """One story's context sentences and the answer ``family`` asks for."""
    topic = rng.index(len(TOPICS))
    t = lx.TOPIC_WORDS[TOPICS[topic]]
    story = _story(rng, t, lx.POSITIVE, lx.NEGATIVE)
    if family == "polarity":
        event, mentioned = _event(rng, story, 0, "one day ,")
        if negated:  # only denials of the opposite polarity: the answer is the other one
            o1, o2 = rng.sample(story.opposite, 2)
            reviews = [f"the {mentioned[0]} was not {o1} .", f"{story.y} did not find the {mentioned[0]} {o2} ."]
        else:
            reviews = [_plain_review(rng, story, mentioned) for _ in range(2)]
        return " ".join([event, *reviews]), "good" if story.pol else "bad"
    text = f"{_intro(rng, story)} {_event(rng, story, 0, 'one day ,')[0]}"
    answer = {"who": story.x_first, "where": story.place, "topic": TOPICS[topic], "companion": story.y}[family]
    if family == "companion" and f" {story.y} " not in f" {text} ":
        return "", ""  # the other person is not in these sentences: draw again
    return text, answer


def _plain_review(rng: _Rng, story, mentioned: list[str]) -> str:
    """A review without negation (the polarity's own adjectives only)."""
    while " not " in (review := _review(rng, story, mentioned)):
        pass
    return review


def instruction_examples(family: str, n: int, split: str = "train", *, phrasings: str = "train",
                         negated: bool = False, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` examples of ``family`` from ``split`` ("train", "validation", "test"), each
    ``{"family", "context", "instruction", "answer", "messages"}`` with ``messages`` a user turn
    (context, then instruction) and the assistant's answer. ``phrasings``: "train" (the first four)
    or "heldout" (the rest; every phrasing of ``companion``)."""
    check_args(family=(family, tuple(INSTRUCTION_FAMILIES)), n=(n, "int > 0"), split=(split, tuple(_SPLITS)),
               phrasings=(phrasings, ("train", "heldout")), negated=(negated, bool), seed=(seed, "int >= 0"))
    if negated and family != "polarity":
        raise ValueError(f"negated=True is for the polarity family, not {family!r}")
    pool = INSTRUCTION_FAMILIES[family]
    pool = pool if family == "companion" else pool[:4] if phrasings == "train" else pool[4:]
    rng = _Rng(7_000_000 + 10_000 * seed + 100 * _FAMILY_STREAM[family] + 10 * _SPLITS[split] + negated)
    examples = []
    while len(examples) < n:
        context, answer = _story_context(rng, family, negated)
        if not context:
            continue
        instruction = rng.choice(pool)
        examples.append({"family": family, "context": context, "instruction": instruction, "answer": answer,
                         "messages": [{"role": "user", "content": f"{context} {instruction}"},
                                      {"role": "assistant", "content": answer}]})
    return examples


def score_answer(example: dict[str, Any], reply: str) -> float:
    """1.0 if ``reply`` is the example's answer (surrounding spaces ignored), else 0.0: the exact
    check every family's reward and accuracy use."""
    check_args(example=(example, dict), reply=(reply, str))
    if "answer" not in example:
        raise ValueError("example must have an 'answer' (an item of instruction_examples)")
    return float(reply.strip() == example["answer"])
