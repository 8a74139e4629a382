"""A held-out domain for domain adaptation (chapter 09): health care, with polar words of its own.

The course's model is pretrained on five topics (food, sports, music, travel, technology). Health
care is a sixth that its pretraining text never mentions: none of the words below occur there,
and the WordPiece vocabulary learned on that text cuts each of them into several pieces
("soothing" → so ##ot ##hi ##n ##g). The domain has

* unlabeled documents written like the pretraining ones (one protagonist, events, reviews), whose
  reviews mix the domain's polar adjectives with the general ones ("the ointment was soothing ,
  good and gentle .");
* a sentiment task whose sentences carry *only* domain adjectives: ``train`` and ``test`` the seen
  half, ``test_unseen`` the other half, which no label ever shows.

So a model can learn the polarity of an unseen domain adjective only from the domain's unlabeled
text: that is what continued (domain-adaptive) pretraining is measured on. The names, places and
function words are the general corpus's; the generator is :mod:`mlstep.data.corpus`'s, given
these words.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlstep.data import lexicon as lx

__all__ = ["Domain", "HEALTH", "domain_words"]


@dataclass(frozen=True)
class Domain:
    """A topic's words plus its own polar adjectives, split into seen and unseen halves."""

    topic: lx.Topic
    positive: tuple[str, ...]  # the first half may appear in labels ("seen"), the second never
    negative: tuple[str, ...]

    def adjectives(self, polarity: int, unseen: bool) -> tuple[str, ...]:
        """The seen or unseen half of the positive (1) or negative (0) adjectives."""
        words = self.positive if polarity else self.negative
        half = len(words) // 2
        return words[half:] if unseen else words[:half]

    def review_adjectives(self) -> tuple[list[str], list[str]]:
        """(positive, negative) for the domain's documents: the general adjectives and its own."""
        return lx.POSITIVE + list(self.positive), lx.NEGATIVE + list(self.negative)


HEALTH = Domain(
    lx.Topic(
        "health",
        ("doctor", "nurse", "surgeon", "dentist", "pharmacist", "therapist", "paramedic", "midwife",
         "physician", "optician"),
        ("vaccine", "ointment", "bandage", "pill", "syrup", "injection", "surgery", "therapy",
         "treatment", "checkup", "prescription", "remedy", "inhaler", "splint", "stitch", "scan",
         "plaster", "capsule", "dose", "antibiotic", "painkiller", "lotion", "diagnosis",
         "operation", "massage", "vitamin", "cream", "brace", "crutch", "thermometer"),
        lx._verbs("prescribe prescribed prescribed, inject injected injected, examine examined examined, "
                  "treat treated treated, heal healed healed, diagnose diagnosed diagnosed, "
                  "apply applied applied, bandage bandaged bandaged, vaccinate vaccinated vaccinated, "
                  "stitch stitched stitched"),
        ("clinic", "hospital", "pharmacy", "ward"),
        "care",
    ),
    positive=("soothing", "effective", "gentle", "helpful", "thorough", "caring",
              "painless", "reassuring", "attentive", "calming", "comforting", "hygienic"),
    negative=("painful", "harmful", "useless", "careless", "rough", "sloppy",
              "toxic", "risky", "dangerous", "rushed", "itchy", "nauseating"),
)


def domain_words(domain: Domain) -> set[str]:
    """Every word that belongs to the domain alone (its topic words and polar adjectives)."""
    t = domain.topic
    words = {*t.roles, *t.nouns, *t.venues, t.org_word, *domain.positive, *domain.negative}
    return words | {w for v in t.verbs for w in v}


def _check_held_out(domain: Domain) -> None:
    """No domain word occurs in the general corpus (its vocabulary or invented names)."""
    shared = sorted(domain_words(domain) & set(lx.vocabulary()))
    if shared:
        raise AssertionError(f"{domain.topic.name} words also occur in the general corpus: {shared}")


_check_held_out(HEALTH)
