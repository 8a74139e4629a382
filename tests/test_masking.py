"""mlstep.masking: MLM masking rates and invariants (against Hugging Face's collator as a
statistical reference), whole-word masking, and NSP/SOP pair builders."""

import math
from collections import Counter

import pytest
import torch
from scipy.stats import chisquare

from mlstep.masking import mask_tokens, nsp_pairs, sop_pairs
from mlstep.tools.runtime import IGNORE_INDEX

V = 50
MASK = 4
SPECIALS = [0, 1, 2, 3, 4, 17]  # PAD UNK CLS SEP MASK + a special in the middle of the vocabulary
NORMAL = [i for i in range(V) if i not in SPECIALS]
KW = dict(vocab_size=V, mask_id=MASK, special_ids=SPECIALS)


def make_batch(b=8, t=32, seed=0, pad=True):
    """(B, T) ids: [CLS] normal tokens (a few UNK) [SEP] then padding; returns ids and attention mask."""
    g = torch.Generator().manual_seed(seed)
    normal = torch.tensor(NORMAL)
    ids = normal[torch.randint(len(NORMAL), (b, t), generator=g)]
    ids[torch.rand(b, t, generator=g) < 0.02] = 1  # some UNK inside the text
    lengths = torch.randint(t // 2, t + 1, (b,), generator=g) if pad else torch.full((b,), t)
    am = (torch.arange(t)[None, :] < lengths[:, None]).long()
    ids[:, 0] = 2
    ids[torch.arange(b), lengths - 1] = 3
    ids[am == 0] = 0
    return ids, am


def five_sigma(p, n):
    return 5 * math.sqrt(p * (1 - p) / n)


def check_invariants(ids, am, inputs, labels, mask_id=MASK, specials=SPECIALS):
    """Exact invariants that any correct MLM masking satisfies (ours and HF's alike)."""
    chosen = labels != IGNORE_INDEX
    special = torch.isin(ids, torch.tensor(specials)) | (am == 0)
    assert not (chosen & special).any(), "a special/padding position was chosen"
    assert torch.equal(labels[chosen], ids[chosen]), "labels must be the original ids"
    assert torch.equal(inputs[~chosen], ids[~chosen]), "unchosen positions must be unchanged"
    assert torch.equal(inputs[special], ids[special])
    return chosen


# --- mask_tokens: rates --------------------------------------------------------------------------

def test_rates_15_and_80_10_10_on_100k_tokens():
    ids, am = make_batch(b=2000, t=128, seed=1)
    inputs, labels = mask_tokens(ids, **KW, attention_mask=am, generator=torch.Generator().manual_seed(0))
    chosen = check_invariants(ids, am, inputs, labels)
    maskable = ~torch.isin(ids, torch.tensor(SPECIALS)) & (am == 1)
    n = int(maskable.sum())
    assert n >= 100_000
    rate = chosen.sum().item() / n
    assert abs(rate - 0.15) < five_sigma(0.15, n), rate

    m = int(chosen.sum())
    got_mask = (inputs[chosen] == MASK).float().mean().item()
    changed = (inputs[chosen] != ids[chosen]) & (inputs[chosen] != MASK)
    k = len(NORMAL)  # a random draw equals the original with probability 1/k and looks unchanged
    assert abs(got_mask - 0.8) < five_sigma(0.8, m)
    assert abs(changed.float().mean().item() - 0.1 * (1 - 1 / k)) < five_sigma(0.1, m)
    unchanged = (inputs[chosen] == ids[chosen]).float().mean().item()
    assert abs(unchanged - (0.1 + 0.1 / k)) < five_sigma(0.1, m)

    # random tokens: never special, uniform over the non-special ids (chi-square)
    random_tokens = inputs[chosen][changed]
    assert not torch.isin(random_tokens, torch.tensor(SPECIALS)).any()
    counts = torch.bincount(random_tokens, minlength=V)[NORMAL]
    assert (counts > 0).all()
    assert chisquare(counts.numpy()).pvalue > 1e-4


def test_same_as_hf_collator_statistically(tmp_path):
    """HF's DataCollatorForLanguageModeling on the same input obeys the same invariants, and the
    rates agree (it's a statistical reference, not a bitwise one: the draws differ)."""
    transformers = pytest.importorskip("transformers")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(5, V)]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = transformers.BertTokenizer(str(tmp_path / "vocab.txt"))
    specials = SPECIALS[:5]  # HF only knows its own special tokens
    ids, am = make_batch(b=400, t=64, seed=3, pad=False)
    ids[ids == 17] = 18
    stm = torch.isin(ids, torch.tensor(specials)).long()
    hf = transformers.DataCollatorForLanguageModeling(tok, seed=0)
    out = hf.torch_call([{"input_ids": r, "special_tokens_mask": s} for r, s in zip(ids.tolist(), stm.tolist(), strict=True)])
    ours = mask_tokens(ids, vocab_size=V, mask_id=MASK, special_ids=specials,
                       generator=torch.Generator().manual_seed(0))
    n = int((stm == 0).sum())
    rates = {}
    for name, (inputs, labels) in {"hf": (out["input_ids"], out["labels"]), "ours": ours}.items():
        chosen = check_invariants(ids, am, inputs, labels, specials=specials)
        rates[name] = (chosen.sum().item() / n, (inputs[chosen] == MASK).float().mean().item())
    tol = 2 * five_sigma(0.15, n)
    assert abs(rates["hf"][0] - rates["ours"][0]) < tol, rates
    assert abs(rates["hf"][1] - rates["ours"][1]) < 0.05, rates


