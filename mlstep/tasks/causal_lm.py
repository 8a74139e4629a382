"""Causal language modeling on the offline corpus: what chapter 08 needs around :mod:`mlstep.gpt`.

In the order the chapter uses them:

1. :func:`pack_documents` turns documents into one token stream (``<|endoftext|>`` before each
   document) cut into blocks ``(N, T)``: every position of a block is a training example.
2. :class:`NGramLM` is the baseline a GPT must beat: a unigram or an interpolated bigram model
   counted on the same training tokens, scored on the same held-out tokens.
3. :func:`evaluate_lm` measures held-out loss, perplexity and next-token accuracy.
4. :func:`sample_texts` and :func:`grammatical_share` judge what a model writes with the corpus's
   own grammar (:func:`mlstep.data.grammar.sentence_kind`).
5. :func:`conclusion_pairs`, :func:`encode_prompted` and :func:`complete` make the
   conditional-generation task: write a document's concluding sentence from its opening.
6. :func:`attention_maps` reads every head's attention weights out of a trained model.
7. :class:`GPTRecipe` and :func:`pretrain_gpt` pretrain the course's tiny GPT; ``python -m
   mlstep.tasks gpt`` runs the recipe and saves the result to ``data/pretrained_gpt/``, which
   chapter 08 and its multi-seed experiment load with ``load_course_model("gpt")``
   (:mod:`mlstep.tasks.course`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from mlstep.data import load_task
from mlstep.data.grammar import sentence_kind
from mlstep.generation import generate, pad_left
from mlstep.gpt import GPT, GPTConfig, lm_step
from mlstep.tasks.labeled import TensorDataset
from mlstep.tokenizers.bpe import ByteLevelBPETokenizer
from mlstep.tools.runtime import IGNORE_INDEX, eval_mode
from mlstep.train import History, TrainConfig, train

__all__ = ["pack_documents", "NGramLM", "evaluate_lm", "sample_texts", "split_sentences",
           "grammatical_share", "conclusion_pairs", "encode_prompted", "complete", "attention_maps",
           "GPTRecipe", "corpus_bpe", "pretrain_gpt"]

def pack_documents(documents: Sequence[Sequence[str]], tokenizer: ByteLevelBPETokenizer,
                   block_size: int) -> Tensor:
    """Documents (lists of sentences) as one stream ``<|endoftext|> doc <|endoftext|> doc …``, cut
    into ``(N, block_size)`` blocks (the incomplete last block is dropped)."""
    stream: list[int] = []
    for doc in documents:
        stream += [tokenizer.eos_id, *tokenizer.encode(" ".join(doc)).ids]
    n = len(stream) // block_size
    if n == 0:
        raise ValueError(f"{len(stream)} tokens do not fill one block of {block_size}")
    return torch.tensor(stream[: n * block_size]).view(n, block_size)  # (N, T)


class NGramLM:
    """``P(b | a) = λ·count(a b) / count(a) + (1 − λ)·P(b)``, with ``P(b)`` the add-one-smoothed
    unigram distribution; ``λ = 0`` is the unigram model. Counted on the blocks' adjacent pairs."""

    def __init__(self, blocks: Tensor, vocab_size: int, lam: float = 0.0):
        self.lam = lam
        counts = torch.ones(vocab_size) + torch.bincount(blocks.flatten(), minlength=vocab_size)  # (V,)
        self.unigram = counts / counts.sum()  # (V,)
        pairs = blocks[:, :-1].flatten() * vocab_size + blocks[:, 1:].flatten()  # id of each (a, b)
        bigram = torch.bincount(pairs, minlength=vocab_size**2).view(vocab_size, vocab_size).float()
        self.bigram = bigram / bigram.sum(1, keepdim=True).clamp(min=1)  # (V, V): rows of unseen a are 0

    @classmethod
    def fit(cls, train_blocks: Tensor, valid_blocks: Tensor, vocab_size: int) -> NGramLM:
        """The bigram model with the λ (of 0.01, 0.02, …, 0.99, 0.995, 0.999) that fits ``valid_blocks``
        best: the baseline is tuned on the very tokens it is scored on, which can only flatter it."""
        model = cls(train_blocks, vocab_size)
        lams = [i / 100 for i in range(1, 100)] + [0.995, 0.999]
        model.lam = min(lams, key=lambda lam: cls.nll(model, valid_blocks, lam))
        return model

    def probs(self, previous: Tensor) -> Tensor:
        """``P(· | previous)``: ``(..., V)`` for previous ids ``(...)``."""
        return self.lam * self.bigram[previous] + (1 - self.lam) * self.unigram

    def nll(self, blocks: Tensor, lam: float | None = None) -> float:
        """Mean negative log-likelihood of each block's tokens after the first (as a GPT is scored)."""
        lam = self.lam if lam is None else lam
        previous, target = blocks[:, :-1], blocks[:, 1:]  # (N, T - 1) each
        p = lam * self.bigram[previous, target] + (1 - lam) * self.unigram[target]  # (N, T - 1)
        return -p.log().mean().item()

    def sample(self, start_id: int, n: int, length: int, generator: torch.Generator) -> Tensor:
        """``(n, 1 + length)`` ids: ``start_id``, then ``length`` tokens drawn one after another."""
        ids = torch.full((n, 1), start_id)
        for _ in range(length):
            ids = torch.cat([ids, torch.multinomial(self.probs(ids[:, -1]), 1, generator=generator)], dim=1)
        return ids


