"""mlstep.tokenizers.bpe: byte-level BPE against Hugging Face `tokenizers` given the same merges, exact round
trips of any text, training by hand, save/load and special tokens."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlstep.tokenizers.bpe import (
    BYTE_TO_CHAR,
    GPT2_PATTERN,
    ByteLevelBPETokenizer,
    bytes_to_unicode,
)

tokenizers = pytest.importorskip("tokenizers")

CORPUS = [
    "The movie was wonderful, and the actors were brilliant!",
    "The film was terrible; the plot made no sense at all.",
    "She said: \"I'll watch it again tomorrow.\" He didn't. We've, they're, you'd.",
    "Numbers like 1,234.56 and 42 appear in reviews (sometimes) 2024-11-30.",
    "CAFÉ, café, naïve and résumé keep their accents.",
    "Tabs\tand\nnewlines   and  spaces are kept as they are.\n\n",
    "中文字符 and 日本語 and emoji 😀👍🏽 cost several bytes each.",
    "low lower lowest newer newest wider widest",
] * 4


@pytest.fixture(scope="module")
def tok():
    return ByteLevelBPETokenizer.train(CORPUS, vocab_size=420, min_frequency=2)


@pytest.fixture(scope="module")
def hf(tok):
    """Hugging Face's byte-level BPE with our vocabulary and merges (GPT-2's pipeline)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    model = models.BPE(vocab={t: i for i, t in enumerate(tok._itos)}, merges=tok.merges)
    hf = Tokenizer(model)
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens(tok.special_tokens)
    return hf


def test_byte_table_is_gpt2s():
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert table[ord("A")] == "A" and table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ"
    assert set(table.values()) == set(tokenizers.pre_tokenizers.ByteLevel.alphabet())
    hf_table = pytest.importorskip("transformers.convert_slow_tokenizer").bytes_to_unicode
    assert table == hf_table()


def test_vocabulary_layout(tok):
    assert tok.vocab_size == 420 and len(tok.merges) == 420 - 257
    assert tok.id_to_token(0) == "<|endoftext|>" and tok.eos_id == tok.pad_id == 0
    assert [tok.id_to_token(i) for i in range(1, 257)] == list(BYTE_TO_CHAR.values())
    assert tok.cls_id is None and tok.special_ids == (0,)
    for a, b in tok.merges:  # every merge makes a piece of the vocabulary
        assert tok.token_to_id(a + b) is not None


def test_first_merges_by_hand():
    texts = ["hug " * 10 + "pug " * 5 + "pun " * 12 + "bun " * 4 + "hugs " * 5]
    tok = ByteLevelBPETokenizer.train(texts, vocab_size=257 + 3, min_frequency=1)
    # words: "hug" ×1, "Ġhug" ×9, "Ġpug" ×5, "Ġpun" ×12, "Ġbun" ×4, "Ġhugs" ×5 (and a last "Ġ").
    # Pair counts: u g 20, Ġ p 17, p u 17, u n 16, h u 15, Ġ h 14, ... -> merge "ug" first; then
    # Ġ p (17; p u is down to 12, "Ġpug" being Ġ p ug now); then u n (16).
    assert tok.merges == [("u", "g"), ("Ġ", "p"), ("u", "n")]
    assert tok.tokenize("hugs pun") == ["h", "ug", "s", "Ġp", "un"]


@pytest.mark.parametrize("text", CORPUS[:8] + ["", " ", "  a", "a  ", "\n", "x\u200by\u00a0z",
                                                "<|endoftext|>two docs<|endoftext|>", "ﬁ ß ǅ Ⅻ ½ ²"])
