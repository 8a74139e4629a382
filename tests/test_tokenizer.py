"""mlstep.tokenizers.wordpiece: against Hugging Face's pure-Python BERT tokenizer, a naive trainer, and by hand."""

import json
import random
import time
from collections import Counter
from fractions import Fraction
from itertools import pairwise

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlstep.tokenizers.base import Encoding
from mlstep.tokenizers.wordpiece import (
    SPECIAL_TOKENS,
    WordPieceTokenizer,
    normalize_and_pretokenize,
)

CORPUS = [
    "The movie was wonderful, and the actors were brilliant!",
    "The film was terrible; the plot made no sense at all.",
    "A wonderful, wonderful evening at the cinema.",
    "Playing, played, player, players: the play is playful.",
    "Unbelievable! Unhappily, the unhappy viewers were unimpressed.",
    "She said: \"I'll watch it again tomorrow.\" He didn't.",
    "Numbers like 1,234.56 and 42 appear in reviews (sometimes).",
    "CAFÉ, café, naïve and résumé lose their accents when lower-cased.",
    "Tabs\tand\nnewlines   and  spaces collapse into one.",
    "The actors played well; the players acted badly.",
    "e-mail me at someone@example.com — or don't.",
    "Tokenization splits words into word pieces: token ##ization.",
    "中文字符 are split one by one, like 日本.",
    "The cinema was wonderful and the evening was brilliant.",
    "Reviews of reviews: reviewing reviewers who reviewed the review.",
    "low lower lowest newer newest wider widest",
] * 3

HAND_WORDS = {"hug": 10, "pug": 5, "pun": 12, "bun": 4, "hugs": 5}  # the HF course's toy corpus


@pytest.fixture(scope="module")
def tok():
    return WordPieceTokenizer.train(CORPUS, vocab_size=220, min_frequency=2)


def slow_bert_class():
    """Hugging Face's pure-Python BERT tokenizer: BertTokenizerLegacy in transformers 5, BertTokenizer in 4."""
    pytest.importorskip("transformers")
    try:
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy
        return BertTokenizerLegacy
    except ImportError:
        from transformers import BertTokenizer
        return BertTokenizer


@pytest.fixture(scope="module")
def hf(tok, tmp_path_factory):
    vocab_file = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab_file.write_text("".join(t + "\n" for t in (tok.id_to_token(i) for i in range(len(tok)))),
                          encoding="utf-8")
    return slow_bert_class()(str(vocab_file), do_lower_case=True)


# --- training ---------------------------------------------------------------------------------------

def naive_wordpiece(word_freqs, vocab_size, min_frequency, scoring="likelihood"):
    """The WordPiece training loop of the Hugging Face course, recounting everything each step.

    Exact scores (fractions) and the same tie-break as mlstep: score, then pair frequency, then
    the alphabetically first pair. ``scoring="frequency"`` ranks by pair frequency (BPE).
    """
    alphabet = sorted({w[0] for w in word_freqs} | {"##" + c for w in word_freqs for c in w[1:]})
    vocab = list(SPECIAL_TOKENS) + alphabet
    splits = {w: [w[0]] + ["##" + c for c in w[1:]] for w in word_freqs}
    while len(vocab) < vocab_size:
        letters, pairs = Counter(), Counter()
        for w, f in word_freqs.items():
            s = splits[w]
            for t in s:
                letters[t] += f
            for a, b in pairwise(s):
                pairs[(a, b)] += f
        cands = [(-Fraction(f, letters[a] * letters[b] if scoring == "likelihood" else 1), -f, a, b)
                 for (a, b), f in pairs.items() if f >= min_frequency]
        if not cands:
            break
        _, _, a, b = min(cands)
        new = a + b[2:]
        for w, s in splits.items():
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            splits[w] = out
        if new not in vocab:
            vocab.append(new)
    return vocab


