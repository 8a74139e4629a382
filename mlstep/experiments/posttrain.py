"""Chapter 11's post-training experiments on the course GPT: SFT, DPO and GRPO, one seed per call.

Every arm starts from the committed course GPT with the chat tokens added
(:func:`mlstep.add_chat_tokens`), or from the same architecture at random weights, and is scored
with the exact checkers of :mod:`mlstep.data.instruct` (greedy replies) and on held-out corpus
perplexity. ``python -m mlstep.experiments posttrain`` runs every arm over seeds and writes
``chapters/results/11_posttrain.json``.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence
from typing import Any

import torch

from mlstep.data import load_task
from mlstep.data.grammar import sentence_kind
from mlstep.data.instruct import SFT_FAMILIES, instruction_examples, score_answer
from mlstep.experiments.results import results_path
from mlstep.gpt import GPT, lm_step
from mlstep.posttrain import (
    GRPOConfig,
    add_chat_tokens,
    chat_reply,
    dpo_step,
    grpo_train,
    pad_chats,
    render_chat,
)
from mlstep.tasks.causal_lm import (
    complete,
    evaluate_lm,
    grammatical_share,
    pack_documents,
    sample_texts,
    split_sentences,
)
from mlstep.tasks.course import load_course_model
from mlstep.tools.runtime import IGNORE_INDEX
from mlstep.train import TrainConfig, train

OUT = results_path("11_posttrain.json")
SFT = {"examples_per_family": 1000, "steps": 300, "batch_size": 32}
EVAL = {"examples": 100, "perplexity_documents": 200}


def chat_model(pretrained: bool = True, seed: int = 0) -> tuple[GPT, Any]:
    """The course GPT with chat tokens (``pretrained=False``: the same shape at random weights)."""
    model, tokenizer, _ = load_course_model("gpt")
    model, tokenizer = add_chat_tokens(model, tokenizer)
    if not pretrained:
        torch.manual_seed(seed)
        model = GPT(model.config)
    return model, tokenizer


def sft_batches(examples: Sequence[dict], tokenizer, batch_size: int, *, assistant_only: bool = True,
                seed: int = 0, max_length: int = 128) -> list[dict]:
    """Rendered examples in batches of similar length (sorted, cut, then the batches shuffled): less
    padding than random batches. ``assistant_only=False`` puts the loss on every real token."""
    rendered = [render_chat(e["messages"], tokenizer) for e in examples]
    if not assistant_only:
        rendered = [(ids, ids.clone()) for ids, _ in rendered]
    rendered.sort(key=lambda r: len(r[0]))
    batches = [pad_chats(rendered[i:i + batch_size], tokenizer.pad_id, max_length)
               for i in range(0, len(rendered), batch_size)]
    random.Random(seed).shuffle(batches)
    return batches


def sft_examples(per_family: int, families: Sequence[str] = SFT_FAMILIES, seed: int = 0) -> list[dict]:
    """``per_family`` training examples of each family, trained phrasings, shuffled."""
    examples = [e for f in families for e in instruction_examples(f, per_family, "train", seed=seed)]
    random.Random(seed).shuffle(examples)
    return examples


def replay_blocks(tokenizer, documents: int = 3000) -> torch.Tensor:
    """Pretraining text (the first training documents) in blocks of 128 tokens, to replay during SFT."""
    docs = [d["sentences"] for d in load_task("pretrain", "train")][:documents]
    return pack_documents(docs, tokenizer, 128)


def sft_step(model: GPT, batch: dict) -> torch.Tensor:
    """The chat batch's next-token loss, plus the replayed text's when the batch carries some."""
    loss = lm_step(model, batch)
    return loss + model(batch["replay"], batch["replay"]).loss if "replay" in batch else loss


def run_sft(model: GPT, tokenizer, examples: Sequence[dict], steps: int, lr: float, *, seed: int = 0,
            assistant_only: bool = True, replay: torch.Tensor | None = None, replay_per_batch: int = 8,
            batch_size: int = 32, progress: bool = False) -> GPT:
    """``steps`` of SFT on ``examples`` (in place; returns ``model``); with ``replay`` blocks, each
    step also trains on ``replay_per_batch`` of them (rehearsal against forgetting)."""
    batches = sft_batches(examples, tokenizer, batch_size, assistant_only=assistant_only, seed=seed)
    if replay is not None:  # one batch per step, each with its own replayed blocks
        g = torch.Generator().manual_seed(seed)
        batches = [{**batches[i % len(batches)], "replay": replay[torch.randint(len(replay), (replay_per_batch,), generator=g)]}
                   for i in range(steps)]
    config = TrainConfig(max_steps=steps, lr=lr, warmup_ratio=0.05, device="cpu", seed=seed, progress=progress)
    train(model, batches, sft_step, config)
    return model


def accuracy(model: GPT, tokenizer, examples: Sequence[dict]) -> float:
    """The share of ``examples`` whose greedy reply the family's checker accepts."""
    replies = chat_reply(model, tokenizer, [e["messages"][:1] for e in examples], max_new_tokens=8)
    return sum(score_answer(e, r) for e, r in zip(examples, replies)) / len(examples)


