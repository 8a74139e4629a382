"""mlstep.metrics against scikit-learn, a port of CoNLL's conlleval, seqeval (when installed),
sacrebleu and hand-computed values."""

import math

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere in this process

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mlstep.metrics import (  # noqa: E402
    accuracy,
    bio_entities,
    bleu,
    bleu_tokenize,
    confusion_matrix,
    entity_f1,
    perplexity,
    precision_recall_f1,
)
from mlstep.tools.plot import plot_confusion_matrix, spread_curves  # noqa: E402

skm = pytest.importorskip("sklearn.metrics")

SEEDS = [0, 1, 2, 3, 4]


def random_labels(seed, n=200, num_classes=5, missing=None):
    """Random (preds, labels) int arrays; `missing` is a class id that never occurs in labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=n)
    if missing is not None:
        labels[labels == missing] = (missing + 1) % num_classes
    # Mostly-right predictions, so the scores are far from both 0 and 1.
    preds = np.where(rng.random(n) < 0.6, labels, rng.integers(0, num_classes, size=n))
    return preds, labels


# --- accuracy ------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_accuracy_matches_sklearn(seed):
    preds, labels = random_labels(seed)
    ref = skm.accuracy_score(labels, preds)
    assert accuracy(preds, labels) == pytest.approx(ref, abs=1e-12)
    assert accuracy(torch.from_numpy(preds), torch.from_numpy(labels)) == pytest.approx(ref, abs=1e-12)
    assert accuracy(preds.tolist(), labels.tolist()) == pytest.approx(ref, abs=1e-12)


def test_accuracy_hand_computed_and_logits():
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    logits = torch.tensor([[2.0, 0.1], [0.3, 0.9], [5.0, -1.0]])  # argmax -> 0, 1, 0
    assert accuracy(logits, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)
    # 2-D (batch, time) labels with (batch, time, classes) logits, as in token classification
    logits = torch.zeros(2, 3, 4)
    logits[..., 2] = 1.0  # always predicts class 2
    labels = torch.tensor([[2, 2, -100], [1, 2, -100]])
    assert accuracy(logits, labels) == pytest.approx(3 / 4)


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_ignore_index_drops_positions(seed):
    preds, labels = random_labels(seed)
    rng = np.random.default_rng(100 + seed)
    ignored = rng.random(labels.size) < 0.3
    masked = np.where(ignored, -100, labels)
    # Garbage predictions at ignored positions must not matter.
    preds_garbage = np.where(ignored, 999, preds)
    keep = ~ignored
    assert accuracy(preds_garbage, masked) == pytest.approx(
        skm.accuracy_score(labels[keep], preds[keep]))
    got = precision_recall_f1(preds_garbage, masked, average="macro")
    ref = skm.precision_recall_fscore_support(labels[keep], preds[keep], average="macro",
                                              zero_division=0)[:3]
    np.testing.assert_allclose(got, ref, atol=1e-12)
    np.testing.assert_array_equal(
        confusion_matrix(preds_garbage, masked, num_classes=5),
        skm.confusion_matrix(labels[keep], preds[keep], labels=range(5)))
    # A different ignore_index, and None (keep everything)
    assert accuracy([1, 1, 0], [1, 7, 0], ignore_index=7) == 1.0
    assert accuracy([1, 1, 0], [1, 7, 0], ignore_index=None) == pytest.approx(2 / 3)


# --- precision / recall / F1 -------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("average", ["macro", "micro", "weighted", None])
@pytest.mark.parametrize("missing", [None, 3])
def test_prf_matches_sklearn(seed, average, missing):
    preds, labels = random_labels(seed, missing=missing)
    got = precision_recall_f1(torch.from_numpy(preds), torch.from_numpy(labels), average=average)
    ref = skm.precision_recall_fscore_support(labels, preds, average=average, zero_division=0)[:3]
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g, r, atol=1e-12)


@pytest.mark.parametrize("seed", SEEDS[:3])
@pytest.mark.parametrize("average", ["macro", "micro", "weighted", None])
def test_prf_num_classes_includes_absent_classes(seed, average):
    # Classes 5 and 6 never occur: with num_classes=7 they count (as zeros) in macro averages.
    preds, labels = random_labels(seed, num_classes=5)
    got = precision_recall_f1(preds, labels, average=average, num_classes=7)
    ref = skm.precision_recall_fscore_support(labels, preds, average=average, labels=range(7),
                                              zero_division=0)[:3]
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g, r, atol=1e-12)
    if average is None:
        assert got[0].shape == (7,) and got[2][5] == 0.0


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=40),
       st.sampled_from(["macro", "micro", "weighted", None]))
def test_prf_matches_sklearn_hypothesis(pairs, average):
    preds, labels = map(np.array, zip(*pairs, strict=True))
    got = precision_recall_f1(preds, labels, average=average)
    ref = skm.precision_recall_fscore_support(labels, preds, average=average, zero_division=0)[:3]
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g, r, atol=1e-12)


def test_prf_hand_computed():
    labels = [0, 0, 1, 1, 2, 2]
    preds = [0, 1, 1, 1, 0, 2]
    # class 0: tp 1, predicted 2, true 2 | class 1: tp 2, pred 3, true 2 | class 2: tp 1, pred 1, true 2
    p, r, f = precision_recall_f1(preds, labels, average=None)
    np.testing.assert_allclose(p, [1 / 2, 2 / 3, 1.0])
    np.testing.assert_allclose(r, [1 / 2, 1.0, 1 / 2])
    np.testing.assert_allclose(f, [1 / 2, 4 / 5, 2 / 3])
    p, r, f = precision_recall_f1(preds, labels, average="macro")
    assert (p, r, f) == pytest.approx(((1 / 2 + 2 / 3 + 1) / 3, 2 / 3, (1 / 2 + 4 / 5 + 2 / 3) / 3))
    # macro F1 is the mean of per-class F1, not the harmonic mean of macro P and R
    assert f != pytest.approx(2 * p * r / (p + r))
    assert precision_recall_f1(preds, labels, average="micro") == pytest.approx((4 / 6,) * 3)


def test_prf_zero_division_gives_zero():
    # class 1 is never predicted: precision 0/0 -> 0, recall 0/1 = 0, F1 0
    p, r, f = precision_recall_f1([0, 0, 0], [0, 0, 1], average=None)
    np.testing.assert_allclose(p, [2 / 3, 0.0])
    np.testing.assert_allclose(r, [1.0, 0.0])
    np.testing.assert_allclose(f, [0.8, 0.0])
    assert not np.isnan(np.concatenate([p, r, f])).any()


# --- confusion matrix ----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_confusion_matrix_matches_sklearn(seed):
    preds, labels = random_labels(seed, num_classes=6)
    cm = confusion_matrix(torch.from_numpy(preds), torch.from_numpy(labels))
    np.testing.assert_array_equal(cm, skm.confusion_matrix(labels, preds))
    assert cm.sum() == labels.size
    cm8 = confusion_matrix(preds, labels, num_classes=8)
    np.testing.assert_array_equal(cm8, skm.confusion_matrix(labels, preds, labels=range(8)))


def test_confusion_matrix_hand_computed():
    cm = confusion_matrix([0, 1, 1, 1, 0, 2], [0, 0, 1, 1, 2, 2])  # (preds, labels)
    # rows = true class, columns = predicted class
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    # the diagonal over the row sums is per-class recall
    np.testing.assert_allclose(np.diag(cm) / cm.sum(1),
                               precision_recall_f1([0, 1, 1, 1, 0, 2], [0, 0, 1, 1, 2, 2],
                                                   average=None)[1])


# --- errors --------------------------------------------------------------------------------------

def test_errors():
    with pytest.raises(ValueError, match="length mismatch"):
        accuracy([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="length mismatch"):
        precision_recall_f1(torch.zeros(3, 2, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])
    with pytest.raises(ValueError, match="ignore_index"):
        accuracy([1, 2], [-100, -100])
    with pytest.raises(ValueError, match="unknown average"):
        precision_recall_f1([0, 1], [0, 1], average="samples")
    with pytest.raises(ValueError, match="out of range"):
        precision_recall_f1([0, 3], [0, 1], num_classes=3)
    with pytest.raises(ValueError, match="out of range"):
        confusion_matrix([0, 1], [0, 5], num_classes=3)
    with pytest.raises(ValueError, match=">= 0"):
        confusion_matrix([0, 1], [0, -1])
    with pytest.raises(TypeError, match="integer class ids"):
        accuracy([0.5, 1.0], [0, 1])
    with pytest.raises(ValueError, match="rectangular"):
        accuracy([[0, 1], [1]], [[0, 1], [1]])


# --- entity-level F1 -----------------------------------------------------------------------------

@pytest.mark.parametrize("tags, expected", [
    (["B-PER", "I-PER", "O", "B-LOC"], {("PER", 0, 2), ("LOC", 3, 4)}),
    (["O", "I-PER", "I-PER", "O"], {("PER", 1, 3)}),            # I- after O starts an entity
    (["I-LOC", "O"], {("LOC", 0, 1)}),                            # I- at the sentence start
    (["B-PER", "B-PER"], {("PER", 0, 1), ("PER", 1, 2)}),         # adjacent, same type: two
    (["B-PER", "I-LOC", "I-LOC"], {("PER", 0, 1), ("LOC", 1, 3)}),  # type change splits
    (["I-PER", "I-LOC", "B-LOC", "I-LOC"], {("PER", 0, 1), ("LOC", 1, 2), ("LOC", 2, 4)}),
    (["O", "O"], set()),
    ([], set()),
    (["B-MISC", "I-MISC", "I-MISC"], {("MISC", 0, 3)}),           # entity running to the end
])
def test_bio_entities_hand_cases(tags, expected):
    assert bio_entities(tags) == expected


def test_entity_f1_partial_match_is_wrong():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "O", "O", "B-LOC"]]  # PER too short: one FP and one FN
    assert entity_f1(pred, gold) == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5})
    # wrong type with the right span is wrong too
    assert entity_f1([["B-ORG", "I-ORG"]], [["B-PER", "I-PER"]])["f1"] == 0.0
    # B-PER B-PER predicted for gold B-PER I-PER: neither predicted entity is right
    assert entity_f1([["B-PER", "B-PER"]], [["B-PER", "I-PER"]])["precision"] == 0.0


def test_entity_f1_micro_over_sentences_and_per_type():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "O", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "O", "B-PER", "I-PER"]]
    # sentence 1: 2 pred, 2 gold, 2 correct; sentence 2: 2 pred, 1 gold, 0 correct
    res = entity_f1(pred, gold, per_type=True)
    p, r = 2 / 4, 2 / 3
    assert res["precision"] == pytest.approx(p)
    assert res["recall"] == pytest.approx(r)
    assert res["f1"] == pytest.approx(2 * p * r / (p + r))
    per = res["per_type"]
    assert sorted(per) == ["LOC", "ORG", "PER"]
    assert per["PER"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert per["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert per["LOC"]["precision"] == 0.5 and per["LOC"]["recall"] == 1.0
    # micro average: not the mean of the per-type scores
    assert res["f1"] != pytest.approx(np.mean([v["f1"] for v in per.values()]))


def test_entity_f1_empty_predictions_and_perfect():
    gold = [["B-PER", "I-PER", "O"], ["B-LOC", "O", "O"]]
    none = [["O"] * 3, ["O"] * 3]
    assert entity_f1(none, gold) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert entity_f1(none, none) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert entity_f1(gold, gold)["f1"] == 1.0
    # a flat list of tags is one sentence
    assert entity_f1(["B-PER", "O"], ["B-PER", "O"])["f1"] == 1.0


def test_entity_f1_with_ids():
    id2label = ["O", "B-PER", "I-PER"]
    gold = torch.tensor([[1, 2, -100, 0], [0, 1, -100, -100]])  # -100 = sub-word / padding
    pred = torch.tensor([[1, 0, 2, 0], [0, 1, 1, 0]])           # ids at -100 positions are dropped
    # sentence 1 after dropping: gold B I O vs pred B O O (wrong); sentence 2: O B vs O B (right)
    res = entity_f1(pred, gold, id2label=id2label)
    assert res == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5})


def test_entity_f1_errors():
    with pytest.raises(ValueError, match="length mismatch"):
        entity_f1([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="sentence 0"):
        entity_f1([["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match="empty"):
        entity_f1([], [])
    with pytest.raises(ValueError, match="bad BIO tag"):
        entity_f1([["X-PER"]], [["O"]])
    with pytest.raises(ValueError, match="tag id 5 is not in id2label"):
        entity_f1([[1, 5]], [[1, 0]], id2label=["O", "B-X"])
    with pytest.raises(ValueError, match="tag id -1 is not in id2label"):
        entity_f1([[1, -1]], [[1, 0]], id2label=["O", "B-X"])
    with pytest.raises(TypeError, match="id2label"):
        entity_f1(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long))


def conlleval_chunks(tags):
    """Reference: a direct port of conlleval.pl's startOfChunk / endOfChunk (end inclusive)."""
    def split(t):
        return (t, "") if t == "O" else tuple(t.split("-", 1))

    def end_of_chunk(prev_tag, tag, prev_type, type_):
        return (prev_tag == "B" and tag in "BO") or (prev_tag == "I" and tag in "BO") or (
            prev_tag != "O" and prev_type != type_)

    def start_of_chunk(prev_tag, tag, prev_type, type_):
        return tag == "B" or (prev_tag == "O" and tag == "I") or (
            tag != "O" and prev_type != type_)

    chunks, start = [], None
    prev_tag, prev_type = "O", ""
    for i, t in enumerate(list(tags) + ["O"]):  # a trailing O closes the last chunk
        tag, type_ = split(t)
        if end_of_chunk(prev_tag, tag, prev_type, type_) and start is not None:
            chunks.append((prev_type, start, i - 1))
            start = None
        if start_of_chunk(prev_tag, tag, prev_type, type_):
            start = i
        prev_tag, prev_type = tag, type_
    return chunks


TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]


def random_tag_seqs(seed, n=60, max_len=12):
    rng = np.random.default_rng(seed)
    return [[TAGS[i] for i in rng.integers(0, len(TAGS), size=rng.integers(1, max_len))]
            for _ in range(n)]


@pytest.mark.parametrize("seed", SEEDS)
def test_bio_entities_match_conlleval_port(seed):
    for tags in random_tag_seqs(seed):
        ref = {(t, s, e + 1) for t, s, e in conlleval_chunks(tags)}
        assert bio_entities(tags) == ref, tags


@pytest.mark.parametrize("seed", SEEDS)
def test_entity_f1_matches_seqeval(seed):
    seqeval_metrics = pytest.importorskip("seqeval.metrics")  # reference only if installed
    gold = random_tag_seqs(seed)
    rng = np.random.default_rng(1000 + seed)
    # predictions: gold with ~20 % of the tags replaced, so most entities survive
    pred = [[t if rng.random() > 0.2 else TAGS[rng.integers(len(TAGS))] for t in s] for s in gold]
    res = entity_f1(pred, gold)
    assert res["precision"] == pytest.approx(seqeval_metrics.precision_score(gold, pred))
    assert res["recall"] == pytest.approx(seqeval_metrics.recall_score(gold, pred))
    assert res["f1"] == pytest.approx(seqeval_metrics.f1_score(gold, pred))


