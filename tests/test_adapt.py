"""mlstep.multistage.adapt: the new domain's words, the vocabulary extended without changing what the model
computes on old text (new rows = the mean of the old pieces, the decoder still tied), and continued
masked-LM training."""

from __future__ import annotations

import pytest
import torch

from mlstep.bert import BertConfig, BertForPreTraining
from mlstep.multistage.adapt import continue_pretraining, extend_vocabulary, new_words
from mlstep.tokenizers.wordpiece import WordPieceTokenizer

OLD = ["the soup was good and lovely .", "the cake was bad .", "anna cooked the soup .",
       "the pilot flew to the island with tim ."] * 20  # every letter the new words need
NEW = ["the ointment was soothing and good .", "the ointment was painful .", "the nurse applied the ointment ."] * 20


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tokenizer():
    return WordPieceTokenizer.train(OLD, vocab_size=60)


def model(tokenizer, seed=0):
    torch.manual_seed(seed)
    config = BertConfig(tokenizer.vocab_size, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                        max_position=32, dropout=0.0, pre_norm=True)
    return BertForPreTraining(config).eval()


def test_new_words_are_frequent_absent_before_and_cut_into_pieces(tokenizer):
    words = new_words(NEW, OLD, tokenizer, min_count=20)
    assert words[0] == "ointment"  # 60 times
    assert set(words) == {"ointment", "soothing", "painful", "nurse", "applied"}
    assert all(tokenizer.tokenize(w) != [w] for w in words)  # pieces, or [UNK]
    assert new_words(NEW, OLD, tokenizer, min_count=21) == ["ointment"]


def test_extension_keeps_old_text_and_starts_new_words_from_their_pieces(tokenizer):
    old_model = model(tokenizer)
    words = ["ointment", "soothing", "soup"]  # "soup" is already a token: skipped
    new_model, new_tok = extend_vocabulary(old_model, tokenizer, words)
    V = tokenizer.vocab_size
    assert new_tok.vocab_size == V + 2 == new_model.config.vocab_size
    assert new_tok.tokenize("the ointment was soothing") == ["the", "ointment", "was", "soothing"]
    assert [new_tok.id_to_token(i) for i in range(V)] == [tokenizer.id_to_token(i) for i in range(V)]
    emb = new_model.bert.embeddings.word_embeddings.weight
    assert new_model.predictions.decoder.weight is emb  # still tied
    for i, word in enumerate(["ointment", "soothing"]):
        pieces = [tokenizer.token_to_id(p) for p in tokenizer.tokenize(word)]
        torch.testing.assert_close(emb[V + i], old_model.bert.embeddings.word_embeddings.weight[pieces].mean(0))
        torch.testing.assert_close(new_model.predictions.bias[V + i], old_model.predictions.bias[pieces].mean())
    ids = torch.tensor([tokenizer.encode(OLD[0]).ids])
    with torch.no_grad():
        before, after = old_model(ids), new_model(ids)
    torch.testing.assert_close(after.mlm_logits[..., :V], before.mlm_logits)
    torch.testing.assert_close(after.nsp_logits, before.nsp_logits)
    with pytest.raises(ValueError, match="single words"):
        extend_vocabulary(old_model, tokenizer, ["two words"])


def test_continue_pretraining_trains_the_new_rows(tokenizer):
    new_model, new_tok = extend_vocabulary(model(tokenizer), tokenizer, ["ointment", "soothing"])
    before = new_model.bert.embeddings.word_embeddings.weight.detach().clone()
    documents = [[NEW[0], NEW[1], NEW[2]]] * 10
    out = continue_pretraining(new_model, new_tok, documents, steps=5, lr=1e-2, embedding_lr=5e-2, batch_size=4)
    assert out is new_model and not out.training
    after = new_model.bert.embeddings.word_embeddings.weight
    assert not torch.equal(after[-2:], before[-2:])
