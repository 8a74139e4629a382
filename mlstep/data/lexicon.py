"""The fixed word lists of the offline corpus: topics, polar words, names.

The lexicon does **not** depend on the corpus seed: chapters can name its words in their text
("the unseen adjective *splendid*"), and every seed of the corpus talks about the same world.
Invented names come from a small syllable generator with its own fixed seed, so they are
pronounceable, never real English words, and split into several WordPiece pieces.

Which words are "seen" (may appear in labeled training data) and "unseen" (appear only in
unlabeled pretraining text and in the ``*_test_unseen`` splits) is fixed here too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = [
    "TOPICS",
    "Topic",
    "TOPIC_WORDS",
    "POSITIVE",
    "NEGATIVE",
    "POSITIVE_SEEN",
    "POSITIVE_UNSEEN",
    "NEGATIVE_SEEN",
    "NEGATIVE_UNSEEN",
    "POLAR_VERBS",
    "INTENSIFIERS",
    "PERSONS",
    "SURNAMES",
    "PLACES",
    "ORGS",
    "HELDOUT_PERSONS",
    "HELDOUT_PLACES",
    "HELDOUT_ORGS",
    "vocabulary",
]

TOPICS = ["food", "sports", "music", "travel", "technology"]


@dataclass(frozen=True)
class Topic:
    """The words of one topic. Verbs are ``(base, past, participle)`` triples."""

    name: str
    roles: tuple[str, ...]  # people who do the topic ("chef")
    nouns: tuple[str, ...]  # things of the topic ("soup")
    verbs: tuple[tuple[str, str, str], ...]  # actions of the topic ("cook", "cooked", "cooked")
    venues: tuple[str, ...]  # where it happens ("kitchen")
    org_word: str  # second word of the topic's organisations ("zanta bistro")


def _verbs(spec: str) -> tuple[tuple[str, str, str], ...]:
    """Parse ``"cook cooked cooked, eat ate eaten"`` into triples."""
    return tuple(tuple(v.split()) for v in spec.split(","))  # type: ignore[misc]


_TOPIC_LIST = [
    Topic(
        "food",
        ("chef", "cook", "baker", "waiter", "butcher", "grocer", "farmer", "sommelier",
         "caterer", "dishwasher"),
        ("soup", "cake", "pasta", "salad", "bread", "pie", "curry", "stew", "pizza", "steak",
         "ramen", "rice", "fish", "chicken", "burger", "sandwich", "omelette", "pancake",
         "dumpling", "taco", "risotto", "lasagna", "cheese", "sauce", "cookie", "muffin",
         "sushi", "tart", "porridge", "chowder"),
        _verbs("cook cooked cooked, bake baked baked, eat ate eaten, taste tasted tasted, "
               "serve served served, order ordered ordered, grill grilled grilled, "
               "fry fried fried, roast roasted roasted, season seasoned seasoned"),
        ("restaurant", "kitchen", "cafe", "bakery"),
        "bistro",
    ),
    Topic(
        "sports",
        ("player", "coach", "referee", "captain", "goalkeeper", "runner", "swimmer", "boxer",
         "striker", "trainer"),
        ("match", "game", "ball", "goal", "trophy", "medal", "final", "league", "playoff",
         "tournament", "penalty", "point", "bat", "racket", "net", "helmet", "whistle", "jersey",
         "marathon", "relay", "championship", "derby", "puck", "glove", "shot", "corner", "foul",
         "lap", "scoreboard", "rematch"),
        _verbs("play played played, win won won, kick kicked kicked, throw threw thrown, "
               "catch caught caught, score scored scored, race raced raced, "
               "pass passed passed, hit hit hit, block blocked blocked"),
        ("stadium", "gym", "arena", "field"),
        "united",
    ),
    Topic(
        "music",
        ("singer", "drummer", "pianist", "guitarist", "violinist", "composer", "conductor",
         "producer", "bassist", "organist"),
        ("song", "album", "melody", "chorus", "guitar", "piano", "violin", "drum", "concert",
         "symphony", "ballad", "lyric", "rhythm", "anthem", "opera", "vinyl", "track", "verse",
         "harmony", "solo", "duet", "cello", "flute", "trumpet", "saxophone", "harp", "banjo",
         "playlist", "encore", "overture"),
        _verbs("sing sang sung, compose composed composed, record recorded recorded, "
               "perform performed performed, hum hummed hummed, strum strummed strummed, "
               "rehearse rehearsed rehearsed, tune tuned tuned, mix mixed mixed, "
               "conduct conducted conducted"),
        ("studio", "theatre", "festival", "auditorium"),
        "records",
    ),
    Topic(
        "travel",
        ("pilot", "guide", "tourist", "driver", "sailor", "traveller", "porter", "steward",
         "hiker", "backpacker"),
        ("flight", "ticket", "train", "suitcase", "passport", "map", "ferry", "cruise", "bus",
         "taxi", "luggage", "backpack", "tent", "cabin", "trip", "journey", "voyage", "route",
         "visa", "souvenir", "postcard", "compass", "guidebook", "itinerary", "canoe", "bicycle",
         "hostel", "beach", "island", "tram"),
        _verbs("fly flew flown, book booked booked, pack packed packed, drive drove driven, "
               "sail sailed sailed, explore explored explored, hike hiked hiked, "
               "board boarded boarded, rent rented rented, tour toured toured"),
        ("airport", "hotel", "station", "port"),
        "airways",
    ),
    Topic(
        "technology",
        ("engineer", "programmer", "designer", "scientist", "technician", "developer",
         "analyst", "tester", "inventor", "hacker"),
        ("laptop", "robot", "phone", "app", "server", "chip", "website", "database", "tablet",
         "camera", "drone", "keyboard", "printer", "battery", "sensor", "router", "screen",
         "program", "software", "gadget", "algorithm", "network", "computer", "monitor",
         "headset", "processor", "modem", "charger", "console", "satellite"),
        _verbs("code coded coded, build built built, debug debugged debugged, "
               "install installed installed, design designed designed, test tested tested, "
               "upgrade upgraded upgraded, compile compiled compiled, deploy deployed deployed, "
               "repair repaired repaired"),
        ("lab", "office", "workshop", "factory"),
        "systems",
    ),
]
TOPIC_WORDS: dict[str, Topic] = {t.name: t for t in _TOPIC_LIST}

# Polar adjectives: the first six of each list may appear in labeled sentiment data ("seen"), the
# last six never do ("unseen"); pretraining text uses all twelve, mixed in one sentence
# ("the soup was good , splendid and lovely ."), which is how a model can learn the polarity of
# the unseen ones without a label.
POSITIVE = ["good", "great", "lovely", "superb", "wonderful", "excellent",
            "brilliant", "delightful", "splendid", "fantastic", "charming", "pleasant"]
NEGATIVE = ["bad", "awful", "terrible", "boring", "poor", "dreadful",
            "horrible", "dull", "mediocre", "nasty", "lousy", "dreary"]
POSITIVE_SEEN, POSITIVE_UNSEEN = POSITIVE[:6], POSITIVE[6:]
NEGATIVE_SEEN, NEGATIVE_UNSEEN = NEGATIVE[:6], NEGATIVE[6:]
# Past-tense verbs of liking / disliking (only in pretraining text).
POLAR_VERBS = {1: ["loved", "enjoyed", "praised", "adored"],
               0: ["hated", "disliked", "criticized", "loathed"]}
INTENSIFIERS = ["very", "really", "quite", "truly", "extremely", "so"]  # "so": predicative only

# Neutral words used around the topic words.
TIMES = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
         "morning", "afternoon", "evening", "weekend", "spring", "summer", "autumn", "winter"]
COMPANIONS = ["friends", "family", "neighbours", "colleagues", "cousins", "students"]
# Non-polar adjectives for the things in the events ("the old guitar").
NEUTRAL_ADJECTIVES = ["big", "small", "new", "old", "long", "short", "red", "blue", "green",
                      "yellow", "local", "famous", "huge", "tiny", "simple", "modern", "heavy",
                      "light", "round", "square"]


# --- invented names --------------------------------------------------------------------------

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr",
           "kr", "st", "tr", "sh"]
_VOWELS = ["a", "e", "i", "o", "u"] * 3 + ["ai", "ei", "ou"]
_CODAS = [""] * 5 + ["n", "r", "l", "s"]
_NAME_SEED = 20240521  # fixed: the names do not change with the corpus seed
_PLACE_SUFFIXES = ["bay", "hills", "falls", "valley"]


def _make_names(count: int, rng: random.Random, taken: set[str]) -> list[str]:
    """``count`` new pronounceable names of 2–3 syllables, none in ``taken`` (updated)."""

    def pick(seq: list[str]) -> str:
        return seq[int(rng.random() * len(seq))]  # only random(): stable across Pythons

    names: list[str] = []
    while len(names) < count:
        n_syll = 2 if rng.random() < 0.6 else 3
        name = "".join(pick(_ONSETS) + pick(_VOWELS) + pick(_CODAS) for _ in range(n_syll))
        if 4 <= len(name) <= 9 and name not in taken:
            taken.add(name)
            names.append(name)
    return names


def _function_words() -> list[str]:
    return ("the a an and or but , . is was were it they this of in at to from with for who "
            "not did went will would come back home happy sad upset overall end then first later "
            "one day after met joined works as visited said thought found everyone story last "
            "recommend return likes wanted so nobody someone something anything go leave on by find "
            "hired never that").split()


def _all_fixed_words() -> set[str]:
    words = set(_function_words()) | set(POSITIVE) | set(NEGATIVE) | set(INTENSIFIERS)
    words |= set(TIMES) | set(COMPANIONS) | set(NEUTRAL_ADJECTIVES) | set(_PLACE_SUFFIXES)
    for verbs in POLAR_VERBS.values():
        words |= set(verbs)
    for t in _TOPIC_LIST:
        words |= set(t.roles) | set(t.nouns) | set(t.venues) | {t.org_word}
        for v in t.verbs:
            words |= set(v)
    return words


def _build_names() -> tuple[list[str], list[str], list[str], list[str]]:
    rng = random.Random(_NAME_SEED)
    taken = _all_fixed_words()
    persons = _make_names(250, rng, taken)
    surnames = _make_names(120, rng, taken)
    places = _make_names(100, rng, taken)
    orgs = _make_names(100, rng, taken)
    # every fourth place has a two-word name ("lorin bay") so LOC gets I- tags too
    places = [f"{p} {_PLACE_SUFFIXES[(i // 4) % 4]}" if i % 4 == 3 else p
              for i, p in enumerate(places)]
    return persons, surnames, places, orgs


PERSONS, SURNAMES, PLACES, ORGS = _build_names()
# Names held out of the *tagging* labels (they still appear in pretraining text and in every
# other task): the last 20 % of each list.
HELDOUT_PERSONS = PERSONS[200:]
HELDOUT_PLACES = PLACES[80:]
HELDOUT_ORGS = ORGS[80:]


def _check_lexicon() -> None:
    """Every topic word belongs to exactly one topic (else topic labels would be ambiguous)."""
    owner: dict[str, str] = {}
    for t in _TOPIC_LIST:
        words = list(t.roles) + list(t.nouns) + [w for v in t.verbs for w in v] + list(t.venues)
        words.append(t.org_word)
        for w in set(words):
            if w in owner:
                raise AssertionError(f"topic word {w!r} is in both {owner[w]!r} and {t.name!r}")
            owner[w] = t.name


_check_lexicon()


def vocabulary() -> list[str]:
    """Every word the generator can write, sorted (for word-level models and statistics)."""
    words = _all_fixed_words() | set(PERSONS) | set(SURNAMES) | set(ORGS)
    for p in PLACES:
        words |= set(p.split())
    return sorted(words)
