"""mlstep.data: the seeded offline corpus (determinism, the unseen-word splits, label rules) and
the real-dataset loaders on tiny files written in each dataset's own format (no network)."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import datasets
import pytest

from mlstep.data import (
    NLI_LABELS,
    SENTIMENT_LABELS,
    TAGS,
    TASK_SPLITS,
    TOPICS,
    UPOS_TAGS,
    CorpusConfig,
    generate_corpus,
    load_ag_news,
    load_conll2003,
    load_conllu,
    load_imdb,
    load_mnli,
    load_sst2,
    load_task,
    load_ud_english_ewt,
    load_wikitext2,
    read_conllu,
    write_corpus,
)
from mlstep.data import lexicon as lx
from mlstep.data.__main__ import corpus_stats
from mlstep.data.domain import HEALTH, domain_words
from mlstep.data.store import _jsonl_bytes

SMALL = CorpusConfig(
    seed=7, num_documents=300, num_validation_documents=30,
    sentiment_sizes=(200, 60, 100, 100), topic_sizes=(200, 60, 100, 100),
    tagging_sizes=(200, 60, 100, 100), nli_sizes=(150, 30, 60),
    health_pretrain_sizes=(100, 20), health_sentiment_sizes=(60, 20, 40, 40),
)
# sha256 of SMALL's canonical JSON Lines. If this changes, the generator's output changed on this
# machine / Python: either a bug (non-determinism) or an intended change (then update the pin and
# say so in data/README.md, since every chapter's numbers move with it). The held-out domain
# (health_*) was added later, from streams of its own: the first pin is the corpus before it.
SMALL_SHA256 = "a755cff66c43c4ca9ff4bf1a9f823b88f6fe648f64b24a1d79d8456cfedf9b12"
SMALL_HEALTH_SHA256 = "6bd8cf5cc7bae7ef0db1c1b8b7fba4efcbb34b9ceca017f6db94057b158945df"
# sha256 of every file of the default corpus that existed before the held-out domain was added:
# adding a task must leave them byte-identical (the chapters' numbers depend on them).
DEFAULT_FILE_SHA256 = {
    "nli_test": "424f6bb3e1c8375bcb3ce43d888207f634db577a82eb6dd6473cb008dbaf2423",
    "nli_train": "f1cac5dc58a82d7c9a9766978a4f765bf867258e5db4c7934871e157bb113d4f",
    "nli_validation": "4c157d84555513b873dd0b903f55c6e622391c9e302b9e36b7795d686b51e8ec",
    "pretrain_train": "3a4c33eb38429372dfd0a4fa9043cee0d75e71b8ad74d41eea49c76c65bcdf2c",
    "pretrain_validation": "b39dba6f65a6e42410ba022345efaa27ee2f208cc21c3e923c8b15cb06ab785d",
    "sentiment_test": "33df95051e814fc9a4537a0859465b30748b1bec52cfe2d2516bca87ec65da86",
    "sentiment_test_unseen": "8ed7ab1ded87a2fe7f97a9bec78d4b5e61bbf204a4bc956a99eeda416fc544db",
    "sentiment_train": "eebbab27dc35813a56569446dec6dacf8d1c3b5bd8eca9d1b3151dc8855bd8c3",
    "sentiment_validation": "1100b609c12f20c2eee959ddceef046ac55c5a4ab4e4d5e38b643c591f44140b",
    "tagging_test": "9dd9be0d2db618a9c34942ddcef9670162289ef1997c1dbec1b194e011ef98f9",
    "tagging_test_unseen": "3b444e0951fcf3204811026067b6b230e146099a492ac750216c818408865fa3",
    "tagging_train": "65290adbd26dc37d78419fdf295b9906766543cbc415197dfd2c163d943ff6f8",
    "tagging_validation": "3983d65eccac6743cfdfecb35e10b782b32ba209d6343d8e0abf3ae5affc9fae",
    "topic_test": "53a336a2910089f93487b1c4668f92c82c699d50dc5abcf9e2c151b0dd4eb8cf",
    "topic_test_unseen": "0bb822e10da3cbd23c668e80551f346b0fc925a73056a2cfdc962abc78ed2324",
    "topic_train": "35e2d66a4f7215141d0fde86ea45d87a6e096a2bf7f26fff7a87ea5484e8ee04",
    "topic_validation": "501c14e5ccd04ac2e195971e210206b48c2d874926fbc159b8cec411bf9447a6",
}


@pytest.fixture(scope="module")
def small():
    return generate_corpus(SMALL)


@pytest.fixture(scope="module")
def full():
    """The default corpus (about 2 s): the unseen-word properties must hold at full size."""
    return generate_corpus()


def _sha(corpus, keys=None) -> str:
    h = hashlib.sha256()
    for key in sorted(corpus if keys is None else keys):
        h.update(key.encode() + b"\n" + _jsonl_bytes(corpus[key]))
    return h.hexdigest()


def _words(records, field="text") -> set[str]:
    out: set[str] = set()
    for r in records:
        out.update(r["tokens"] if field == "tokens" else r[field].split())
    return out


def _pretrain_words(corpus) -> set[str]:
    return {w for d in corpus["pretrain_train"] for s in d["sentences"] for w in s.split()}


# --- determinism ------------------------------------------------------------------------------

def test_same_seed_same_records_and_pinned_hash(small):
    assert generate_corpus(SMALL) == small
    health = [k for k in small if k.startswith("health_")]
    assert len(health) == 6
    assert _sha(small, [k for k in small if k not in health]) == SMALL_SHA256
    assert _sha(small, health) == SMALL_HEALTH_SHA256


def test_default_corpus_files_are_unchanged(full):
    """Every file the chapters were measured on is byte-identical (the held-out domain came later)."""
    for key, sha in DEFAULT_FILE_SHA256.items():
        assert hashlib.sha256(_jsonl_bytes(full[key])).hexdigest() == sha, key


def test_different_seed_differs(small):
    other = generate_corpus(CorpusConfig(**{**SMALL.__dict__, "seed": 8}))
    for key in small:
        assert other[key] != small[key], key


def test_keys_sizes_and_text_format(small):
    assert sorted(small) == sorted(f"{t}_{s}" for t, splits in TASK_SPLITS.items() for s in splits)
    assert len(small["pretrain_train"]) == 300 and len(small["nli_test"]) == 60
    assert len(small["sentiment_test_unseen"]) == 100
    texts = [s for d in small["pretrain_train"] for s in d["sentences"]]
    texts += [r["text"] for r in small["sentiment_train"] + small["topic_train"]]
    for t in texts:  # lowercase, single spaces, punctuation as its own token
        assert t == t.lower() and t == " ".join(t.split()) and re.fullmatch(r"[a-z ,.]+", t), t
        assert re.search(r"\w[,.]", t) is None, t


def test_config_validation():
    with pytest.raises(ValueError, match="sentiment_sizes"):
        CorpusConfig(sentiment_sizes=(1, 2, 3))
    with pytest.raises(ValueError, match="unseen_fraction_validation"):
        CorpusConfig(unseen_fraction_validation=1.5)
    with pytest.raises(TypeError, match="CorpusConfig"):
        generate_corpus({"seed": 0})


# --- pretraining documents --------------------------------------------------------------------

def test_documents_stay_on_one_topic_and_in_order(full):
    owner = {}
    for name, t in lx.TOPIC_WORDS.items():
        for w in (*t.roles, *t.nouns, *(w for v in t.verbs for w in v), *t.venues, t.org_word):
            owner[w] = name
    for doc in full["pretrain_train"][:3000]:
        topic = TOPICS[doc["topic"]]
        seen = {owner[w] for s in doc["sentences"] for w in s.split() if w in owner}
        assert seen == {topic}, (doc, seen)
        assert 4 <= len(doc["sentences"]) <= 7
        starts = [s.split(" ,")[0].split()[0] for s in doc["sentences"]]
        if "then" in starts:  # "first" always comes before "then", "then" before "later"
            assert starts.index("first") < starts.index("then")
        if "later" in starts:
            assert starts.index("then") < starts.index("later")


def test_documents_have_one_polarity(full):
    def unnegated(sentence):  # words outside the scope of "not" (which ends at "," or ".")
        out, negated = [], False
        for w in sentence.split():
            negated = (negated or w == "not") and w not in (",", ".")
            out += [] if negated else [w]
        return out

    for doc in full["pretrain_train"][:3000]:
        words = [w for s in doc["sentences"] for w in unnegated(s)]
        pos = {w for w in words if w in lx.POSITIVE}
        neg = {w for w in words if w in lx.NEGATIVE}
        assert (neg if doc["polarity"] else pos) == set(), doc  # opposite words only negated
        assert pos | neg, doc


# --- sentiment --------------------------------------------------------------------------------

def test_unseen_polar_words_only_in_pretraining_and_unseen_tests(full):
    unseen = set(lx.POSITIVE_UNSEEN + lx.NEGATIVE_UNSEEN)
    seen = set(lx.POSITIVE_SEEN + lx.NEGATIVE_SEEN)
    assert not unseen & _words(full["sentiment_train"])
    assert not unseen & _words(full["sentiment_test"])
    assert unseen <= _words(full["sentiment_test_unseen"])
    assert not seen & _words(full["sentiment_test_unseen"])
    assert unseen <= _pretrain_words(full)
    # their polarity shows in context: they share sentences with seen words of the same polarity
    for w, same in [(w, lx.POSITIVE_SEEN) for w in lx.POSITIVE_UNSEEN] + [
            (w, lx.NEGATIVE_SEEN) for w in lx.NEGATIVE_UNSEEN]:
        with_seen = [s for d in full["pretrain_train"][:5000] for s in d["sentences"]
                     if w in s.split() and "not" not in s.split() and set(s.split()) & seen]
        assert len(with_seen) > 20, w
        assert all(set(s.split()) & seen <= set(same) for s in with_seen), w


@pytest.mark.parametrize("split", TASK_SPLITS["sentiment"])
def test_sentiment_labels_follow_polar_words_and_negation(small, split):
    records = small[f"sentiment_{split}"]
    assert Counter(r["label"] for r in records) == {0: len(records) // 2, 1: len(records) // 2}
    for r in records:
        words = r["text"].split()
        polar = [w for w in words if w in lx.POSITIVE + lx.NEGATIVE]
        assert polar and len({w in lx.POSITIVE for w in polar}) == 1, r
        expected = int(polar[0] in lx.POSITIVE) ^ int("not" in words)
        assert r["label"] == expected, r
        assert r["unseen"] == (polar[0] in lx.POSITIVE_UNSEEN + lx.NEGATIVE_UNSEEN), r
    if split == "validation":
        assert Counter(r["unseen"] for r in records) == {True: 30, False: 30}


# --- topic ------------------------------------------------------------------------------------

def test_topic_unseen_words_and_balance(full):
    def halves(unseen):
        words = {}
        for i, name in enumerate(TOPICS):
            t = lx.TOPIC_WORDS[name]
            for seq in (t.roles, t.nouns, t.verbs, t.venues):
                h = len(seq) // 2
                for item in (seq[h:] if unseen else seq[:h]):
                    for w in (item if isinstance(item, tuple) else (item,)):
                        words[w] = i
        return words

    seen_words, unseen_words = halves(False), halves(True)
    for split in TASK_SPLITS["topic"]:
        records = full[f"topic_{split}"]
        counts = Counter(r["label"] for r in records)
        assert set(counts.values()) == {len(records) // 5}, (split, counts)
        for r in records:
            words = r["text"].split()
            vocab = unseen_words if r["unseen"] else seen_words
            other = seen_words if r["unseen"] else unseen_words
            assert not set(words) & set(other), r
            assert {vocab[w] for w in words if w in vocab} == {r["label"]}, r
    assert not any(r["unseen"] for r in full["topic_train"] + full["topic_test"])
    assert all(r["unseen"] for r in full["topic_test_unseen"])
    assert set(unseen_words) <= _pretrain_words(full)


# --- tagging ----------------------------------------------------------------------------------

def _check_bio(tags):
    for i, t in enumerate(tags):
        assert t in TAGS, t
        if t.startswith("I-"):  # I- never follows O or another type
            assert i > 0 and tags[i - 1] in (f"B-{t[2:]}", t), tags


def test_tagging_bio_and_heldout_names(full):
    heldout = set(lx.HELDOUT_PERSONS + [w for p in lx.HELDOUT_PLACES for w in p.split()[:1]]
                  + lx.HELDOUT_ORGS)
    for split in TASK_SPLITS["tagging"]:
        for r in full[f"tagging_{split}"]:
            assert len(r["tokens"]) == len(r["tags"])
            _check_bio(r["tags"])
            if split == "train":
                assert not heldout & set(r["tokens"]), r
    assert heldout <= _words(full["tagging_test_unseen"], "tokens")
    assert heldout & _words(full["tagging_validation"], "tokens")
    assert heldout <= _pretrain_words(full)
    names = {w: "PER" for w in lx.PERSONS} | {p.split()[0]: "LOC" for p in lx.PLACES}
    names |= {w: "ORG" for w in lx.ORGS}
    for r in full["tagging_train"][:500] + full["tagging_test_unseen"][:500]:
        for w, t in zip(r["tokens"], r["tags"], strict=True):  # first words of names get a B- tag
            if w in names:
                assert t == f"B-{names[w]}", r


# --- NLI --------------------------------------------------------------------------------------

@pytest.mark.parametrize("split", TASK_SPLITS["nli"])
def test_nli_balanced_and_consistent(small, split):
    records = small[f"nli_{split}"]
    n = len(records)
    assert Counter(r["label"] for r in records) == {0: n // 3, 1: n // 3, 2: n // 3}
    negations = {"not", "nobody", "never"}
    for r in records:
        p, h = r["premise"].split(), r["hypothesis"].split()
        name = NLI_LABELS[r["label"]]
        if name == "entailment":  # no negation, and every content word comes from the premise
            assert not negations & set(h), r
            assert set(h) - set(p) <= {"something", "someone", "was", "by"} | {
                w for t in lx.TOPIC_WORDS.values() for v in t.verbs for w in v}, r
        elif name == "contradiction":  # negated, or the same event in another place
            event, place = r["premise"].split(" in ")
            other = r["hypothesis"].split(" in ")
            assert negations & set(h) or (other[0] == event and other[1] != place), r


# --- the held-out domain -----------------------------------------------------------------------

def test_health_domain_is_held_out_of_the_general_corpus(full):
    general = _pretrain_words(full)
    for task in ("sentiment", "topic", "nli"):
        for split in TASK_SPLITS[task]:
            general |= {w for r in full[f"{task}_{split}"] for k in ("text", "premise", "hypothesis")
                        if k in r for w in r[k].split()}
    general |= {w for split in TASK_SPLITS["tagging"] for r in full[f"tagging_{split}"] for w in r["tokens"]}
    assert not domain_words(HEALTH) & general
    health = {w for d in full["health_pretrain_train"] for s in d["sentences"] for w in s.split()}
    assert set(HEALTH.positive + HEALTH.negative) <= health
    assert set(lx.POSITIVE_UNSEEN) <= health  # general adjectives too: the bridge to what the model knows


def test_health_unseen_adjectives_only_in_documents_and_unseen_test(full):
    unseen = set(HEALTH.adjectives(1, True) + HEALTH.adjectives(0, True))
    seen = set(HEALTH.adjectives(1, False) + HEALTH.adjectives(0, False))
    assert not unseen & (_words(full["health_sentiment_train"]) | _words(full["health_sentiment_test"]))
    assert unseen <= _words(full["health_sentiment_test_unseen"])
    assert not seen & _words(full["health_sentiment_test_unseen"])
    for w in sorted(unseen):  # each shares review sentences with same-polarity words
        same = set(HEALTH.positive if w in HEALTH.positive else HEALTH.negative)
        same |= set(lx.POSITIVE if w in HEALTH.positive else lx.NEGATIVE)
        with_others = [s for d in full["health_pretrain_train"] for s in d["sentences"]
                       if w in s.split() and "not" not in s.split() and len(set(s.split()) & (same | seen)) > 1]
        assert len(with_others) > 20, w


@pytest.mark.parametrize("split", TASK_SPLITS["health_sentiment"])
def test_health_sentiment_labels_follow_domain_adjectives(small, split):
    records = small[f"health_sentiment_{split}"]
    assert Counter(r["label"] for r in records) == {0: len(records) // 2, 1: len(records) // 2}
    for r in records:
        words = r["text"].split()
        polar = [w for w in words if w in HEALTH.positive + HEALTH.negative]
        assert polar and not set(words) & set(lx.POSITIVE + lx.NEGATIVE), r
        assert r["label"] == int(polar[0] in HEALTH.positive) ^ int("not" in words), r
        assert r["unseen"] == (polar[0] in HEALTH.adjectives(1, True) + HEALTH.adjectives(0, True)), r
        assert set(words) & set(HEALTH.topic.nouns), r


# --- files and load_task ----------------------------------------------------------------------

def test_write_corpus_manifest(tmp_path, small):
    manifest_path = write_corpus(tmp_path, SMALL)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["config"]["seed"] == 7 and manifest["config"]["nli_sizes"] == [150, 30, 60]
    for key, records in small.items():
        data = (tmp_path / f"{key}.jsonl").read_bytes()
        assert hashlib.sha256(data).hexdigest() == manifest["files"][f"{key}.jsonl"]["sha256"]
        assert [json.loads(line) for line in data.splitlines()] == records
    stats = "\n".join(corpus_stats(tmp_path))
    assert "sentiment_train.jsonl" in stats and "negative=100 positive=100" in stats


def test_load_task_columns_and_regeneration(tmp_path, small):
    columns = {
        "pretrain": ["doc_id", "topic", "polarity", "sentences"],
        "sentiment": ["text", "label", "unseen"],
        "topic": ["text", "label", "unseen"],
        "tagging": ["tokens", "tags", "unseen"],
        "nli": ["premise", "hypothesis", "label"],
        "health_pretrain": ["doc_id", "polarity", "sentences"],
        "health_sentiment": ["text", "label", "unseen"],
    }
    for task, splits in TASK_SPLITS.items():
        for split in splits:
            ds = load_task(task, split, data_dir=tmp_path, config=SMALL)
            assert isinstance(ds, datasets.Dataset)
            assert ds.column_names == columns[task]
            assert ds.to_list() == small[f"{task}_{split}"]
    assert load_task("sentiment", "train", tmp_path, SMALL).features["label"].names == SENTIMENT_LABELS
    assert load_task("nli", "test", tmp_path, SMALL).features["label"].names == NLI_LABELS
    # a tampered file and a different config are both noticed and regenerated
    (tmp_path / "topic_test.jsonl").write_text("{}\n")
    assert load_task("topic", "test", tmp_path, SMALL).to_list() == small["topic_test"]
    other = CorpusConfig(**{**SMALL.__dict__, "seed": 9})
    assert load_task("topic", "test", tmp_path, other).to_list() == generate_corpus(other)["topic_test"]


def test_load_task_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown task 'ner'"):
        load_task("ner", "train", tmp_path)
    with pytest.raises(ValueError, match="no split 'test_unseen'"):
        load_task("nli", "test_unseen", tmp_path)


# --- real-dataset loaders on tiny local files -------------------------------------------------

def test_load_sst2_tsv(tmp_path):
    (tmp_path / "train.tsv").write_text("sentence\tlabel\na charming , \"quoted\" film \t1\ndull \t0\n")
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nit 's slow \t0\n")
    ds = load_sst2(tmp_path)
    assert sorted(ds) == ["train", "validation"]
    assert ds["train"].to_list() == [{"text": 'a charming , "quoted" film', "label": 1},
                                     {"text": "dull", "label": 0}]
    assert ds["validation"]["label"] == [0]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train.tsv").write_text("sentence\tlabel\nno label here\n")
    with pytest.raises(ValueError, match="line 2"):
        load_sst2(tmp_path / "bad")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_sst2(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="train.tsv"):
        load_sst2(_empty_dir(tmp_path))


def _empty_dir(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir(exist_ok=True)
    return d


def test_load_ag_news_csv(tmp_path):
    (tmp_path / "train.csv").write_text(
        '"3","Wall St. Bears","Short-sellers, Wall Street\'s dwindling band."\n'
        '"2","Phelps wins","Michael ""the fish"" Phelps won."\n')
    (tmp_path / "test.csv").write_text('"4","New chip","A faster chip."\n')
    ds = load_ag_news(tmp_path)
    assert ds["train"]["label"] == [2, 1]  # 1-based in the CSV
    assert ds["train"]["text"][1] == 'Phelps wins Michael "the fish" Phelps won.'
    assert ds["test"].features["label"].names[3] == "Sci/Tech"
    (tmp_path / "train.csv").write_text('"5","x","y"\n')
    with pytest.raises(ValueError, match="class 1-4"):
        load_ag_news(tmp_path)


def test_load_imdb_folders(tmp_path):
    root = tmp_path / "aclImdb"
    for split, sub, text in [("train", "pos", "great"), ("train", "neg", "awful"),
                             ("test", "pos", "fine film"), ("train", "unsup", "hm")]:
        (root / split / sub).mkdir(parents=True, exist_ok=True)
        (root / split / sub / "0_7.txt").write_text(text + "<br />")
    ds = load_imdb(tmp_path)
    assert ds["train"].to_list() == [{"text": "awful<br />", "label": 0},
                                     {"text": "great<br />", "label": 1}]
    assert ds["test"]["label"] == [1] and ds["unsupervised"]["label"] == [-1]
    with pytest.raises(FileNotFoundError):
        load_imdb(_empty_dir(tmp_path))


def test_load_mnli_tsv_and_jsonl(tmp_path):
    header = "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\tlabel1\tgold_label\n"
    (tmp_path / "train.tsv").write_text(
        header + "0\t1\t1e\tfiction\tA man sleeps.\tA person rests.\tentailment\tentailment\n"
        "1\t2\t2n\tfiction\tA dog runs.\tThe dog is \"old\".\tneutral\t-\n"
        "2\t3\t3c\tfiction\tIt rains.\tIt is dry.\tcontradiction\tcontradiction\n")
    (tmp_path / "multinli_1.0_dev_matched.jsonl").write_text(
        json.dumps({"sentence1": "P.", "sentence2": "H.", "gold_label": "neutral"}) + "\n")
    ds = load_mnli(tmp_path)
    assert ds["train"].to_list() == [  # the pair without a gold label is dropped
        {"premise": "A man sleeps.", "hypothesis": "A person rests.", "label": 0},
        {"premise": "It rains.", "hypothesis": "It is dry.", "label": 2}]
    assert ds["validation_matched"]["label"] == [1]
    (tmp_path / "train.tsv").write_text(header + "0\t1\t1e\tfiction\tA.\tB.\tmaybe\tmaybe\n")
    with pytest.raises(ValueError, match="unknown gold_label 'maybe'"):
        load_mnli(tmp_path / "train.tsv")


def test_load_conll2003_text_format(tmp_path):
    text = ("-DOCSTART- -X- -X- O\n\n"
            "EU NNP B-NP I-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP I-MISC\ncall NN I-NP O\n\n"
            "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n\n")
    (tmp_path / "train.txt").write_text(text)
    (tmp_path / "valid.txt").write_text("London NNP B-NP B-LOC\n")
    ds = load_conll2003(tmp_path)
    assert ds["train"].to_list() == [  # IOB1 → IOB2: an entity's first tag is always B-
        {"tokens": ["EU", "rejects", "German", "call"], "tags": ["B-ORG", "O", "B-MISC", "O"]},
        {"tokens": ["Peter", "Blackburn"], "tags": ["B-PER", "I-PER"]}]
    assert ds["validation"]["tags"] == [["B-LOC"]]
    (tmp_path / "train.txt").write_text("EU NNP B-NP ORG\n")
    with pytest.raises(ValueError, match="line 1"):
        load_conll2003(tmp_path)


def test_load_wikitext2_text(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    for name in ("train", "valid", "test"):
        (tmp_path / f"wiki.{name}.tokens").write_text(f" \n = {name} = \n Some text , here . \n")
    ds = load_wikitext2(tmp_path)
    assert sorted(ds) == ["test", "train", "validation"]
    assert ds["validation"]["text"] == [" ", " = valid = ", " Some text , here . "]


CONLLU = """# newdoc id = doc-a
# sent_id = a-1
# text = I don't know.
1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_
2\tdo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
4\tknow\tknow\tVERB\tVB\t_\t0\troot\t_\tSpaceAfter=No
5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