# --- perplexity ----------------------------------------------------------------------------------

@pytest.mark.parametrize("vocab", [2, 10, 1000, 30522])
def test_perplexity_of_uniform_is_vocab_size(vocab):
    g = torch.Generator().manual_seed(vocab)
    logits = torch.zeros(64, vocab, dtype=torch.float64)  # uniform over the vocabulary
    targets = torch.randint(0, vocab, (64,), generator=g)
    nll = F.cross_entropy(logits, targets)  # = log(vocab)
    assert perplexity(nll) == pytest.approx(vocab, rel=1e-9)
    assert perplexity(float(nll)) == pytest.approx(vocab, rel=1e-9)


def test_perplexity_edges_and_errors():
    assert perplexity(0.0) == 1.0
    assert perplexity(2.0) == pytest.approx(math.exp(2.0))
    assert perplexity(1e4) == math.inf  # overflow guard instead of OverflowError
    assert perplexity(torch.tensor(800.0)) == math.inf
    with pytest.raises(ValueError, match=">= 0"):
        perplexity(-0.5)
    with pytest.raises(ValueError, match="NaN"):
        perplexity(float("nan"))
    with pytest.raises(ValueError, match="shape"):
        perplexity(torch.ones(3))


# --- plot ----------------------------------------------------------------------------------------

