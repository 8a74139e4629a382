"""mlstep.tasks.masked_lm: pairs, encoding, dynamic masking, the pretraining step and its evaluation."""

import math

import pytest
import torch
import torch.nn.functional as F

import mlstep
from mlstep.tasks.course import load_course_model
from mlstep.tasks.masked_lm import (
    MaskingCollator,
    PairDataset,
    evaluate_pretraining,
    fill_mask,
    fixed_batches,
    make_pairs,
    pretraining_step,
    unigram_baseline,
)

DOCS = [
    ["anna cooked the soup .", "the soup was good .", "she was happy ."],
    ["the match was long .", "bob scored a goal .", "the crowd was loud ."],
    ["the song was sad .", "the band played it twice ."],
]


@pytest.fixture(scope="module")
def tok():
    return mlstep.WordPieceTokenizer.train([s for d in DOCS for s in d] * 3, vocab_size=120, min_frequency=1)


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    cfg = mlstep.BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_layers=1, num_heads=2,
                            intermediate_size=32, max_position=32, pre_norm=True, dropout=0.0)
    return mlstep.BertForPreTraining(cfg).eval()


def test_make_pairs_objectives():
    mlm = make_pairs(DOCS, "mlm")
    assert len(mlm) == 5 and all(label == 0 for *_, label in mlm)
    assert all(any(a in d and d.index(b) == d.index(a) + 1 for d in DOCS) for a, b, _ in mlm)
    nsp = make_pairs(DOCS, "mlm+nsp", seed=0)
    sop = make_pairs(DOCS, "mlm+sop", seed=0)
    assert len(nsp) == len(sop) == 5
    assert {label for *_, label in nsp} <= {0, 1} and {label for *_, label in sop} <= {0, 1}
    with pytest.raises(ValueError, match="objective"):
        make_pairs(DOCS, "nsp")
    with pytest.raises(ValueError, match="two sentences"):
        make_pairs([["one ."]], "mlm")


def test_pair_dataset_word_ids_are_unique_across_segments(tok):
    ds = PairDataset(make_pairs(DOCS, "mlm"), tok, max_length=12)
    item = ds[0]
    enc = tok.encode(DOCS[0][0], pair=DOCS[0][1], max_length=12)
    assert item["input_ids"] == enc.ids and item["token_type_ids"] == enc.token_type_ids
    words = [w for w in item["word_ids"] if w >= 0]
    assert words == sorted(words) and len(set(words)) == len({(s, w) for s, w in zip(enc.sequence_ids, enc.word_ids) if w is not None})
    assert all(w == -1 for w, t in zip(item["word_ids"], enc.ids) if t in tok.special_ids)
    assert all(len(it["input_ids"]) <= 12 for it in ds)
    with pytest.raises(ValueError):
        PairDataset([], tok)


def test_collator_pads_masks_and_is_reproducible(tok):
    ds = PairDataset(make_pairs(DOCS, "mlm+nsp"), tok)
    items = [ds[i] for i in range(len(ds))]
    a = MaskingCollator(tok, generator=torch.Generator().manual_seed(3))(items)
    b = MaskingCollator(tok, generator=torch.Generator().manual_seed(3))(items)
    for k in a:
        assert torch.equal(a[k], b[k])
    T = max(len(it["input_ids"]) for it in items)
    assert a["input_ids"].shape == (len(items), T)
    lengths = torch.tensor([len(it["input_ids"]) for it in items])
    assert torch.equal(a["attention_mask"].sum(1), lengths)
    assert (a["mlm_labels"][a["attention_mask"] == 0] == -100).all()  # padding never a target
    assert (a["input_ids"][a["attention_mask"] == 0] == tok.pad_id).all()
    assert torch.equal(a["nsp_labels"], torch.tensor([it["label"] for it in items]))
    assert "nsp_labels" not in MaskingCollator(tok, sentence_labels=False)(items)
    with pytest.raises(ValueError, match="empty"):
        MaskingCollator(tok)([])