# --- mask_tokens: exact invariants ----------------------------------------------------------------

def test_input_not_modified_and_global_rng_untouched():
    ids, am = make_batch()
    before = ids.clone()
    state = torch.get_rng_state()
    mask_tokens(ids, **KW, attention_mask=am, generator=torch.Generator().manual_seed(0))
    mask_tokens(ids, **KW, word_ids=torch.arange(32).expand(8, 32), generator=torch.Generator().manual_seed(0))
    assert torch.equal(ids, before)
    assert torch.equal(torch.get_rng_state(), state)


def test_seed_determinism():
    ids, am = make_batch(b=16, t=64)
    a = mask_tokens(ids, **KW, attention_mask=am, generator=torch.Generator().manual_seed(7))
    b = mask_tokens(ids, **KW, attention_mask=am, generator=torch.Generator().manual_seed(7))
    c = mask_tokens(ids, **KW, attention_mask=am, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    # without a generator: the global RNG, so torch.manual_seed makes it reproducible
    torch.manual_seed(0)
    d = mask_tokens(ids, **KW, attention_mask=am)
    torch.manual_seed(0)
    e = mask_tokens(ids, **KW, attention_mask=am)
    assert torch.equal(d[1], e[1])


def test_padding_never_chosen_even_with_normal_ids():
    """attention_mask == 0 protects a position whatever id it holds."""
    ids = torch.full((4, 20), 10)
    am = torch.ones_like(ids)
    am[:, 10:] = 0
    inputs, labels = mask_tokens(ids, **KW, attention_mask=am, mlm_probability=0.9,
                                 generator=torch.Generator().manual_seed(0))
    assert (labels[:, 10:] == IGNORE_INDEX).all() and (inputs[:, 10:] == 10).all()
    assert (labels[:, :10] != IGNORE_INDEX).any()


def test_mask_id_is_special_even_if_not_listed():
    ids = torch.full((2, 50), MASK)
    inputs, labels = mask_tokens(ids, vocab_size=V, mask_id=MASK, special_ids=[0],
                                 mlm_probability=0.9, generator=torch.Generator().manual_seed(0))
    assert (labels == IGNORE_INDEX).all() and torch.equal(inputs, ids)


def test_no_maskable_token_gives_no_labels():
    ids = torch.tensor([[2, 3, 0, 0], [2, 1, 3, 0]])
    inputs, labels = mask_tokens(ids, **KW, generator=torch.Generator().manual_seed(0))
    assert (labels == IGNORE_INDEX).all() and torch.equal(inputs, ids)
    inputs, labels = mask_tokens(torch.empty(0, 5, dtype=torch.long), **KW)
    assert inputs.shape == labels.shape == (0, 5)


# --- whole-word masking ------------------------------------------------------------------------------

def make_words(b=500, t=64, seed=5):
    """Ids with word ids: words of 1-4 pieces, -1 at [CLS], [SEP], padding; ids restart at the SEP
    in the middle (like a sentence pair from a fast tokenizer)."""
    ids, am = make_batch(b, t, seed)
    g = torch.Generator().manual_seed(seed + 1)
    word_ids = torch.full_like(ids, -1)
    for r in range(b):
        n = int(am[r].sum())
        mid = n // 2
        ids[r, mid] = 3  # an extra [SEP]
        for lo, hi in ((1, mid), (mid + 1, n - 1)):
            w, pos = 0, lo
            while pos < hi:
                length = int(torch.randint(1, 5, (1,), generator=g))
                word_ids[r, pos:min(pos + length, hi)] = w
                w, pos = w + 1, pos + length
    return ids, am, word_ids


def words_of(word_ids_row, maskable_row):
    """List of position lists, one per word (maximal run of the same id over maskable positions)."""
    words, cur, prev = [], [], None
    for p, (w, m) in enumerate(zip(word_ids_row.tolist(), maskable_row.tolist(), strict=True)):
        w = w if m else -1
        if w >= 0 and w == prev:
            cur.append(p)
        else:
            if cur:
                words.append(cur)
            cur = [p] if w >= 0 else []
        prev = w
    if cur:
        words.append(cur)
    return words


def test_whole_word_masking():
    ids, am, word_ids = make_words()
    inputs, labels = mask_tokens(ids, **KW, attention_mask=am, word_ids=word_ids,
                                 generator=torch.Generator().manual_seed(0))
    chosen = check_invariants(ids, am, inputs, labels)
    maskable = ~torch.isin(ids, torch.tensor(SPECIALS)) & (am == 1)
    n_words = n_chosen_words = 0
    multi_piece_partly = 0
    for r in range(ids.shape[0]):
        row_words = words_of(word_ids[r], maskable[r])
        flags = []
        for word in row_words:
            c = chosen[r, word]
            assert c.all() or not c.any(), f"row {r}: word at {word} partly masked"
            flags.append(bool(c[0]))
            # pieces of a chosen word get 80/10/10 independently: some are [MASK], some not
            if c.all() and len(word) > 1 and len(set((inputs[r, word] == MASK).tolist())) > 1:
                multi_piece_partly += 1
        n_words += len(flags)
        n_chosen_words += sum(flags)
    n = int(maskable.sum())
    # per-token rate is mlm_probability in expectation; words correlate pieces, so allow 2x sigma
    assert abs(chosen.sum().item() / n - 0.15) < 2 * five_sigma(0.15, n)
    assert abs(n_chosen_words / n_words - 0.15) < five_sigma(0.15, n_words)
    assert multi_piece_partly > 0


def test_whole_word_ids_restart_after_sep_are_separate_words():
    ids = torch.tensor([[2, 10, 11, 3, 12, 13, 3]])
    word_ids = torch.tensor([[-1, 0, 1, -1, 0, 1, -1]])
    seen = set()
    for seed in range(200):
        _, labels = mask_tokens(ids, **KW, word_ids=word_ids, mlm_probability=0.5,
                                generator=torch.Generator().manual_seed(seed))
        seen.add(tuple((labels[0] != IGNORE_INDEX).tolist()))
    # position 1 and position 4 share word id 0 but lie in different sentences: independent
    assert any(s[1] and not s[4] for s in seen) and any(s[4] and not s[1] for s in seen)


# --- validation -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "args, kwargs, err, match",
    [
        ((torch.tensor([5, 6]),), {}, ValueError, r"\(batch, seq_len\)"),
        ((torch.tensor([[5.0, 6.0]]),), {}, TypeError, "integer"),
        (([[5, 6]],), {}, TypeError, "integer tensor, got list"),
        ((torch.tensor([[5, 60]]),), {}, ValueError, r"\[0, vocab_size=50\), got \[60\]"),
        ((torch.tensor([[5, -1]]),), {}, ValueError, r"\[0, vocab_size=50\), got \[-1\]"),
        ((torch.tensor([[5, 6]]),), {"mlm_probability": 0.0}, ValueError, "mlm_probability"),
        ((torch.tensor([[5, 6]]),), {"mlm_probability": 1.5}, ValueError, "mlm_probability"),
        ((torch.tensor([[5, 6]]),), {"special_ids": [0, 99]}, ValueError, "99"),
        ((torch.tensor([[5, 6]]),), {"mask_id": 50}, ValueError, "50"),
        ((torch.tensor([[5, 6]]),), {"special_ids": range(V)}, ValueError, "special"),
        ((torch.tensor([[5, 6]]),), {"attention_mask": torch.ones(1, 3)}, ValueError, "attention_mask must have shape"),
        ((torch.tensor([[5, 6]]),), {"word_ids": torch.zeros(2, 2)}, ValueError, "word_ids must have shape"),
    ],
)
def test_bad_input_errors(args, kwargs, err, match):
    with pytest.raises(err, match=match):
        mask_tokens(*args, **{**KW, **kwargs})