def test_encoding_equals_hugging_face_tokenizers(tok, hf, text):
    ours = tok.encode(text)
    theirs = hf.encode(text)
    assert ours.ids == theirs.ids
    assert ours.tokens == theirs.tokens
    assert tok.decode(ours.ids, skip_special_tokens=False) == hf.decode(theirs.ids, skip_special_tokens=False) == text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_text_round_trips_exactly_and_matches_hugging_face(tok, hf, text):
    ids = tok.encode(text).ids
    assert ids == hf.encode(text).ids
    assert tok.decode(ids, skip_special_tokens=False) == text
    assert tok.token_to_id("[UNK]") is None  # there is no unknown token to fall back on


def test_pretokenizer_is_gpt2s(tok):
    assert tok.pretokenize("Hello world's 42 !!  x") == ["Hello", " world", "'s", " 42", " !!", " ", " x"]
    assert GPT2_PATTERN.startswith("'s|'t|'re|'ve|'m|'ll|'d")
    assert tok.tokenize(" the") != tok.tokenize("the")  # a leading space is part of the word


def test_special_tokens_are_recognised_and_decoding_can_skip_them():
    tok = ByteLevelBPETokenizer.train(CORPUS, vocab_size=300, special_tokens=("<|endoftext|>", "<|sep|>"))
    enc = tok.encode("a<|sep|>b<|endoftext|>")
    assert enc.tokens == ["a", "<|sep|>", "b", "<|endoftext|>"]
    assert tok.decode(enc.ids) == "ab"
    assert tok.decode(enc.ids, skip_special_tokens=False) == "a<|sep|>b<|endoftext|>"
    assert tok.special_ids == (0, 1)


def test_unseen_characters_fall_back_to_bytes(tok):
    text = "🦜 ∮ ж"  # none of these is in the training corpus
    enc = tok.encode(text)
    assert len(enc.ids) <= len(text.encode("utf-8"))
    assert tok.decode(enc.ids) == text
    assert tok.decode(enc.ids[:1]) == "\ufffd"  # a cut through a multi-byte character


def test_batches_pad_with_the_end_token_and_pretokenized_words_join_with_spaces(tok):
    batch = tok.encode_batch(["the movie", "the film was terrible"])
    assert batch["input_ids"].shape[0] == 2 and batch["input_ids"].dtype == torch.long
    short = batch["attention_mask"][0].sum()
    assert (batch["input_ids"][0, short:] == tok.pad_id).all()
    words = tok.encode(["the", "movie", "was"], is_pretokenized=True)
    assert words.ids == tok.encode("the movie was").ids and words.word_ids == sorted(words.word_ids)
    with pytest.raises(TypeError, match="is_pretokenized"):
        tok.encode(["the", "movie"])


def test_save_load_round_trip(tok, tmp_path):
    path = tmp_path / "bpe.json"
    tok.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "mlstep-bytelevel-bpe" and len(data["merges"]) == len(tok.merges)
    again = ByteLevelBPETokenizer.load(path)
    assert again.vocab == tok.vocab and again.merges == tok.merges
    for text in CORPUS[:8]:
        assert again.encode(text).ids == tok.encode(text).ids


def test_training_is_deterministic_and_errors_are_clear(tok):
    assert ByteLevelBPETokenizer.train(CORPUS, vocab_size=420).merges == tok.merges
    with pytest.raises(ValueError, match="vocab_size must be an int >= 257"):
        ByteLevelBPETokenizer.train(CORPUS, vocab_size=100)
    with pytest.raises(TypeError, match="single str"):
        ByteLevelBPETokenizer.train("one text", vocab_size=300)
    with pytest.raises(ValueError, match="no words"):
        ByteLevelBPETokenizer.train([""], vocab_size=300)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        ByteLevelBPETokenizer(tok._itos, [("x", "zzz")])
    with pytest.raises(ValueError, match="byte symbol"):
        ByteLevelBPETokenizer(["<|endoftext|>", "a"], [])
    small = ByteLevelBPETokenizer.train(["ab ab ab"], vocab_size=1000)
    assert small.vocab_size < 1000  # stops when no pair is frequent enough