@torch.no_grad()
def evaluate_lm(model: GPT, blocks: Tensor, batch_size: int = 64) -> dict[str, float]:
    """Held-out next-token ``loss`` (nats), ``perplexity`` and ``accuracy`` over ``blocks (N, T)``."""
    device = next(model.parameters()).device
    nll = correct = total = 0.0
    with eval_mode(model):
        for start in range(0, len(blocks), batch_size):
            ids = blocks[start:start + batch_size].to(device)  # (B, T)
            logits = model(ids).logits[:, :-1].float()  # (B, T - 1, V): predictions of tokens 1..T-1
            nll += F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="sum").item()
            correct += (logits.argmax(-1) == ids[:, 1:]).sum().item()
            total += ids[:, 1:].numel()
    return {"loss": nll / total, "perplexity": math.exp(nll / total), "accuracy": correct / total}


def split_sentences(text: str) -> list[str]:
    """The complete sentences of a generated text: each ends with " ." (an unfinished tail is dropped)."""
    return [s.strip() for s in re.findall(r"[^.]*\.", text) if s.strip() != "."]


def sample_texts(model: GPT, tokenizer: ByteLevelBPETokenizer, n: int, max_new_tokens: int = 80,
                 seed: int = 0, **sampling) -> list[str]:
    """``n`` documents written from scratch (the prompt is ``<|endoftext|>``), up to their end token.
    ``sampling``: ``temperature``, ``top_k``, ``top_p`` as :func:`mlstep.generation.generate` takes them."""
    device = next(model.parameters()).device
    prompt = torch.full((n, 1), tokenizer.eos_id, device=device)
    out = generate(model, prompt, max_new_tokens, eos_id=tokenizer.eos_id,
                   generator=torch.Generator(device).manual_seed(seed), **sampling)
    return [tokenizer.decode(row[1:]) for row in out.cpu()]


def grammatical_share(texts: Sequence[str]) -> tuple[float, int]:
    """The share of the complete sentences in ``texts`` that the corpus generator can write, and
    how many sentences there were."""
    sentences = [s for text in texts for s in split_sentences(text)]
    if not sentences:
        return 0.0, 0
    return sum(sentence_kind(s) is not None for s in sentences) / len(sentences), len(sentences)


def conclusion_pairs(documents: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
    """``(opening, conclusion)`` for every document that ends with a conclusion: the opening is
    every sentence before it (so names and polarity can be read off it)."""
    return [(" ".join(doc[:-1]), doc[-1]) for doc in documents
            if len(doc) > 1 and sentence_kind(doc[-1]) == "conclusion"]


def encode_prompted(pairs: Sequence[tuple[str, str]], tokenizer: ByteLevelBPETokenizer,
                    max_length: int) -> TensorDataset:
    """``<|endoftext|> prompt target <|endoftext|>`` per pair, padded on the right, with labels only
    on the target and its end token (−100 on the prompt and padding): the loss teaches the answer,
    not the question. Pairs longer than ``max_length`` tokens are left out."""
    rows, labels = [], []
    for prompt, target in pairs:
        p = [tokenizer.eos_id, *tokenizer.encode(prompt).ids]
        t = [*tokenizer.encode(" " + target).ids, tokenizer.eos_id]
        if len(p) + len(t) <= max_length:
            rows.append(p + t)
            labels.append([IGNORE_INDEX] * len(p) + t)
    if not rows:
        raise ValueError(f"no pair fits in max_length={max_length} tokens")
    T = max(len(r) for r in rows)
    ids = torch.tensor([r + [tokenizer.pad_id] * (T - len(r)) for r in rows])  # (N, T)
    targets = torch.tensor([r + [IGNORE_INDEX] * (T - len(r)) for r in labels])  # (N, T)
    return TensorDataset({"input_ids": ids, "labels": targets})


@torch.no_grad()
def complete(model: GPT, tokenizer: ByteLevelBPETokenizer, prompts: Sequence[str],
             max_new_tokens: int = 24, batch_size: int = 100) -> list[str]:
    """The greedy continuation of each prompt, up to the end token (batched, padded on the left)."""
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(prompts), batch_size):
        ids, mask = pad_left([[tokenizer.eos_id, *tokenizer.encode(p).ids]
                              for p in prompts[start:start + batch_size]], tokenizer.pad_id)
        new = generate(model, ids.to(device), max_new_tokens, temperature=0, eos_id=tokenizer.eos_id,
                       attention_mask=mask.to(device))[:, ids.shape[1]:]  # (B, N): the new tokens
        out += [tokenizer.decode(row).strip() for row in new.cpu()]
    return out


