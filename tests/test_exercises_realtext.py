"""Chapter 10's checks: reference answers pass, typical wrong answers fail with a diagnosis."""

from __future__ import annotations

import pytest

from mlstep.exercises import check_read_conllu, check_unseen_word_accuracy


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
