"""mlstep.tasks.realtext: the real-text corpus, the recipe's options, the committed model, fine-tuning arms."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mlstep.bert import BertConfig
from mlstep.data import load_conllu, load_ud_english_ewt
from mlstep.tasks.course import build_course_model, load_course_model
from mlstep.tasks.labeled import encode_tagging
from mlstep.tasks.masked_lm import PretrainRecipe, pretrain_on_corpus
from mlstep.tasks.realtext import (
    REALTEXT_RECIPE,
    UD_SLICE_SENTENCES,
    FinetuneSetting,
    fine_tune,
    grouped,
    pretraining_corpus,
    sample_order,
    treebank_documents,
    wikitext_documents,
)
from mlstep.tokenizers.wordpiece import WordPieceTokenizer
from mlstep.tools.runtime import IGNORE_INDEX

REALDATA = Path(os.environ.get("MLSTEP_REALDATA") or Path(__file__).resolve().parents[2] / "shared" / "realdata")
TINY = replace(REALTEXT_RECIPE, vocab_size=120, hidden_size=16, num_heads=2, intermediate_size=32, steps=4,
               batch_size=4, eval_every=2, max_length=24, max_position=40)


def conllu_sentence(doc: str | None, words: list[str], tag: str = "NOUN") -> str:
    head = f"# newdoc id = {doc}\n" if doc else ""
    return head + f"# text = {' '.join(words)}\n" + "".join(
        f"{i}\t{w}\t{w}\t{tag}\t_\t_\t0\troot\t_\t_\n" for i, w in enumerate(words, start=1)) + "\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A folder shaped like the real data: wikitext2/, ud_english_ewt/, sst2/ (tiny)."""
    root = tmp_path_factory.mktemp("realdata")
    (root / "wikitext2").mkdir()
    para = " The river runs north . It meets the sea near a <unk> town . Boats sail there . \n"
    (root / "wikitext2" / "train.txt").write_text(" = River = \n" + para * 6)
    (root / "wikitext2" / "valid.txt").write_text(para * 2)
    (root / "ud_english_ewt").mkdir()
    (root / "ud_english_ewt" / "en_ewt-ud-train.conllu").write_text(
        conllu_sentence("d1", ["I", "like", "boats"]) + conllu_sentence(None, ["Boats", "float"])
        + conllu_sentence("d2", ["Alone"]))
    (root / "sst2").mkdir()
    rows = ["a charming film\t1", "dull and slow\t0", "the sea of boats\t1"] * 4
    (root / "sst2" / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    (root / "sst2" / "dev.tsv").write_text("sentence\tlabel\ngood\t1\n")
    return root


def test_sample_order_is_a_seeded_permutation():
    order = sample_order(50, seed=3)
    assert sorted(order) == list(range(50)) and order == sample_order(50, seed=3)
    assert order != sample_order(50, seed=4)


def test_documents_from_each_source(data):
    lines = [" = Heading = ", " The cat sat . It was 1 @.@ 5 m @-@ long . A <unk> came . ", " One only . "]
    assert wikitext_documents(lines) == [["The cat sat .", "It was 1.5 m-long .", "A [UNK] came ."]]
    assert wikitext_documents(lines * 3, limit=2) == wikitext_documents(lines) * 2
    ud = load_conllu(data / "ud_english_ewt")["train"]
    assert treebank_documents(ud) == [["I like boats", "Boats float"]]  # d2 has one sentence: dropped
    assert grouped(["a", "b", "c", "d", "e"], size=2) == [["a", "b"], ["c", "d"]]  # "e" alone: dropped


def test_pretraining_corpus_mixes_the_three_sources(data):
    documents, held_out, words = pretraining_corpus(data)
    assert words == {"wikitext2": 6 * 18, "ud_english_ewt": 5, "sst2": 4 * 10}  # sentences end in " ."
    assert ["I like boats", "Boats float"] in documents
    assert ["a charming film", "dull and slow", "the sea of boats", "a charming film", "dull and slow",
            "the sea of boats", "a charming film", "dull and slow"] in documents
    assert held_out == wikitext_documents((data / "wikitext2" / "valid.txt").read_text().splitlines())


def test_recipe_options_whole_word_and_longer_position_table():
    docs = [["the riverboats sail north .", "unbelievable boats float ."]] * 20
    tok = WordPieceTokenizer.train([s for d in docs for s in d], vocab_size=40, min_frequency=1)
    assert len(tok.tokenize("riverboats")) > 1  # words split into several pieces
    recipe = replace(TINY, whole_word=True, steps=2, eval_every=None, seed=1)
    model, _, _, batches = pretrain_on_corpus(recipe, tok, progress=False, documents=docs, held_out=docs)
    assert model.config.max_position == 40 and recipe.max_length == 24
    for batch in batches:  # every piece of a word is a target, or none is
        original = torch.where(batch["mlm_labels"] != IGNORE_INDEX, batch["mlm_labels"], batch["input_ids"])
        word_start = [[not tok.id_to_token(int(i)).startswith("##") for i in row] for row in original]
        for labels, starts in zip(batch["mlm_labels"].tolist(), word_start):
            for i in range(1, len(labels)):
                if not starts[i]:  # a continuation piece follows the previous piece's fate
                    assert (labels[i] == IGNORE_INDEX) == (labels[i - 1] == IGNORE_INDEX)
    assert PretrainRecipe().whole_word is False and PretrainRecipe().max_position is None


def test_build_and_load_realtext_model(tmp_path, data):
    meta = build_course_model("realtext", tmp_path / "model", TINY, data=data)
    assert meta["words"]["sst2"] == 40 and meta["recipe"]["steps"] == 4
    assert meta["cpu_minutes"] > 0 and meta["tokens_seen"] > 4 * 4 * 5  # 4 steps of 4 pairs, > 5 pieces each
    assert [e["step"] for e in meta["evals"]] == [2, 4] and 0 <= meta["evals"][-1]["mlm_accuracy"] <= 1
    model, tok, loaded = load_course_model("realtext", tmp_path / "model")
    assert loaded["pairs"] == meta["pairs"] and model.config.max_position == 40
    assert not model.training and tok.token_to_id("boats") is not None


def test_fine_tune_arms_and_probe():
    ud = load_ud_english_ewt()["train"].select(range(8))
    tok = WordPieceTokenizer.train([t for s in ud["tokens"] for t in s], vocab_size=300, min_frequency=1)
    tags = sorted({t for s in ud["tags"] for t in s})
    data = encode_tagging(ud, tok, tags, max_length=64)
    config = BertConfig(tok.vocab_size, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                        max_position=64, pre_norm=True)
    torch.manual_seed(0)
    from mlstep.bert import BertForPreTraining

    pretrained = BertForPreTraining(config)
    before = {k: v.clone() for k, v in pretrained.state_dict().items()}
    setting = FinetuneSetting(lr=1e-2, steps=3, batch_size=4)
    full = fine_tune(pretrained, config, data, len(tags), setting, seed=0)
    probe = fine_tune(pretrained, config, data, len(tags), setting, seed=0, probe=True)
    scratch = fine_tune(None, config, data, len(tags), setting, seed=0)
    assert all(torch.equal(v, pretrained.state_dict()[k]) for k, v in before.items())  # copies are trained
    emb = pretrained.bert.embeddings.word_embeddings.weight
    assert torch.equal(probe.bert.embeddings.word_embeddings.weight, emb)  # frozen
    assert not torch.equal(full.bert.embeddings.word_embeddings.weight, emb)
    assert not torch.equal(scratch.bert.embeddings.word_embeddings.weight[:5], emb[:5])
    again = fine_tune(None, config, data, len(tags), setting, seed=0)
    assert torch.equal(again.classifier.weight, scratch.classifier.weight)  # seeded
    with pytest.raises(ValueError, match="task must be"):
        fine_tune(None, config, data, len(tags), setting, task="ner")


def test_committed_realtext_model_states_its_cost():
    model, tok, meta = load_course_model("realtext")
    assert tok.vocab_size == meta["recipe"]["vocab_size"] == model.config.vocab_size
    assert model.config.max_position == REALTEXT_RECIPE.max_position
    assert meta["recipe"]["steps"] == REALTEXT_RECIPE.steps and meta["tokens_seen"] > 10_000_000
    assert meta["evals"][-1]["mlm_accuracy"] > 0.2 and meta["cpu_minutes"] < 40


@pytest.mark.skipif(not (REALDATA / "ud_english_ewt").is_dir(), reason="the full UD English EWT is not present")
def test_committed_ud_slice_is_the_seed_0_sample_of_the_full_treebank():
    full = load_conllu(REALDATA / "ud_english_ewt")
    picked = full["train"].select(sample_order(len(full["train"]), 0)[:UD_SLICE_SENTENCES])
    committed = load_ud_english_ewt()
    assert committed["train"]["tokens"] == picked["tokens"] and committed["train"]["tags"] == picked["tags"]
    assert committed["test"]["tokens"] == full["test"]["tokens"]


def test_hub_available_asks_once_and_respects_offline_mode(monkeypatch):
    import socket

    from mlstep.tools.runtime import hub_available

    class Connection:
        def close(self):
            pass

    calls = []
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: calls.append(a) or Connection())
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert hub_available() is True and calls == [(("huggingface.co", 443),)]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_available() is False and len(calls) == 1  # offline mode: not even asked

    def unreachable(*a, **k):
        raise OSError("Name or service not known")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(socket, "create_connection", unreachable)
    assert hub_available() is False