def test_sets(n: int = EVAL["examples"]) -> dict[str, list[dict]]:
    """The evaluation sets: each SFT family with trained and held-out phrasings, the negated
    polarity reviews and the held-out family (all from the test split)."""
    sets = {f"{f}/{p}": instruction_examples(f, n, "test", phrasings=p) for f in SFT_FAMILIES
            for p in ("train", "heldout")}
    sets["polarity/negated"] = instruction_examples("polarity", n, "test", negated=True)
    sets["companion"] = instruction_examples("companion", n, "test")
    return sets


def report(model: GPT, tokenizer, sets: dict[str, list[dict]], blocks: torch.Tensor) -> dict[str, float]:
    """Accuracy on every set, the mean over the trained families' held-out phrasings, and held-out
    corpus perplexity (the chat tokens never appear in it)."""
    out = {name: accuracy(model, tokenizer, examples) for name, examples in sets.items()}
    out["heldout_phrasings"] = sum(out[f"{f}/heldout"] for f in SFT_FAMILIES) / len(SFT_FAMILIES)
    out["perplexity"] = evaluate_lm(model, blocks)["perplexity"]
    return {k: round(v, 4) for k, v in out.items()}


def perplexity_blocks(tokenizer, documents: int = EVAL["perplexity_documents"]) -> torch.Tensor:
    """Held-out corpus text (validation documents) in blocks of 128 tokens."""
    docs = [d["sentences"] for d in load_task("pretrain", "validation")][:documents]
    return pack_documents(docs, tokenizer, 128)


def few_shot_prompt(shots: Sequence[dict], query: dict) -> str:
    """A plain-text prompt for the base model: solved examples, then the question (no chat tokens)."""
    solved = " ".join(f"{e['context']} {e['instruction']} {e['answer']} ." for e in shots)
    return f"{solved} {query['context']} {query['instruction']}".strip()


@torch.no_grad()
def few_shot_accuracy(model: GPT, tokenizer, examples: Sequence[dict], shots: Sequence[dict]) -> float:
    """The base model prompted with ``shots`` solved examples of the same family: the first word it
    writes is its answer."""
    replies = complete(model, tokenizer, [few_shot_prompt(shots, e) for e in examples], max_new_tokens=6)
    return sum(score_answer(e, (r.split() or [""])[0]) for e, r in zip(examples, replies)) / len(examples)


# --- DPO ----------------------------------------------------------------------------------------

def preference_pairs(model: GPT, tokenizer, examples: Sequence[dict]) -> list[dict]:
    """``{"messages", "chosen", "rejected"}`` for each example the model answers wrongly: chosen is
    the right answer, rejected the model's own wrong reply (a failure it actually makes)."""
    replies = chat_reply(model, tokenizer, [e["messages"][:1] for e in examples], max_new_tokens=8)
    return [{"messages": e["messages"][:1], "chosen": e["answer"], "rejected": r}
            for e, r in zip(examples, replies) if r and score_answer(e, r) == 0]


def preference_batches(pairs: Sequence[dict], tokenizer, batch_size: int = 32, seed: int = 0) -> list[dict]:
    """Batches of ``chosen_ids/labels`` and ``rejected_ids/labels`` ``(B, T)``, padded alike."""
    batches = []
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i:i + batch_size]
        rendered = [render_chat([*p["messages"], {"role": "assistant", "content": p[side]}], tokenizer)
                    for side in ("chosen", "rejected") for p in chunk]
        both = pad_chats(rendered, tokenizer.pad_id, 128)  # (2B, T): chosen rows, then rejected
        n = len(chunk)
        batches.append({"chosen_ids": both["input_ids"][:n], "chosen_labels": both["labels"][:n],
                        "rejected_ids": both["input_ids"][n:], "rejected_labels": both["labels"][n:]})
    random.Random(seed).shuffle(batches)
    return batches


