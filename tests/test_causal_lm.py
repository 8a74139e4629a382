"""mlstep.tasks.causal_lm: packing, the n-gram baselines against hand counts, evaluation against
F.cross_entropy, the conditional-generation data, batched completion, attention maps, save/load."""

import math

import pytest
import torch
import torch.nn.functional as F

from mlstep.data import CorpusConfig, generate_corpus
from mlstep.generation import generate
from mlstep.gpt import GPT, GPTConfig, lm_step
from mlstep.tasks.causal_lm import (
    GPTRecipe,
    NGramLM,
    attention_maps,
    complete,
    conclusion_pairs,
    encode_prompted,
    evaluate_lm,
    grammatical_share,
    pack_documents,
    sample_texts,
    split_sentences,
)
from mlstep.tokenizers.bpe import ByteLevelBPETokenizer

SMALL = dict(num_validation_documents=0, sentiment_sizes=(0, 0, 0, 0), topic_sizes=(0, 0, 0, 0),
             tagging_sizes=(0, 0, 0, 0), nli_sizes=(0, 0, 0))


@pytest.fixture(scope="module")
def docs():
    return [d["sentences"] for d in generate_corpus(CorpusConfig(num_documents=60, **SMALL))["pretrain_train"]]


@pytest.fixture(scope="module")
def tok(docs):
    return ByteLevelBPETokenizer.train([" ".join(d) for d in docs], vocab_size=400)


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    return GPT(GPTConfig(tok.vocab_size, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                         max_position=96)).eval()


def test_pack_documents_puts_an_end_token_before_each_document(docs, tok):
    blocks = pack_documents(docs[:5], tok, block_size=16)
    stream = []
    for d in docs[:5]:
        stream += [tok.eos_id] + tok.encode(" ".join(d)).ids
    assert blocks.shape == (len(stream) // 16, 16)
    assert blocks.flatten().tolist() == stream[: blocks.numel()]
    with pytest.raises(ValueError, match="block"):
        pack_documents(docs[:1], tok, block_size=10_000)


def test_ngram_models_against_hand_counts():
    blocks = torch.tensor([[0, 1, 2, 1], [1, 2, 0, 1]])  # pairs: 01 12 21 12 20 01
    uni = NGramLM(blocks, vocab_size=4)
    counts = torch.tensor([2, 4, 2, 0]) + 1.0  # add-one smoothed
    torch.testing.assert_close(uni.unigram, counts / counts.sum())
    expected = -torch.log(uni.unigram[blocks[:, 1:]]).mean().item()
    assert uni.nll(blocks) == pytest.approx(expected)
    bi = NGramLM(blocks, vocab_size=4, lam=0.5)
    assert bi.bigram[1, 2] == 1.0 and bi.bigram[2, 1] == 0.5 and bi.bigram[3].sum() == 0
    p = 0.5 * bi.bigram[blocks[:, :-1], blocks[:, 1:]] + 0.5 * bi.unigram[blocks[:, 1:]]
    assert bi.nll(blocks) == pytest.approx(-p.log().mean().item())
    tuned = NGramLM.fit(blocks, blocks, vocab_size=4)
    assert tuned.nll(blocks) <= min(NGramLM(blocks, 4, lam).nll(blocks) for lam in (0.1, 0.5, 0.9)) + 1e-9
    sample = tuned.sample(0, n=3, length=5, generator=torch.Generator().manual_seed(0))
    assert sample.shape == (3, 6) and (sample[:, 0] == 0).all()
    torch.testing.assert_close(tuned.probs(torch.tensor([1])).sum(), torch.tensor(1.0))


def test_evaluate_lm_is_the_mean_next_token_cross_entropy(docs, tok, model):
    blocks = pack_documents(docs[:20], tok, block_size=24)
    result = evaluate_lm(model, blocks, batch_size=7)
    with torch.no_grad():
        logits = model(blocks).logits
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, tok.vocab_size), blocks[:, 1:].reshape(-1)).item()
    assert result["loss"] == pytest.approx(loss, rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(loss), rel=1e-5)
    assert result["loss"] == pytest.approx(lm_step(model, {"input_ids": blocks}).item(), rel=1e-5)
    assert 0 <= result["accuracy"] <= 1


def test_sentences_and_grammatical_share(docs):
    text = " ".join(docs[0]) + " the soup was"
    assert split_sentences(text) == docs[0]
    assert grammatical_share([text]) == (1.0, len(docs[0]))
    assert grammatical_share(["soup the was good . " + docs[1][0]]) == (0.5, 2)
    assert grammatical_share(["no sentence"]) == (0.0, 0)


def test_sampling_writes_documents_reproducibly(tok, model):
    a = sample_texts(model, tok, n=3, max_new_tokens=12, seed=1, temperature=1.0)
    assert a == sample_texts(model, tok, n=3, max_new_tokens=12, seed=1, temperature=1.0)
    assert len(a) == 3 and all(isinstance(t, str) for t in a)
    greedy = sample_texts(model, tok, n=2, max_new_tokens=12, temperature=0)
    assert greedy[0] == greedy[1]


def test_conclusion_task_labels_only_the_answer(docs, tok):
    pairs = conclusion_pairs(docs)
    assert 0.8 * len(docs) < len(pairs) <= len(docs)  # ~90 % of documents end with a conclusion
    opening, conclusion = pairs[0]
    assert opening.endswith(" .") and conclusion in (d[-1] for d in docs)
    data = encode_prompted(pairs[:4], tok, max_length=200)
    ids, labels = data.tensors["input_ids"], data.tensors["labels"]
    for row, (prompt, target) in enumerate(pairs[:4]):
        n_prompt = 1 + len(tok.encode(prompt).ids)
        answer = tok.encode(" " + target).ids + [tok.eos_id]
        assert ids[row, 0] == tok.eos_id and (labels[row, :n_prompt] == -100).all()
        assert labels[row, n_prompt:n_prompt + len(answer)].tolist() == answer
        assert (labels[row, n_prompt + len(answer):] == -100).all()  # padding
    lengths = sorted(2 + len(tok.encode(p).ids) + len(tok.encode(" " + c).ids) for p, c in pairs)
    assert len(encode_prompted(pairs, tok, max_length=lengths[len(lengths) // 2])) < len(pairs)  # long ones left out
    with pytest.raises(ValueError, match="max_length"):
        encode_prompted(pairs, tok, max_length=5)


def test_complete_equals_generating_each_prompt_alone(tok, model):
    prompts = ["the soup was", "anna is a chef from", "first ,"]
    batch = complete(model, tok, prompts, max_new_tokens=8, batch_size=2)
    for prompt, text in zip(prompts, batch):
        ids = torch.tensor([tok.eos_id, *tok.encode(prompt).ids])
        alone = generate(model, ids, 8, temperature=0, eos_id=tok.eos_id)[len(ids):]
        assert text == tok.decode(alone).strip()


def test_attention_maps_are_causal_distributions(tok, model):
    ids = torch.tensor([tok.encode("the soup was good , great and lovely .").ids])
    maps = attention_maps(model, ids)
    T = ids.shape[1]
    assert len(maps) == 2 and maps[0].shape == (1, 4, T, T)
    for m in maps:
        torch.testing.assert_close(m.sum(-1), torch.ones(1, 4, T))
        assert (m.triu(diagonal=1) == 0).all()  # no position looks ahead


def test_recipe_defaults():
    assert GPTRecipe().block_size == 128