def test_pretraining_step_loss_matches_cross_entropy_on_full_logits(tok, model):
    ds = PairDataset(make_pairs(DOCS, "mlm+nsp"), tok)
    batch = MaskingCollator(tok, mlm_probability=0.4, generator=torch.Generator().manual_seed(0))(list(ds))
    loss, parts = pretraining_step(model, batch)
    full = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    mlm = F.cross_entropy(full.mlm_logits.reshape(-1, tok.vocab_size), batch["mlm_labels"].reshape(-1))
    nsp = F.cross_entropy(full.nsp_logits, batch["nsp_labels"])
    torch.testing.assert_close(loss, mlm + nsp, atol=1e-5, rtol=1e-5)
    assert parts["mlm_loss"] == pytest.approx(mlm.item(), abs=1e-5)
    assert parts["nsp_loss"] == pytest.approx(nsp.item(), abs=1e-5)


def test_evaluate_pretraining_matches_a_manual_count(tok, model):
    ds = PairDataset(make_pairs(DOCS, "mlm+nsp"), tok)
    batches = fixed_batches(ds, MaskingCollator(tok, mlm_probability=0.5), batch_size=2, seed=1)
    assert len(batches) == 3  # 5 pairs in batches of 2
    again = fixed_batches(ds, MaskingCollator(tok, mlm_probability=0.5), batch_size=2, seed=1)
    assert all(torch.equal(x["mlm_labels"], y["mlm_labels"]) for x, y in zip(batches, again))
    result = evaluate_pretraining(model, batches)
    correct = total = nll = nsp_ok = 0
    with torch.no_grad():
        for b in batches:
            out = model(b["input_ids"], b["token_type_ids"], b["attention_mask"])
            m = b["mlm_labels"] != -100
            correct += (out.mlm_logits[m].argmax(-1) == b["mlm_labels"][m]).sum().item()
            total += m.sum().item()
            nll += F.cross_entropy(out.mlm_logits[m], b["mlm_labels"][m], reduction="sum").item()
            nsp_ok += (out.nsp_logits.argmax(-1) == b["nsp_labels"]).sum().item()
    assert result["mlm_accuracy"] == pytest.approx(correct / total)
    assert result["mlm_loss"] == pytest.approx(nll / total, rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(nll / total), rel=1e-5)
    assert result["nsp_accuracy"] == pytest.approx(nsp_ok / 5)


def test_unigram_baseline_by_hand(tok):
    train = [{"input_ids": [2, 10, 10, 10, 11, 3]}]
    batches = [{"mlm_labels": torch.tensor([[-100, 10, 11, 12, -100]])}]
    r = unigram_baseline(train, batches, tok.special_ids)
    assert r["top_token_id"] == 10 and r["mlm_accuracy"] == pytest.approx(1 / 3)
    # add-one smoothed counts over ids 0..12: 10 -> 4, 11 -> 2, others 1; total 13 + 4 = 17
    expected = math.exp(-(math.log(4 / 17) + math.log(2 / 17) + math.log(1 / 17)) / 3)
    assert r["perplexity"] == pytest.approx(expected)


def test_fill_mask_returns_top_k_non_special_tokens(tok, model):
    top = fill_mask(model, tok, "the soup was [MASK] .", top_k=4)
    assert len(top) == 1 and len(top[0]) == 4
    probs = [p for _, p in top[0]]
    assert probs == sorted(probs, reverse=True)
    assert not {t for t, _ in top[0]} & {"[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"}
    with pytest.raises(ValueError, match="no \\[MASK\\]"):
        fill_mask(model, tok, "no mask here .")


def test_committed_course_model_loads_and_is_pretrained():
    model, tokenizer, meta = load_course_model(rebuild=False)
    assert meta["recipe"]["objective"] == "mlm+nsp"
    assert meta["final_eval"]["mlm_accuracy"] > 0.5 and meta["final_eval"]["nsp_accuracy"] > 0.7
    assert tokenizer.vocab_size == model.config.vocab_size
    with pytest.raises(FileNotFoundError, match="python -m mlstep.tasks bert"):
        load_course_model("bert", "/nonexistent/folder", rebuild=False)
