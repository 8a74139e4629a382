"""mlstep.data.grammar: every sentence the corpus generator writes is accepted (with its part of the
document), and sentences that break its grammar or its agreements are rejected."""

import random

import pytest

from mlstep.data import CorpusConfig, generate_corpus
from mlstep.data import lexicon as lx
from mlstep.data.grammar import TEMPLATES, is_corpus_sentence, sentence_kind

SMALL = dict(num_validation_documents=0, sentiment_sizes=(0, 0, 0, 0), topic_sizes=(0, 0, 0, 0),
             tagging_sizes=(0, 0, 0, 0), nli_sizes=(0, 0, 0))


@pytest.fixture(scope="module")
def documents():
    docs = []
    for seed in (0, 1, 2):
        docs += [d["sentences"] for d in generate_corpus(CorpusConfig(seed=seed, num_documents=700, **SMALL))["pretrain_train"]]
    return docs


def test_every_generated_sentence_is_accepted_with_its_part(documents):
    kinds = set()
    for doc in documents:
        parts = [sentence_kind(s) for s in doc]
        assert None not in parts, [s for s, k in zip(doc, parts) if k is None]
        assert parts[0] == "intro" and parts[1] == "event"
        assert parts.index("review") > 1 and all(k in ("review", "conclusion") for k in parts[parts.index("review"):])
        assert parts.count("conclusion") <= 1 and ("conclusion" not in parts or parts[-1] == "conclusion")
        kinds.update(parts)
    assert kinds == set(TEMPLATES)


def _topic_of(word):
    return next((t for t in lx.TOPIC_WORDS.values() if word in t.nouns), None)


def _topical(word):
    return any(word in (*t.roles, *t.nouns, *t.venues, t.org_word, *(f for v in t.verbs for f in v))
               for t in lx.TOPIC_WORDS.values())


def test_perturbed_sentences_are_rejected(documents):
    rng = random.Random(0)
    counts = {"noun of another topic": 0, "opposite adjective in a list": 0, "no final period": 0,
              "reversed": 0}
    for doc in documents[:600]:
        for sentence in doc:
            words = sentence.split()
            bad = {"no final period": " ".join(words[:-1]), "reversed": " ".join(reversed(words))}
            nouns = [i for i, w in enumerate(words) if _topic_of(w)]
            if nouns and sum(map(_topical, words)) > 1:  # another topic word to disagree with
                i = rng.choice(nouns)
                other = rng.choice([t for t in lx.TOPIC_WORDS.values() if t is not _topic_of(words[i])])
                bad["noun of another topic"] = " ".join(words[:i] + [rng.choice(other.nouns)] + words[i + 1:])
            if " , " in sentence and " and " in sentence and sentence.startswith("the ") and "was not" not in sentence:
                polar = [i for i, w in enumerate(words) if w in lx.POSITIVE + lx.NEGATIVE]
                if len(polar) == 3:  # "the X was a , b and c ."
                    i = polar[1]
                    flip = lx.NEGATIVE if words[i] in lx.POSITIVE else lx.POSITIVE
                    bad["opposite adjective in a list"] = " ".join(words[:i] + [rng.choice(flip)] + words[i + 1:])
            for what, text in bad.items():
                assert not is_corpus_sentence(text), (what, sentence, text)
                counts[what] += 1
    assert min(counts.values()) > 50, counts


@pytest.mark.parametrize("sentence, why", [
    ("first , anna cooked the guitar and the soup .", "verb and nouns of different topics"),
    ("the soup was good , good and lovely .", "an adjective drawn twice"),
    ("first , the chef cooked the soup and the soup .", "a noun drawn twice"),
    ("the soup was not good , it was great .", "negated adjective of the same polarity"),
    ("loved the soup , it was awful .", "no subject"),
    ("it was a so good soup .", '"so" before a noun'),
    ("it was a excellent soup .", '"a" before a vowel'),
    ("the soup was good , great and lovely", "no final period"),
    ("the soup was good ,  great and lovely .", "two spaces"),
    ("the  soup was good .", "two spaces"),
    ("soup the was good , great and lovely .", "word order"),
])
def test_hand_made_violations_are_rejected(sentence, why):
    assert not is_corpus_sentence(sentence), why


def test_templates_accept_hand_made_sentences_and_repeated_slots():
    x, y = lx.PERSONS[0], lx.PERSONS[1]
    assert sentence_kind(f"first , {x} wanted to cook something , so {x} cooked the soup .") == "event"
    assert sentence_kind(f"first , {x} wanted to cook something , so {y} cooked the soup .") is None
    assert sentence_kind(f"first , {x} wanted to cook something , so {x} baked the soup .") is None
    assert sentence_kind(f"then {x} did not cook the soup but baked the cake .") == "event"
    assert sentence_kind(f"then {x} did not cook the soup but cooked the cake .") is None  # the same verb
    assert sentence_kind(f"then {x} and {x} baked the soup in {lx.PLACES[0]} .") is None  # one person twice
    assert sentence_kind("it was an extremely good soup .") == "review"
    assert sentence_kind(f"{x} loved the soup , it was so good .") == "review"
    assert sentence_kind(f"{x} hated the soup , it was so good .") is None  # liking verb of the other polarity
    assert sentence_kind(f"overall , {x} would not recommend {lx.ORGS[0]} bistro to friends .") == "conclusion"
    with pytest.raises(TypeError, match="str"):
        is_corpus_sentence(["the", "soup"])
