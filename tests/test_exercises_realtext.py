"""Chapter 10's checks: reference answers pass, typical wrong answers fail with a diagnosis."""

from __future__ import annotations

import json

import pytest

from mlstep.data import realtext_dir
from mlstep.exercises import (
    REPORT_ENV,
    check_prediction,
    check_read_conllu,
    check_unseen_word_accuracy,
    committed_gain,
)


def unseen_accuracy(predicted, gold, words, labeled):  # the chapter's reference answer
    seen = {w.lower() for sentence in labeled for w in sentence}
    hits = [p == g for ps, gs, ws in zip(predicted, gold, words) for p, g, w in zip(ps, gs, ws)
            if w.lower() not in seen]
    return sum(hits) / len(hits)


def conllu_variant(skip_ids=True, upos=3, finish=True, dash_anywhere=False, hash_anywhere=False):
    """The chapter's reference answer with its defaults; each argument turns on one typical mistake."""
    def fn(text):
        sentences, words, tags = [], [], []
        for line in text.splitlines():
            if not line.strip():
                if words:
                    sentences.append((words, tags))
                words, tags = [], []
                continue
            if line.startswith("#") or (hash_anywhere and "#" in line):
                continue
            cols = line.split("\t")
            if dash_anywhere and "-" in line:
                continue
            if skip_ids and ("-" in cols[0] or "." in cols[0]):
                continue
            words.append(cols[1])
            tags.append(cols[upos])
        if words and finish:
            sentences.append((words, tags))
        return sentences
    return fn


def unseen_variant(kind):
    def fn(predicted, gold, words, labeled):
        seen = {w.lower() for s in labeled for w in s} if kind != "case" else {w for s in labeled for w in s}
        def keep(w):
            return {"seen": w.lower() in seen, "all": True}.get(kind, (w if kind == "case" else w.lower()) not in seen)
        if kind == "sentences":
            accs = [sum(p == g for p, g, w in zip(ps, gs, ws) if keep(w)) / n
                    for ps, gs, ws in zip(predicted, gold, words) if (n := sum(keep(w) for w in ws))]
            return sum(accs) / len(accs)
        hits = [p == g for ps, gs, ws in zip(predicted, gold, words) for p, g, w in zip(ps, gs, ws) if keep(w)]
        value = sum(hits) / len(hits)
        return 100 * value if kind == "percent" else value
    return fn


def run(check, fn, capsys):
    result = check(fn)
    return result, capsys.readouterr().out.strip()


def test_reference_answers_pass(capsys):
    assert run(check_read_conllu, conllu_variant(), capsys) == (True, "✅ check_read_conllu: passed (3 cases)")
    assert run(check_unseen_word_accuracy, unseen_accuracy, capsys)[0] is True


@pytest.mark.parametrize("fn, words", [
    (conllu_variant(skip_ids=False), ["multiword token"]),
    (conllu_variant(upos=4), ["XPOS", "4th"]),
    (conllu_variant(finish=False), ["last sentence is missing"]),
    (conllu_variant(dash_anywhere=True), ["well-known", "ID column"]),
    (conllu_variant(hash_anywhere=True), ["#hashtags", "STARTS"]),
    (lambda text: "not a list", ["list of (words, tags) pairs"]),
])
def test_typical_conllu_mistakes_are_diagnosed(fn, words, capsys):
    result, line = run(check_read_conllu, fn, capsys)
    assert result is False and line.startswith("❌ check_read_conllu: ")
    for word in words:
        assert word in line, (word, line)


def test_empty_nodes_are_diagnosed(capsys):
    def keeps_empty_nodes(text):
        return [(w, t) for w, t in conllu_variant()(text.replace("1.1\tgone", "9\tgone"))]
    result, line = run(check_read_conllu, keeps_empty_nodes, capsys)
    assert result is False and "empty node" in line


@pytest.mark.parametrize("kind, words", [
    ("seen", ["SEEN words"]), ("all", ["all words"]), ("case", ["case-sensitive"]),
    ("sentences", ["per-sentence"]), ("percent", ["fraction"]),
])
def test_typical_unseen_accuracy_mistakes_are_diagnosed(kind, words, capsys):
    result, line = run(check_unseen_word_accuracy, unseen_variant(kind), capsys)
    assert result is False and line.startswith("❌ check_unseen_word_accuracy: ")
    for word in words:
        assert word in line, (word, line)


def test_check_prediction_compares_with_the_measurement(tmp_path, monkeypatch, capsys):
    report = tmp_path / "grade.jsonl"
    monkeypatch.setenv(REPORT_ENV, str(report))
    measured = {"seen": 2.5, "unseen": 11.0}
    assert check_prediction("gain", "unseen", measured) is True
    assert "your prediction holds (seen: +2.5, unseen: +11.0)" in capsys.readouterr().out
    assert check_prediction("gain", "seen", measured) is False
    assert "measured: unseen, not seen" in capsys.readouterr().out
    assert check_prediction("gain", None, measured) is False
    assert "answer with one of ['seen', 'unseen']" in capsys.readouterr().out
    assert [json.loads(x)["passed"] for x in report.read_text().splitlines()] == [True, False, False]


def test_committed_gain_is_the_seed_mean_of_the_benchmark_file():
    """The committed label-budget benchmark (data/realtext): pretraining gains far more on test
    words the 200 labeled sentences never show than on those they show."""
    results = json.loads((realtext_dir() / "label_budgets.json").read_text())["tasks"]["ud_pos"]["arms"]
    runs = {arm: results[arm]["200"]["runs"] for arm in ("pretrained", "scratch")}
    assert [r["seed"] for r in runs["pretrained"]] == [r["seed"] for r in runs["scratch"]]
    expected = 100 * sum(p["unseen_accuracy"] - s["unseen_accuracy"] for p, s in zip(runs["pretrained"], runs["scratch"]))
    gain = committed_gain(200)
    assert gain["unseen"] == pytest.approx(expected / len(runs["scratch"]))
    assert gain["unseen"] > gain["seen"] + 10
