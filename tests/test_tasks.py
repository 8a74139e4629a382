"""mlstep.tasks.labeled: encoding labeled data, fine-tuning through mlstep.train, and scoring."""

import pytest
import torch
from sklearn.metrics import accuracy_score
from torch import nn

import mlstep
from mlstep.finetune import (
    BertForSequenceClassification,
    BertForTokenClassification,
)
from mlstep.metrics import entity_f1
from mlstep.tasks.labeled import (
    TensorDataset,
    concat_datasets,
    encode_classification,
    encode_tagging,
    evaluate_classifier,
    evaluate_tagger,
    finetune_config,
    fit,
    predict,
    trim_padding,
    word_accuracy,
)
from mlstep.transformer import ClassifierOutput

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
SENTENCES = [
    {"tokens": ["anna", "visited", "lima", "."], "tags": ["O", "O", "B-LOC", "O"]},
    {"tokens": ["bob", "smith", "met", "anna", "."], "tags": ["B-PER", "I-PER", "O", "B-PER", "O"]},
]


@pytest.fixture(scope="module")
def tok():
    texts = ["anna visited lima .", "bob smith met anna .", "the soup was good .", "the soup was bad ."]
    return mlstep.WordPieceTokenizer.train(texts * 3, vocab_size=60, min_frequency=1)


def test_encode_classification_single_and_pairs(tok):
    rows = [{"text": "the soup was good .", "label": 1}, {"text": "the soup was bad .", "label": 0}]
    data = encode_classification(rows, tok)
    assert len(data) == 2 and data.tensors["labels"].tolist() == [1, 0]
    assert data[0]["input_ids"].tolist()[: len(tok.encode(rows[0]["text"]).ids)] == tok.encode(rows[0]["text"]).ids
    pairs = encode_classification([{"p": "anna visited lima .", "h": "anna met bob .", "label": 2}], tok,
                                  text_key="p", pair_key="h")
    enc = tok.encode("anna visited lima .", pair="anna met bob .")
    assert pairs[0]["token_type_ids"].tolist() == enc.token_type_ids
    assert data.subset(1).tensors["labels"].tolist() == [1]
    with pytest.raises(ValueError, match="empty"):
        TensorDataset({"x": torch.zeros(0)})


def test_encode_tagging_labels_first_pieces_only(tok):
    data = encode_tagging(SENTENCES, tok, TAGS)
    for i, sent in enumerate(SENTENCES):
        labels = data.tensors["labels"][i].tolist()
        word_ids = data.extra["word_ids"][i]
        seen = set()
        for lab, w in zip(labels, word_ids):
            if w is None or w in seen:
                assert lab == -100
            else:
                seen.add(w)
                assert lab == TAGS.index(sent["tags"][w])
    with pytest.raises(ValueError, match="unknown tag"):
        encode_tagging([{"tokens": ["a"], "tags": ["B-ORG"]}], tok, TAGS)


class Oracle(nn.Module):
    """Returns one-hot logits of given per-row labels: a model that is right (or wrong) on purpose."""

    def __init__(self, labels, num_classes):
        super().__init__()
        self.labels, self.num_classes, self.row = labels, num_classes, 0
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        n = input_ids.shape[0]
        labels = self.labels[self.row:self.row + n].clamp(min=0)
        self.row += n
        return ClassifierOutput(None, nn.functional.one_hot(labels, self.num_classes).float())


def test_evaluate_classifier_equals_sklearn(tok):
    rows = [{"text": "the soup was good .", "label": i % 2} for i in range(10)]
    data = encode_classification(rows, tok)
    preds = torch.tensor([0, 1, 1, 1, 0, 0, 0, 1, 0, 1])
    acc = evaluate_classifier(Oracle(preds, 2), data)
    assert acc == pytest.approx(accuracy_score(data.tensors["labels"].numpy(), preds.numpy()))


def test_evaluate_tagger_perfect_and_wrong_predictions(tok):
    data = encode_tagging(SENTENCES, tok, TAGS)
    gold = data.tensors["labels"]
    assert evaluate_tagger(Oracle(gold, len(TAGS)), data, TAGS)["f1"] == pytest.approx(1.0)
    wrong = torch.where(gold == TAGS.index("B-LOC"), torch.tensor(TAGS.index("B-PER")), gold)
    result = evaluate_tagger(Oracle(wrong, len(TAGS)), data, TAGS)
    expected = entity_f1([["O", "O", "B-PER", "O"], ["B-PER", "I-PER", "O", "B-PER", "O"]],
                         [s["tags"] for s in SENTENCES])
    assert result["f1"] == pytest.approx(expected["f1"]) and result["f1"] < 1.0


def test_finetune_learns_a_separable_task_through_the_train_loop(tok):
    rows = [{"text": t, "label": lab} for t, lab in [("the soup was good .", 1), ("the soup was bad .", 0)] * 16]
    data = encode_classification(rows, tok)
    torch.manual_seed(0)
    cfg = mlstep.BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_layers=1, num_heads=2,
                            intermediate_size=32, max_position=32, dropout=0.0)
    model = BertForSequenceClassification(cfg, 2)
    history = fit(model, data, finetune_config(40, 3e-3), batch_size=8)
    assert len(history.train) > 0 and history.train[-1]["loss"] < history.train[0]["loss"]
    assert evaluate_classifier(model, data) == 1.0
    assert predict(model, data).shape == (32, 2)