# sent_id = a-2
1\tGo\tgo\tVERB\tVB\t_\t0\troot\t_\t_
1.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t0:root\t_
2\thome\thome\tADV\tRB\t_\t1\tadvmod\t_\t_
"""


def test_read_conllu_skips_multiword_tokens_and_empty_nodes(tmp_path):
    (tmp_path / "x.conllu").write_text(CONLLU)  # the last sentence has no blank line after it
    cols = read_conllu(tmp_path / "x.conllu")
    assert cols["tokens"] == [["I", "do", "n't", "know", "."], ["Go", "home"]]
    assert cols["tags"] == [["PRON", "AUX", "PART", "VERB", "PUNCT"], ["VERB", "ADV"]]
    assert cols["text"] == ["I don't know.", "Go home"]  # no "# text": the words joined
    assert cols["sent_id"] == ["a-1", "a-2"] and cols["doc_id"] == ["doc-a", "doc-a"]


def test_read_conllu_errors_name_the_line(tmp_path):
    (tmp_path / "bad.conllu").write_text("1\tI\tI\tPRON\n")
    with pytest.raises(ValueError, match="line 1: expected 10 tab-separated columns"):
        read_conllu(tmp_path / "bad.conllu")
    (tmp_path / "bad.conllu").write_text(CONLLU.replace("\tAUX\t", "\tAUXILIARY\t"))
    with pytest.raises(ValueError, match="line 6: unknown UPOS tag 'AUXILIARY'"):
        read_conllu(tmp_path / "bad.conllu")


def test_load_conllu_folder_of_ud_splits(tmp_path):
    (tmp_path / "xx_tb-ud-train.conllu").write_text(CONLLU)
    (tmp_path / "xx_tb-ud-test.conllu").write_text(CONLLU.split("\n\n")[1])
    ds = load_conllu(tmp_path)
    assert sorted(ds) == ["test", "train"]  # no dev file: no validation split
    assert ds["train"].column_names == ["sent_id", "doc_id", "text", "tokens", "tags"]
    assert ds["test"]["tokens"] == [["Go", "home"]] and ds["test"]["doc_id"] == [""]
    assert load_conllu(tmp_path / "xx_tb-ud-train.conllu")["train"].num_rows == 2
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_conllu(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="ud-train.conllu"):
        load_conllu(tmp_path / "empty")
    assert set(UPOS_TAGS) >= {t for tags in ds["train"]["tags"] for t in tags}


def test_committed_ud_slice_loads():
    ds = load_ud_english_ewt()
    assert ds.num_rows == {"train": 1000, "test": 2077}
    assert all(len(t) == len(w) for t, w in zip(ds["test"]["tags"], ds["test"]["tokens"]))


REALDATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "realdata"


@pytest.mark.skipif(not (REALDATA / "sst2" / "dev.tsv").exists(), reason="real SST-2 not present")
def test_load_sst2_real_glue_files():
    ds = load_sst2(REALDATA / "sst2")
    assert ds.num_rows == {"train": 67_349, "validation": 872}
    assert Counter(ds["validation"]["label"]) == {1: 444, 0: 428}