# --- NSP / SOP ------------------------------------------------------------------------------------------

def make_docs(n_docs=40, seed=0):
    import random

    rng = random.Random(seed)
    return [[f"d{d}s{s}" for s in range(rng.randint(0, 12))] for d in range(n_docs)]


def where(sentence):
    d, s = sentence[1:].split("s")
    return int(d), int(s)


def test_nsp_pairs():
    docs = make_docs()
    pairs = nsp_pairs(docs, seed=1)
    assert len(pairs) == sum(max(len(d) - 1, 0) for d in docs)
    labels = Counter(label for _, _, label in pairs)
    assert abs(labels[0] - labels[1]) <= 1
    sources = Counter()
    for a, b, label in pairs:
        (da, sa), (db, sb) = where(a), where(b)
        if label == 0:
            assert (db, sb) == (da, sa + 1), (a, b)
        else:
            assert db != da, (a, b)
            sources[db] += 1
    assert len(sources) > 20  # random sentences drawn from many documents
    # in document order: the first sentences of the pairs are the consecutive anchors
    assert [a for a, _, _ in pairs] == [s for d in docs for s in d[:-1]]
    assert nsp_pairs(docs, seed=1) == pairs
    assert nsp_pairs(docs, seed=2) != pairs


def test_nsp_sentences_of_any_type():
    docs = [[[1, 2], [3]], [[4, 5, 6]], [[7], [8], [9]]]
    pairs = nsp_pairs(docs, seed=0)
    assert len(pairs) == 3 and all(isinstance(a, list) and isinstance(b, list) for a, b, _ in pairs)


def test_nsp_errors():
    with pytest.raises(ValueError, match="2 non-empty documents"):
        nsp_pairs([["a", "b", "c"]])
    with pytest.raises(ValueError, match="2 non-empty documents"):
        nsp_pairs([["a", "b"], []])
    with pytest.raises(ValueError, match="no document"):
        nsp_pairs([["a"], ["b"]])
    with pytest.raises(TypeError, match="list of documents"):
        nsp_pairs(["a sentence", "another"])


def test_sop_pairs():
    docs = make_docs(seed=3)
    pairs = sop_pairs(docs, seed=0)
    labels = Counter(label for _, _, label in pairs)
    assert abs(labels[0] - labels[1]) <= 1
    for a, b, label in pairs:
        (da, sa), (db, sb) = where(a), where(b)
        assert da == db
        assert (sb - sa) == (1 if label == 0 else -1), (a, b, label)
    assert sop_pairs(docs, seed=0) == pairs and sop_pairs(docs, seed=1) != pairs
    with pytest.raises(ValueError, match="no document"):
        sop_pairs([["only one"], []])