def test_concat_datasets_pads_each_column_with_its_own_filler(tok):
    short = encode_classification([{"text": "the soup was good .", "label": 1}], tok)
    long = encode_classification([{"text": "anna visited lima and bob smith met anna .", "label": -100}], tok)
    both = concat_datasets(short, long)
    T = long.tensors["input_ids"].shape[1]
    assert both.tensors["input_ids"].shape == (2, T) and both.tensors["labels"].tolist() == [1, -100]
    n = short.tensors["input_ids"].shape[1]
    assert torch.equal(both.tensors["input_ids"][0, :n], short.tensors["input_ids"][0])
    assert (both.tensors["input_ids"][0, n:] == tok.pad_id).all() and (both.tensors["attention_mask"][0, n:] == 0).all()
    tags = encode_tagging(SENTENCES, tok, TAGS)
    wide = concat_datasets(tags.subset(1), encode_tagging(SENTENCES[1:], tok, TAGS))
    first = tags.subset(1).tensors["labels"]
    assert (wide.tensors["labels"][0, first.shape[1]:] == -100).all()  # token labels padded with -100
    with pytest.raises(ValueError, match="different columns"):
        concat_datasets(short, TensorDataset({"input_ids": torch.zeros(1, 3, dtype=torch.long)}))


def test_trim_padding_cuts_padding_only_and_keeps_other_columns(tok):
    tags = encode_tagging(SENTENCES * 2, tok, TAGS)
    short = encode_classification([{"text": "the soup .", "label": 1}, {"text": "anna visited lima and bob smith .",
                                                                         "label": 0}], tok)
    rows = [tags[0], tags[2]]  # the shorter sentence, twice: the batch is cut to its length
    batch = trim_padding(rows)
    n = int(tags.tensors["attention_mask"][0].sum())
    assert n < tags.tensors["input_ids"].shape[1] and batch["input_ids"].shape == (2, n)
    assert torch.equal(batch["labels"], tags.tensors["labels"][[0, 2], :n])  # per-token labels cut too
    assert batch["attention_mask"].sum() == tags.tensors["attention_mask"][[0, 2]].sum()  # no real token lost
    one = trim_padding([short[0]])
    assert one["input_ids"].shape[1] == int(short.tensors["attention_mask"][0].sum())
    assert one["labels"].tolist() == [1]  # (B,) labels: untouched
    logits = torch.randn(2, 5)
    assert torch.equal(trim_padding([{**short[0], "teacher": logits[0]}, {**short[1], "teacher": logits[1]}])["teacher"],
                       logits)  # other columns are stacked as they are


def test_fit_on_trimmed_batches_gives_the_same_loss_as_padded_ones(tok):
    data = encode_tagging(SENTENCES * 4, tok, TAGS)
    cfg = mlstep.BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_layers=1, num_heads=2,
                            intermediate_size=32, max_position=32, dropout=0.0)
    torch.manual_seed(0)
    model = BertForTokenClassification(cfg, len(TAGS)).eval()
    padded = {k: v[[0, 2]] for k, v in data.tensors.items()}
    trimmed = trim_padding([data[0], data[2]])
    assert torch.allclose(model(**padded).loss, model(**trimmed).loss, atol=1e-6)


def test_word_accuracy_on_seen_and_unseen_words():
    predicted = [["NOUN", "VERB"], ["DET", "NOUN", "VERB"], ["X"]]
    gold = [["NOUN", "NOUN"], ["DET", "NOUN", "VERB"], ["X", "PUNCT"]]  # the last word was cut off
    words = [["Dogs", "bark"], ["the", "cat", "runs"], ["Hi", "!"]]
    result = word_accuracy(predicted, gold, words, seen={"dogs", "the", "hi"})
    assert result["accuracy"] == pytest.approx(5 / 7)
    assert result["seen_accuracy"] == pytest.approx(3 / 3) and result["unseen_accuracy"] == pytest.approx(2 / 4)
    assert result["unseen_share"] == pytest.approx(4 / 7)
    assert word_accuracy(predicted, gold, words) == {"accuracy": pytest.approx(5 / 7)}
    with pytest.raises(ValueError, match="no words"):
        word_accuracy([], [], [])


def test_predict_runs_short_rows_together_and_returns_the_rows_in_order(tok):
    data = encode_tagging(SENTENCES * 3, tok, TAGS)
    rows = encode_classification([{"text": t, "label": 0} for t in ["the soup .", "anna visited lima and bob ."] * 3],
                                 tok)
    torch.manual_seed(0)
    cfg = mlstep.BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_layers=1, num_heads=2,
                            intermediate_size=32, max_position=32, dropout=0.0)
    tagger, classifier = BertForTokenClassification(cfg, len(TAGS)).eval(), BertForSequenceClassification(cfg, 2).eval()
    with torch.no_grad():  # the whole padded set at once, for reference
        full = tagger(**{k: v for k, v in data.tensors.items() if k != "labels"}).logits
        whole = classifier(**{k: v for k, v in rows.tensors.items() if k != "labels"}).logits
    got = predict(tagger, data, batch_size=2)
    real = data.tensors["attention_mask"].bool()
    assert got.shape == full.shape and torch.allclose(got[real], full[real], atol=1e-5)
    assert torch.allclose(predict(classifier, rows, batch_size=4), whole, atol=1e-5)