def test_first_merges_by_hand():
    # Pair counts: (##u,##g) 20, (p,##u) 17, (##u,##n) 16, (h,##u) 15, (##g,##s) 5, (b,##u) 4.
    # Scores f/(f_a f_b): (##g,##s) = 5/(20·5) = 1/20 beats every pair with ##u (##u occurs 36
    # times): all of those score exactly 1/36. After "##gs", the 1/36 tie goes to the most
    # frequent pair, (p,##u) with 17.
    texts = [" ".join([w] * n) for w, n in HAND_WORDS.items()]
    tok = WordPieceTokenizer.train(texts, vocab_size=5 + 7 + 2, min_frequency=1, scoring="likelihood")
    vocab = [tok.id_to_token(i) for i in range(len(tok))]
    assert vocab[5:12] == ["##g", "##n", "##s", "##u", "b", "h", "p"]
    assert vocab[12:] == ["##gs", "pu"]


def test_first_merges_by_hand_frequency_scoring():
    # The most frequent pair is (##u,##g), 20 times. After it "pug" is p ##ug, so (p,##u) is left
    # only in "pun" (12) and (##u,##n) (16, from pun and bun) is next.
    texts = [" ".join([w] * n) for w, n in HAND_WORDS.items()]
    tok = WordPieceTokenizer.train(texts, vocab_size=5 + 7 + 2, min_frequency=1, scoring="frequency")
    assert [tok.id_to_token(i) for i in (12, 13)] == ["##ug", "##un"]


@pytest.mark.parametrize("scoring", ["likelihood", "frequency"])
@pytest.mark.parametrize("vocab_size, min_frequency", [(150, 1), (220, 2), (400, 1), (400, 3)])
def test_trainer_matches_naive_reference(vocab_size, min_frequency, scoring):
    tok = WordPieceTokenizer.train(CORPUS, vocab_size=vocab_size, min_frequency=min_frequency,
                                   scoring=scoring)
    words = Counter(w for text in CORPUS for w in normalize_and_pretokenize(text))
    ref = naive_wordpiece(dict(words), vocab_size, min_frequency, scoring)
    assert [tok.id_to_token(i) for i in range(len(tok))] == ref


def test_specials_vocab_and_alphabet(tok):
    assert [tok.id_to_token(i) for i in range(5)] == list(SPECIAL_TOKENS)
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
    assert sorted(tok.special_ids) == [0, 1, 2, 3, 4]
    assert len(tok) == tok.vocab_size == len(tok.vocab) <= 220
    assert tok.vocab_size == 220  # this corpus has more than enough pairs to fill it
    for text in CORPUS:
        for w in normalize_and_pretokenize(text):
            assert w[0] in tok.vocab
            assert all("##" + c in tok.vocab for c in w[1:])
    assert any(t.startswith("##") and len(t) > 3 for t in tok.vocab)  # merged continuations
    assert tok.token_to_id("[MASK]") == 4 and tok.token_to_id("never-a-piece") is None
    assert "vocab_size=220" in repr(tok)


def test_training_stops_when_every_word_is_one_piece():
    tok = WordPieceTokenizer.train(["low lower lowest"] * 2, vocab_size=1000, min_frequency=1)
    assert len(tok) < 1000
    assert tok.tokenize("lowest low lower") == ["lowest", "low", "lower"]


def test_min_frequency():
    # with a huge min_frequency nothing is merged: the vocabulary is the alphabet
    tok = WordPieceTokenizer.train(CORPUS, vocab_size=400, min_frequency=10**6)
    assert all(len(t.removeprefix("##")) == 1 for t in tok.vocab if t not in SPECIAL_TOKENS)


def test_training_errors():
    with pytest.raises(ValueError, match="alphabet"):
        WordPieceTokenizer.train(CORPUS, vocab_size=20)
    with pytest.raises(ValueError, match="vocab_size"):
        WordPieceTokenizer.train(CORPUS, vocab_size=5)
    with pytest.raises(ValueError, match="no words"):
        WordPieceTokenizer.train(["", "  \t"], vocab_size=100)
    with pytest.raises(TypeError, match="single str"):
        WordPieceTokenizer.train("just one string", vocab_size=100)
    with pytest.raises(ValueError, match="scoring"):
        WordPieceTokenizer.train(CORPUS, vocab_size=300, scoring="bpe")