def run_dpo(model: GPT, tokenizer, pairs: Sequence[dict], steps: int, lr: float, beta: float, *,
            seed: int = 0, batch_size: int = 32) -> GPT:
    """``steps`` of DPO on ``pairs`` against a frozen copy of ``model`` as the reference (in place)."""
    reference = copy.deepcopy(model)
    config = TrainConfig(max_steps=steps, lr=lr, warmup_ratio=0.05, device="cpu", seed=seed, progress=False)
    train(model, preference_batches(pairs, tokenizer, batch_size, seed), dpo_step(reference, beta), config)
    return model


def chosen_examples(pairs: Sequence[dict]) -> list[dict]:
    """The pairs' prompts with their chosen answers: the data of the continued-SFT control."""
    return [{"messages": [*p["messages"], {"role": "assistant", "content": p["chosen"]}]} for p in pairs]


# --- GRPO and rejection sampling ----------------------------------------------------------------

def answers(batch: dict, tokenizer) -> list[str]:
    """The decoded answers of a rollout batch (its labelled tokens, without the end token)."""
    ids = batch["input_ids"][:, batch["start"]:]
    keep = batch["labels"][:, batch["start"]:] != IGNORE_INDEX
    end = tokenizer.token_to_id("<|end|>")
    return [tokenizer.decode([t for t, k in zip(row.tolist(), m.tolist()) if k and t not in (end, tokenizer.eos_id)]).strip()
            for row, m in zip(ids, keep)]


def answer_reward(examples: Sequence[dict], tokenizer, group_size: int):
    """A ``reward_fn`` for :func:`grpo_run`: each answer scored by its family's exact checker."""
    def reward(indices: Sequence[int], batch: dict) -> torch.Tensor:
        texts = answers(batch, tokenizer)
        expected = [examples[i] for i in indices for _ in range(group_size)]
        return torch.tensor([score_answer(e, t) for e, t in zip(expected, texts)])
    return reward


# --- the unconditional grammar reward -------------------------------------------------------------

def grammar_reward(tokenizer):
    """A ``reward_fn``: the share of a sample's complete sentences the corpus grammar accepts (0 if
    it wrote none) — a reward that can be gamed by writing short, safe sentences."""
    def reward(indices: Sequence[int], batch: dict) -> torch.Tensor:
        out = []
        for row in batch["input_ids"][:, batch["start"]:]:
            sentences = split_sentences(tokenizer.decode([t for t in row.tolist() if t != tokenizer.eos_id]))
            out.append(sum(sentence_kind(s) is not None for s in sentences) / len(sentences) if sentences else 0.0)
        return torch.tensor(out)
    return reward


def writing_report(model: GPT, tokenizer, blocks: torch.Tensor, n: int = 100) -> dict[str, float]:
    """What the model writes from scratch at temperature 1 (fixed seed): grammatical share, sentences,
    words per sentence, distinct words, and held-out perplexity."""
    texts = sample_texts(model, tokenizer, n, 80, seed=123, temperature=1.0)
    share, count = grammatical_share(texts)
    words = [w for t in texts for w in t.split()]
    return {"grammatical": round(share, 4), "sentences": count, "words_per_sentence": round(len(words) / max(count, 1), 2),
            "distinct_words": len(set(words)), "perplexity": round(evaluate_lm(model, blocks)["perplexity"], 4)}


def run_grammar_rl(seed: int, beta: float, steps: int, lr: float) -> dict[str, float]:
    """GRPO on the course GPT (no chat tokens) with :func:`grammar_reward`: 4 × 8 samples of 48
    tokens per step from ``<|endoftext|>``; returns :func:`writing_report` after ``steps``."""
    model, tokenizer, _ = load_course_model("gpt")
    config = GRPOConfig(steps=steps, lr=lr, prompts_per_step=4, group_size=8, max_new_tokens=48, beta=beta)
    grpo_train(model, [[tokenizer.eos_id]] * 4, grammar_reward(tokenizer), config,
               eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id, seed=seed)
    return writing_report(model, tokenizer, perplexity_blocks(tokenizer))