@torch.no_grad()
def attention_maps(model: GPT, input_ids: Tensor) -> list[Tensor]:
    """Every layer's attention weights ``(B, H, T, T)`` for ``input_ids (B, T)``, from the
    from-scratch attention path (the fused one never forms them)."""
    with eval_mode(model):
        states = model.hidden_states(input_ids)
        return [block.attn(block.norm1(x) if block.pre_norm else x, need_weights=True)[1]
                for block, x in zip(model.decoder.layers, states)]  # layer l reads hidden state l


@dataclass(frozen=True)
class GPTRecipe:
    """How the course's tiny GPT is pretrained on the offline corpus (chapter 08)."""

    vocab_size: int = 2000  # byte-level BPE pieces, trained on the pretraining documents
    block_size: int = 128  # tokens per training sequence (and max_position)
    hidden_size: int = 64  # model width D
    num_layers: int = 2  # blocks
    num_heads: int = 4  # attention heads
    steps: int = 2000  # optimizer steps (about 5 passes over the 1.5 M training tokens)
    batch_size: int = 32  # blocks per step
    lr: float = 3e-3  # peak learning rate
    warmup_ratio: float = 0.05  # linear warmup over this fraction of the steps
    decay_ratio: float = 0.3  # linear decay to 0 over this last fraction
    seed: int = 0  # initialisation and batch order

    def model_config(self, vocab_size: int) -> GPTConfig:
        """The model this recipe trains (F = 4D, positions = the block size), for ``vocab_size`` pieces."""
        return GPTConfig(vocab_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
                         num_heads=self.num_heads, intermediate_size=4 * self.hidden_size,
                         max_position=self.block_size)

    def train_config(self, progress: bool = True, device: str = "cpu") -> TrainConfig:
        """The run this recipe makes: steps, peak lr and its schedule, five evaluations, seed."""
        return TrainConfig(max_steps=self.steps, lr=self.lr, warmup_ratio=self.warmup_ratio,
                           decay_ratio=self.decay_ratio, eval_every=self.steps // 5, seed=self.seed,
                           progress=progress, device=device)


def corpus_bpe(vocab_size: int = 2000) -> ByteLevelBPETokenizer:
    """The byte-level BPE tokenizer trained on the pretraining documents (deterministic)."""
    documents = load_task("pretrain", "train")["sentences"]
    return ByteLevelBPETokenizer.train([" ".join(doc) for doc in documents], vocab_size=vocab_size)


def pretrain_gpt(recipe: GPTRecipe = GPTRecipe(), tokenizer: ByteLevelBPETokenizer | None = None,
                 progress: bool = True, device: str = "cpu") -> tuple[GPT, History]:
    """Pretrain a tiny GPT on the packed pretraining documents with ``recipe``; returns the model
    (in eval mode) and its :class:`~mlstep.train.History` (``eval.perplexity`` on held-out blocks)."""
    tokenizer = tokenizer or corpus_bpe(recipe.vocab_size)
    train_blocks = pack_documents(load_task("pretrain", "train")["sentences"], tokenizer, recipe.block_size)
    valid_blocks = pack_documents(load_task("pretrain", "validation")["sentences"], tokenizer, recipe.block_size)
    torch.manual_seed(recipe.seed)
    model = GPT(recipe.model_config(tokenizer.vocab_size))
    loader = DataLoader(TensorDataset({"input_ids": train_blocks}), batch_size=recipe.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(recipe.seed))
    history = train(model, loader, lm_step, recipe.train_config(progress, device), eval_fn=lambda m: evaluate_lm(m, valid_blocks[:200]))
    return model.eval(), history