def test_training_is_fast_on_a_big_word_table():
    # ~250k words, ~1.5k distinct: counting words first keeps this well under the limit.
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10)))
             for _ in range(1500)]
    docs = [" ".join(rng.choices(words, k=50)) + "." for _ in range(5000)]
    start = time.perf_counter()
    tok = WordPieceTokenizer.train(docs, vocab_size=2000)
    assert time.perf_counter() - start < 20
    assert len(tok) == 2000


# --- tokenisation against Hugging Face ------------------------------------------------------------

SENTENCES = CORPUS[:16] + [
    "Completely UNSEEN words: xylophone, quizzical, Zzyzx!",
    "Ångström, Ørsted, Łódź, İstanbul and ΟΔΥΣΣΕΥΣ keep only their base letters.",
    "Emoji 🙂 and symbols ∑ € ™ are unknown, 丶 too.",
    "control\x00chars\x07 and \u200bzero-width\ufeff marks are dropped",
    "a" * 101 + " " + "b" * 100,
    "the film was [MASK] . [CLS] and [SEP] stay whole; [mask] does not",
    "",
    "   ",
]


@pytest.mark.parametrize("text", SENTENCES)
def test_tokenize_matches_hf_slow_bert(tok, hf, text):
    assert tok.tokenize(text) == hf.tokenize(text)


words_and_noise = st.lists(
    st.one_of(
        st.sampled_from(sorted({w for t in CORPUS for w in t.split()})),
        st.text(max_size=4),
        st.sampled_from([" ", "\t", "\n", ",", "!", "##", "é", "\u0301", "Σ", "中", "[MASK]"]),
    ),
    max_size=12,
).map("".join)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(text=st.one_of(st.text(), words_and_noise))
def test_tokenize_matches_hf_slow_bert_fuzzed(tok, hf, text):
    assert tok.tokenize(text) == hf.tokenize(text)


@pytest.mark.parametrize("max_length", [None, 8, 12, 40])
@pytest.mark.parametrize("a, b", [(CORPUS[0], CORPUS[1]), (CORPUS[4], "short one"), ("x", CORPUS[3])])
def test_pair_truncation_and_padding_match_hf(tok, hf, a, b, max_length):
    kw = dict(max_length=max_length, padding="max_length") if max_length else {}
    enc = tok.encode(a, b, **kw)
    ref = hf(a, b, truncation="longest_first" if max_length else False,
             return_token_type_ids=True, return_attention_mask=True, **kw)
    assert enc.ids == ref["input_ids"]
    assert enc.token_type_ids == ref["token_type_ids"]
    assert enc.attention_mask == ref["attention_mask"]


def test_pretokenized_words_match_hf(tok, hf):
    words = ["Playing", "U.S.", "films", "", "wonderful!"]
    enc = tok.encode(words, is_pretokenized=True)
    assert enc.ids == hf(words, is_split_into_words=True)["input_ids"]
    # every piece points at the given word it came from; the empty word has no piece
    assert enc.word_ids == [None] + [
        i for i, w in enumerate(words) for _ in tok.tokenize(w)
    ] + [None]
    assert set(w for w in enc.word_ids if w is not None) == {0, 1, 2, 4}


# --- encode / decode ------------------------------------------------------------------------------

def test_encode_single_and_pair_layout(tok):
    a, b = tok.encode(CORPUS[0]), tok.encode(CORPUS[1])
    na, nb = len(a) - 2, len(b) - 2
    enc = tok.encode(CORPUS[0], CORPUS[1])
    assert isinstance(enc, Encoding) and len(enc) == na + nb + 3
    assert enc.ids[0] == tok.cls_id
    assert [i for i, t in enumerate(enc.ids) if t == tok.sep_id] == [na + 1, na + nb + 2]
    assert enc.token_type_ids == [0] * (na + 2) + [1] * (nb + 1)
    assert enc.ids == a.ids + b.ids[1:]
    assert enc.tokens == [tok.id_to_token(i) for i in enc.ids]
    assert enc.sequence_ids == [None] + [0] * na + [None] + [1] * nb + [None]
    # word ids restart in the second segment
    assert enc.word_ids[1] == 0 and enc.word_ids[na + 2] == 0
    assert enc.word_ids == a.word_ids + b.word_ids[1:]
    plain = tok.encode(CORPUS[0], add_special_tokens=False)
    assert plain.ids == a.ids[1:-1] and None not in plain.word_ids