def test_plot_confusion_matrix():
    cm = confusion_matrix([0, 1, 1, 1, 0, 2], [0, 0, 1, 1, 2, 2])
    ax = plot_confusion_matrix(cm, ["neg", "neu", "pos"], title="toy")
    assert isinstance(ax, plt.Axes)
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(str(v) for v in cm.ravel())  # every count annotated
    assert [t.get_text() for t in ax.get_xticklabels()] == ["neg", "neu", "pos"]
    assert ax.get_title() == "toy"
    plt.close(ax.figure)

    fig, ax2 = plt.subplots()
    out = plot_confusion_matrix(torch.tensor([[3, 1], [0, 0]]), ["a", "b"], ax=ax2, normalize=True)
    assert out is ax2
    assert [t.get_text() for t in ax2.texts] == ["0.75", "0.25", "0.00", "0.00"]  # empty row stays 0
    plt.close(fig)
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix(np.zeros((2, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="labels"):
        plot_confusion_matrix(np.zeros((2, 2)), ["a", "b", "c"])


def test_error_bars():
    from mlstep.tools.plot import error_bars

    groups = {"test": {"a": (0.9, 0.02), "b": (0.7, 0.1)}, "unseen": {"a": (0.8, 0.05)}}
    ax = error_bars(groups, "accuracy", title="t", live={"test": {"a": 0.91}})
    assert [t.get_text() for t in ax.get_xticklabels()] == ["test", "unseen"]
    bars = [p for p in ax.patches]
    assert [round(b.get_height(), 2) for b in bars[:2]] == [0.9, 0.8]  # arm "a" in both groups
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["a", "b", "this run"]
    plt.close(ax.figure)


# --- BLEU against sacrebleu -------------------------------------------------------------------------

def _sacrebleu(hypotheses, references):
    """sacrebleu.corpus_bleu with its defaults; it takes one stream per reference *set* (None pads)."""
    sacrebleu = pytest.importorskip("sacrebleu")
    k = max(len(refs) for refs in references)
    streams = [[refs[j] if j < len(refs) else None for refs in references] for j in range(k)]
    return sacrebleu.corpus_bleu(hypotheses, streams).score


BLEU_CORPORA = {
    "identical": (["the cat sat on the mat ."], [["the cat sat on the mat ."]]),
    "typical": (["the cat is on the mat", "there is a dog in the garden today"],
                [["the cat sat on the mat", "a cat is on the mat"], ["a dog is in the garden"]]),
    "empty hypothesis": (["", "the cat sat on the mat"], [["the cat"], ["the cat sat on a mat"]]),
    "all empty": ([""], [["the cat sat"]]),
    "short sentences": (["a b", "c"], [["a b c"], ["c d"]]),  # no 3- or 4-grams at all
    "no 4-gram match": (["a b c x e f"], [["a b c d e f"]]),  # smoothing of the missing order
    "no match": (["x y z w"], [["a b c d"]]),
    "longer than references": (["the the the the the the the the"], [["the cat"]]),
    "multiple references, varying count": (
        ["it is a guide to action which ensures that the military always obeys the commands of the party",
         "he read the book because he was interested in world history"],
        [["it is a guide to action that ensures that the military will forever heed party commands",
          "it is the guiding principle which guarantees the military forces always being under the command of the party",
          "it is the practical guide for the army always to heed the directions of the party"],
         ["he was interested in world history because he read the book"]]),
    "punctuation and numbers (13a)": (["Prices rose 3.5% in 2024-25, didn't they? (Yes!)"],
                                      [["Prices rose 3.5 % in 2024 - 25 , didn't they ? ( Yes ! )"]]),
    "html entities and case": (["Tom &amp; Jerry &quot;Run&quot;", "The END"], [["Tom & Jerry \"run\""], ["the end"]]),
}


@pytest.mark.parametrize("name", list(BLEU_CORPORA))
def test_bleu_equals_sacrebleu(name):
    hypotheses, references = BLEU_CORPORA[name]
    assert bleu(hypotheses, references) == pytest.approx(_sacrebleu(hypotheses, references), abs=1e-9)


def test_bleu_known_values():
    assert bleu(["the cat sat on the mat ."], [["the cat sat on the mat ."]]) == pytest.approx(100.0)
    assert bleu(["x y z w"], [["a b c d"]]) == 0.0
    assert bleu([""], [["a b c d"]]) == 0.0
    # p = (5/6, 3/5, 1/4, no 4-gram -> 1/(2·3)), BP = 1
    expected = 100 * math.exp((math.log(5 / 6) + math.log(3 / 5) + math.log(1 / 4) + math.log(1 / 6)) / 4)
    assert bleu(["a b c x e f"], [["a b c d e f"]]) == pytest.approx(expected)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.lists(st.sampled_from("a b c d , . the cat 3.5 don't -".split()), max_size=9),
                          st.lists(st.lists(st.sampled_from("a b c d , . the cat 3.5 don't -".split()),
                                            max_size=9), min_size=1, max_size=3)),
                min_size=1, max_size=5))
def test_bleu_equals_sacrebleu_on_random_corpora(segments):
    hypotheses = [" ".join(h) for h, _ in segments]
    references = [[" ".join(r) for r in refs] for _, refs in segments]
    assert bleu(hypotheses, references) == pytest.approx(_sacrebleu(hypotheses, references), abs=1e-9)


def test_bleu_tokenizer_and_errors():
    assert bleu_tokenize("Hello, world! It costs 3.50.") == ["Hello", ",", "world", "!", "It", "costs", "3.50", "."]
    with pytest.raises(ValueError, match="one list of references per hypothesis"):
        bleu(["a"], [["a"], ["b"]])
    with pytest.raises(ValueError, match="non-empty"):
        bleu(["a"], ["a"])
    with pytest.raises(TypeError, match="not a str"):
        bleu("a b", [["a b"]])


def test_spread_curves_draws_the_means_the_spreads_and_the_live_run():
    curves = {"a": ([1, 2, 3], [0.5, 0.6, 0.7], [0.1, 0.0, 0.2]), "b": ([1, 3], [0.2, 0.4], [0.05, 0.05])}
    ax = spread_curves(curves, "x", "accuracy", title="toy", live={"b": ([3], [0.45])})
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata())]
    a, b, b_live = (ln for ln in lines if ln.get_marker() in ("o", "x"))
    assert a.get_xdata().tolist() == [1, 2, 3] and a.get_ydata().tolist() == [0.5, 0.6, 0.7]
    assert b_live.get_xdata().tolist() == [3] and b_live.get_color() == b.get_color() != a.get_color()
    tops = sorted(seg[1][1] for coll in ax.collections for seg in coll.get_segments())  # the error bars' upper ends
    assert np.allclose(tops, sorted([0.6, 0.6, 0.9, 0.25, 0.45]))
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["a", "b", "b, this run"]
    assert ax.get_title() == "toy" and ax.get_ylabel() == "accuracy"
    plt.close("all")