def test_word_ids_follow_pretokenized_words(tok):
    text = "Unbelievable, wonderful reviewers!"
    enc = tok.encode(text)
    words = normalize_and_pretokenize(text)
    for wi, word in enumerate(words):
        pieces = [t for t, w in zip(enc.tokens, enc.word_ids, strict=True) if w == wi]
        assert "".join(p.removeprefix("##") for p in pieces) == word
    assert any(t.startswith("##") for t in enc.tokens)  # some word really was split


def test_truncation_padding_and_errors(tok):
    long_text = " ".join(CORPUS)
    enc = tok.encode(long_text, max_length=16)
    assert len(enc) == 16 and enc.ids[-1] == tok.sep_id
    assert enc.ids[:-1] == tok.encode(long_text).ids[:15]
    assert len(tok.encode(long_text, max_length=16, truncation=False)) > 16
    n = len(tok.encode("the movie"))
    enc = tok.encode("the movie", max_length=n + 3, padding=True)
    assert len(enc) == n + 3 and enc.ids[n:] == [tok.pad_id] * 3
    assert enc.attention_mask == [1] * n + [0] * 3 and enc.word_ids[n:] == [None] * 3
    assert enc.token_type_ids == [0] * (n + 3)
    enc = tok.encode(long_text, CORPUS[0], max_length=3)
    assert enc.ids == [tok.cls_id, tok.sep_id, tok.sep_id]
    assert len(tok.encode(long_text, long_text, max_length=11)) == 11
    with pytest.raises(ValueError, match="special tokens"):
        tok.encode("a b", "c", max_length=2)
    with pytest.raises(ValueError, match="special tokens"):
        tok.encode("a b", max_length=1)
    with pytest.raises(ValueError, match="needs max_length"):
        tok.encode("a b", padding="max_length")
    with pytest.raises(TypeError, match="is_pretokenized"):
        tok.encode(["a", "b"])


def test_empty_unknown_and_special_strings(tok):
    assert tok.encode("").ids == [tok.cls_id, tok.sep_id]
    assert tok.encode("", "").ids == [tok.cls_id, tok.sep_id, tok.sep_id]
    the = tok.tokenize("the")
    assert "[UNK]" not in the
    assert tok.tokenize("🙂 the ∑") == ["[UNK]", *the, "[UNK]"]
    assert tok.tokenize("the" + "e" * 98) == ["[UNK]"]  # 101 characters: too long, as in BERT
    assert tok.tokenize("the" + "e" * 97) != ["[UNK]"]  # 100 characters are still split
    assert tok.tokenize("the [MASK] the") == [*the, "[MASK]", *the]
    assert tok.encode("[MASK]").ids == [tok.cls_id, tok.mask_id, tok.sep_id]


def test_encode_batch_equals_single_encodes_padded(tok):
    texts, pairs = CORPUS[:5], CORPUS[5:10]
    for kw in [dict(), dict(pairs=pairs), dict(pairs=pairs, max_length=20)]:
        batch = tok.encode_batch(texts, **kw)
        singles = [tok.encode(t, kw.get("pairs", [None] * 5)[i], max_length=kw.get("max_length"))
                   for i, t in enumerate(texts)]
        width = max(len(e) for e in singles)
        assert batch["input_ids"].shape == (5, width) and batch["input_ids"].dtype == torch.long
        for i, e in enumerate(singles):
            pad = width - len(e)
            assert batch["input_ids"][i].tolist() == e.ids + [tok.pad_id] * pad
            assert batch["token_type_ids"][i].tolist() == e.token_type_ids + [0] * pad
            assert batch["attention_mask"][i].tolist() == [1] * len(e) + [0] * pad
            assert batch["word_ids"][i] == e.word_ids + [None] * pad
    fixed = tok.encode_batch(texts, max_length=32, padding="max_length")
    assert fixed["input_ids"].shape == (5, 32)
    lists = tok.encode_batch(texts, padding=False, return_tensors=None)
    assert lists["input_ids"] == [tok.encode(t).ids for t in texts]
    with pytest.raises(ValueError, match="different lengths"):
        tok.encode_batch(texts, padding=False)
    with pytest.raises(ValueError, match="empty"):
        tok.encode_batch([])
    with pytest.raises(ValueError, match="pairs"):
        tok.encode_batch(texts, pairs=pairs[:2])


def test_decode_round_trips_the_training_corpus(tok):
    for text in CORPUS:
        enc = tok.encode(text)
        assert tok.unk_id not in enc.ids
        assert tok.decode(enc.ids) == " ".join(normalize_and_pretokenize(text))
        assert tok.decode(torch.tensor(enc.ids)) == tok.decode(enc.ids)
    n = len(tok.encode("the movie"))
    assert tok.decode(tok.encode("the movie", max_length=n + 2, padding=True).ids,
                      skip_special_tokens=False) == "[CLS] the movie [SEP] [PAD] [PAD]"
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([0, len(tok)])


@settings(max_examples=300, deadline=None, derandomize=True)
@given(text=st.one_of(st.text(), words_and_noise), max_length=st.one_of(st.none(), st.integers(2, 40)))
def test_fuzz_encode_decode(tok, text, max_length):
    enc = tok.encode(text, max_length=max_length)
    assert all(0 <= i < len(tok) for i in enc.ids)
    assert max_length is None or len(enc) <= max_length
    assert len({len(enc.ids), len(enc.tokens), len(enc.token_type_ids), len(enc.attention_mask),
                len(enc.word_ids), len(enc.sequence_ids)}) == 1
    once = tok.decode(tok.encode(text).ids)
    assert tok.decode(tok.encode(once).ids) == once  # decoding is a fixed point after one pass
    # pieces of each word that is not [UNK] reassemble the normalised word exactly
    words = tok.pretokenize(text)
    full = tok.encode(text)
    for wi, word in enumerate(words):
        pieces = [t for t, w in zip(full.tokens, full.word_ids, strict=True) if w == wi]
        assert pieces
        if pieces != ["[UNK]"]:
            assert "".join(p.removeprefix("##") for p in pieces) == word


# --- save / load ------------------------------------------------------------------------------------

def test_save_load_round_trip(tok, tmp_path):
    path = tmp_path / "tok.json"
    tok.save(path)
    loaded = WordPieceTokenizer.load(path)
    assert loaded.vocab == tok.vocab and loaded.lowercase == tok.lowercase
    for text in SENTENCES:
        assert loaded.encode(text, CORPUS[0]) == tok.encode(text, CORPUS[0])
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]  # no temporary file left behind
    cased = WordPieceTokenizer.train(CORPUS, vocab_size=300, lowercase=False)
    cased.save(tmp_path / "cased.json")
    again = WordPieceTokenizer.load(tmp_path / "cased.json")
    assert again.tokenize("The CAFÉ") == cased.tokenize("The CAFÉ")
    assert "É" in again.decode(again.encode("CAFÉ").ids)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer file"):
        WordPieceTokenizer.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a tokenizer JSON"):
        WordPieceTokenizer.load(bad)
    bad.write_text(json.dumps({"vocab": ["a"]}))
    with pytest.raises(ValueError, match="not an mlstep"):
        WordPieceTokenizer.load(bad)
    bad.write_text(json.dumps({"format": "mlstep-wordpiece", "version": 99, "vocab": []}))
    with pytest.raises(ValueError, match=r"found format and version \('mlstep-wordpiece', 99\)"):
        WordPieceTokenizer.load(bad)
    bad.write_text(json.dumps({"format": "mlstep-wordpiece", "version": 1, "vocab": ["a", "b"]}))
    with pytest.raises(ValueError, match="special tokens"):
        WordPieceTokenizer.load(bad)
