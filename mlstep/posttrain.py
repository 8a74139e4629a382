"""Post-training: a language model becomes an assistant in three steps, each a loss on its outputs.

1. **Supervised instruction tuning (SFT).** Conversations are rendered with a *chat template*:
   role tokens added to the tokenizer mark who speaks, and an end-of-turn token closes each turn::

       <|endoftext|> <|user|> story … question <|end|> <|assistant|> answer <|end|>

   The loss is the ordinary next-token loss, but only on the assistant's tokens (and its
   ``<|end|>``, so the model learns to stop): the labels are −100 everywhere else.
2. **Direct preference optimisation (DPO).** From pairs of answers to one prompt, a *chosen* and a
   *rejected* one, raise the chosen one's log-probability relative to a frozen *reference* model
   (the SFT model) and lower the rejected one's::

       loss = −log σ(β · [(log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r))])

   β says how far the policy may move from the reference: small β, large moves.
3. **Reinforcement learning with verifiable rewards (GRPO).** Sample a *group* of G answers per
   prompt, score each with a checker, and push up the log-probability of the answers better than
   their group's mean: the advantage of answer i is (r_i − mean) / (std + 1e-4), so no value model
   is needed. The update is PPO's clipped ratio objective, plus an optional KL penalty to the
   reference that keeps the model from forgetting how to write.

Shapes follow the package legend, except that here ``G`` is a GRPO group's size (not key/value
heads); ``N`` is a rollout's new tokens.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from mlstep.generation import generate, pad_left
from mlstep.gpt import GPT, next_token_targets
from mlstep.tokenizers.bpe import ByteLevelBPETokenizer
from mlstep.tools.checks import (
    check_args,
    check_finite,
    check_ids,
    check_int,
    check_keys,
    check_number,
    check_shape,
    check_tensor,
    check_type,
    is_int,
    is_iterable,
)
from mlstep.tools.runtime import IGNORE_INDEX

__all__ = ["ROLE_TOKENS", "END_OF_TURN", "add_chat_tokens", "render_chat", "pad_chats", "chat_reply",
           "token_logprobs", "sequence_logprobs", "dpo_loss", "dpo_step", "grpo_advantages",
           "GRPOConfig", "rollout", "grpo_loss", "grpo_train"]

ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
END_OF_TURN = "<|end|>"


# --- 1. the chat template and SFT ----------------------------------------------------------------

@torch.no_grad()
def add_chat_tokens(model: GPT, tokenizer: ByteLevelBPETokenizer) -> tuple[GPT, ByteLevelBPETokenizer]:
    """A copy of ``model`` and a tokenizer with the role tokens and ``<|end|>`` appended as special
    tokens (ids V, V+1, …: every old id unchanged, so on old text the model computes what it did).
    Each new embedding row (the tied output row too) starts at the mean of the old rows."""
    check_args(model=(model, GPT), tokenizer=(tokenizer, ByteLevelBPETokenizer))
    if model.config.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"model has vocab_size={model.config.vocab_size} but the tokenizer has "
                         f"{tokenizer.vocab_size} tokens: pass the tokenizer the model was trained with")
    new = [t for t in (*ROLE_TOKENS.values(), END_OF_TURN) if tokenizer.token_to_id(t) is None]
    vocab = [tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size)] + new
    chat_tokenizer = ByteLevelBPETokenizer(vocab, tokenizer.merges, [*tokenizer.special_tokens, *new])
    state = model.state_dict()
    for key in ("wte.weight", "lm_head.weight"):  # (V, D) -> (V + new, D); tied: the same tensor twice
        old = state[key]
        state[key] = torch.cat([old, old.mean(0, keepdim=True).expand(len(new), -1)])
    grown = GPT(replace(model.config, vocab_size=len(vocab))).to(model.wte.weight.device)
    grown.load_state_dict(state)
    return grown.train(model.training), chat_tokenizer


def _role_ids(tokenizer: ByteLevelBPETokenizer) -> dict[str, int]:
    check_args(tokenizer=(tokenizer, ByteLevelBPETokenizer))
    ids = {role: tokenizer.token_to_id(t) for role, t in (*ROLE_TOKENS.items(), ("end", END_OF_TURN))}
    if None in ids.values():
        raise ValueError("the tokenizer has no chat tokens: make it with mlstep.add_chat_tokens(model, tokenizer)")
    return ids


def render_chat(messages: Sequence[dict], tokenizer: ByteLevelBPETokenizer,
                add_generation_prompt: bool = False) -> tuple[Tensor, Tensor]:
    """``messages`` (``{"role": "system"|"user"|"assistant", "content": str}``) → ``(input_ids,
    labels)``, both ``(T,)``: ``<|endoftext|>`` then ``<|role|> content <|end|>`` per turn, the
    content encoded after a space (so its words are the pieces they are inside a text). The
    labels equal the ids on each assistant turn's content and its ``<|end|>``, −100 elsewhere (the
    role token too: the template, not the model, decides who speaks). ``add_generation_prompt``
    appends ``<|assistant|>``, where the model's reply begins."""
    ids = _role_ids(tokenizer)
    check_args(add_generation_prompt=(add_generation_prompt, bool))
    if isinstance(messages, (str, dict)) or not is_iterable(messages) or not messages:
        raise ValueError(f"messages must be a non-empty list of {{'role': ..., 'content': ...}} dicts, got {messages!r}")
    tokens, labels = [tokenizer.eos_id], [IGNORE_INDEX]
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLE_TOKENS or not isinstance(m.get("content"), str):
            raise ValueError(f"messages[{i}] must be {{'role': 'system'|'user'|'assistant', 'content': str}}, got {m!r}")
        content = [*tokenizer.encode(" " + m["content"]).ids, ids["end"]]  # words carry their space, as in text
        tokens += [ids[m["role"]], *content]
        labels += [IGNORE_INDEX, *(content if m["role"] == "assistant" else [IGNORE_INDEX] * len(content))]
    if add_generation_prompt:
        tokens.append(ids["assistant"])
        labels.append(IGNORE_INDEX)
    elif all(m["role"] != "assistant" for m in messages):
        raise ValueError("messages have no assistant turn: nothing to learn (pass add_generation_prompt=True to prompt for one)")
    return torch.tensor(tokens), torch.tensor(labels)


def pad_chats(rendered: Sequence[tuple[Tensor, Tensor]], pad_id: int, max_length: int) -> dict[str, Tensor]:
    """Rendered conversations as one batch padded on the right: ``input_ids`` and ``labels`` ``(B, T)``
    (labels −100 on the padding). A conversation longer than ``max_length`` is an error, not cut."""
    check_int("pad_id", pad_id, 0)
    check_int("max_length", max_length)
    if isinstance(rendered, (str, dict, Tensor)) or not is_iterable(rendered) or not (rendered := list(rendered)):
        raise ValueError("rendered must be a non-empty list of (input_ids, labels) pairs from render_chat")
    for i, pair in enumerate(rendered):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and len(pair[0]) == len(pair[1])
                and all(isinstance(x, Tensor) and x.dim() == 1 and not x.dtype.is_floating_point for x in pair)):
            raise ValueError(f"rendered[{i}] must be a pair (input_ids, labels) of integer (T,) tensors of one "
                             "length, as render_chat returns")
    long = [len(ids) for ids, _ in rendered if len(ids) > max_length]
    if long:
        raise ValueError(f"{len(long)} rendered conversations are longer than max_length, the model's "
                         f"max_position={max_length} (longest {max(long)} tokens): shorten them or use a "
                         "model with more positions")
    T = max(len(ids) for ids, _ in rendered)
    input_ids = torch.stack([F.pad(ids, (0, T - len(ids)), value=pad_id) for ids, _ in rendered])  # (B, T)
    labels = torch.stack([F.pad(lab, (0, T - len(lab)), value=IGNORE_INDEX) for _, lab in rendered])  # (B, T)
    return {"input_ids": input_ids, "labels": labels}


@torch.no_grad()
def chat_reply(model: GPT, tokenizer: ByteLevelBPETokenizer, conversations: Sequence[Sequence[dict]],
               max_new_tokens: int = 16, **sampling) -> list[str]:
    """The assistant's next reply to each conversation, up to its ``<|end|>`` (batched, padded on
    the left; greedy unless ``sampling`` sets ``temperature``, ``top_k``, ``top_p``, ``generator``)."""
    check_args(model=(model, GPT))
    if unknown := set(sampling) - {"temperature", "top_k", "top_p", "generator"}:
        raise TypeError(f"the sampling options are temperature, top_k, top_p and generator, got {sorted(unknown)}")
    end = _role_ids(tokenizer)["end"]
    if isinstance(conversations, (str, dict)) or not is_iterable(conversations) or \
            not (conversations := list(conversations)) or any(isinstance(c, (str, dict)) for c in conversations):
        raise ValueError("conversations must be a non-empty list of conversations, each a list of "
                         "{'role': ..., 'content': ...} dicts (one conversation: wrap it in a list)")
    prompts = []
    for i, c in enumerate(conversations):
        try:
            prompts.append(render_chat(c, tokenizer, add_generation_prompt=True)[0].tolist())
        except ValueError as e:
            raise ValueError(f"conversations[{i}]: {e}") from None
    ids, mask = pad_left(prompts, tokenizer.pad_id)
    device = model.wte.weight.device
    out = generate(model, ids.to(device), max_new_tokens, eos_id=end, attention_mask=mask.to(device),
                   **{"temperature": 0.0, **sampling})
    replies = [row.tolist() for row in out[:, ids.shape[1]:].cpu()]  # the new tokens of each row
    return [tokenizer.decode(r[:r.index(end)] if end in r else r).strip() for r in replies]


# --- 2. log-probabilities of answers, and DPO ------------------------------------------------------

def token_logprobs(model: GPT, input_ids: Tensor, labels: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """``(B, T)``: log p(labels[t + 1] | ids ≤ t) at each position t whose next label is not −100, 0
    elsewhere (labels aligned with ``input_ids`` as in :meth:`GPT.forward`; the shift is inside)."""
    check_args(model=(model, GPT))
    check_tensor("input_ids", input_ids, dims=2, what="(batch, seq_len)")
    check_tensor("labels", labels, dims=2, what="(batch, seq_len)")
    check_shape("labels", labels, tuple(input_ids.shape), "input_ids' shape")
    check_ids("labels", labels, model.config.vocab_size, "vocab_size", ignore=IGNORE_INDEX)
    logits = model(input_ids, attention_mask=attention_mask).logits.float()  # (B, T, V)
    targets = next_token_targets(labels)  # (B, T)
    scored = targets != IGNORE_INDEX
    logp = logits.log_softmax(-1).gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1)  # (B, T)
    return logp * scored


def sequence_logprobs(model: GPT, input_ids: Tensor, labels: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """``(B,)``: Σ_t log p(label_t | tokens before t) over the positions whose label is not −100."""
    return token_logprobs(model, input_ids, labels, attention_mask).sum(-1)


def dpo_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, reference_chosen_logps: Tensor,
             reference_rejected_logps: Tensor, beta: float = 0.1) -> tuple[Tensor, Tensor, Tensor]:
    """The DPO loss ``mean(−log σ(β·((π_c − ref_c) − (π_r − ref_r))))`` from sequence log-probs
    ``(B,)``, and the implicit rewards ``β·(π − ref)`` of the chosen and rejected answers (detached)."""
    logps = dict(policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                 reference_chosen_logps=reference_chosen_logps, reference_rejected_logps=reference_rejected_logps)
    for name, x in logps.items():
        check_tensor(name, x, dims=1, floating=True, what="(batch,) sequence log-probabilities")
        check_shape(name, x, tuple(policy_chosen_logps.shape), "policy_chosen_logps' shape")
        check_finite(name, x)
    check_number("beta", beta, 0, low_open=True)
    chosen = beta * (policy_chosen_logps - reference_chosen_logps)  # (B,): implicit rewards
    rejected = beta * (policy_rejected_logps - reference_rejected_logps)
    loss = -F.logsigmoid(chosen - rejected).mean()
    return loss, chosen.detach(), rejected.detach()


def dpo_step(reference: GPT, beta: float = 0.1) -> Callable[[GPT, dict], tuple[Tensor, dict]]:
    """A ``step_fn`` for :func:`mlstep.train` on batches of ``chosen_ids``/``chosen_labels`` and
    ``rejected_ids``/``rejected_labels`` ``(B, T)``; ``reference`` is frozen (no gradient, eval mode)."""
    check_args(reference=(reference, GPT))
    check_number("beta", beta, 0, low_open=True)
    reference.eval().requires_grad_(False)
    keys = ("chosen_ids", "chosen_labels", "rejected_ids", "rejected_labels")

    def step(model: GPT, batch: dict) -> tuple[Tensor, dict]:
        check_keys("batch", batch, keys)
        check_tensor("batch['chosen_ids']", batch["chosen_ids"], dims=2, what="(batch, seq_len)")
        for key in keys[1:]:  # chosen and rejected padded alike, so that one pass scores both
            check_shape(f"batch[{key!r}]", batch[key], tuple(batch["chosen_ids"].shape), "batch['chosen_ids']' shape")
        ids = torch.cat([batch["chosen_ids"], batch["rejected_ids"]])  # (2B, T): one pass for both
        labels = torch.cat([batch["chosen_labels"], batch["rejected_labels"]])
        same = (batch["chosen_labels"] == batch["rejected_labels"]).all(-1).nonzero().flatten().tolist()
        if same:
            raise ValueError(f"batch rows {same[:5]}: the chosen and rejected answers are identical; a preference needs two")
        policy = sequence_logprobs(model, ids, labels).chunk(2)  # 2 × (B,)
        with torch.no_grad():
            ref = sequence_logprobs(reference, ids, labels).chunk(2)
        loss, chosen, rejected = dpo_loss(policy[0], policy[1], ref[0], ref[1], beta)
        return loss, {"reward_margin": (chosen - rejected).mean().item(),
                      "accuracy": (chosen > rejected).float().mean().item()}

    return step


# --- 3. RL with verifiable rewards: GRPO --------------------------------------------------------

def grpo_advantages(rewards: Tensor, group_size: int) -> Tensor:
    """``rewards (B,)`` in consecutive groups of ``group_size`` → advantages ``(B,)``:
    (r − group mean) / (group std + 1e-4), unbiased std; 0 for a group whose rewards are all equal
    (no answer better than another: nothing to learn from it)."""
    check_tensor("rewards", rewards, dims=1, what="(batch,)")
    check_finite("rewards", rewards)
    check_int("group_size", group_size)
    if len(rewards) % group_size:
        raise ValueError(f"{len(rewards)} rewards are not a whole number of groups of group_size={group_size}")
    r = rewards.float().view(-1, group_size)  # (B / G, G)
    if group_size == 1:
        return torch.zeros_like(rewards, dtype=torch.float)
    advantages = (r - r.mean(-1, keepdim=True)) / (r.std(-1, keepdim=True) + 1e-4)
    same = (r == r[:, :1]).all(-1, keepdim=True)  # (B / G, 1)
    return advantages.masked_fill(same, 0.0).view(-1)


@dataclass(frozen=True, kw_only=True)
class GRPOConfig:
    steps: int = 100  # updates; each samples a fresh batch (on-policy)
    lr: float = 1e-3  # AdamW's learning rate (no weight decay)
    prompts_per_step: int = 8  # B prompts per step, drawn without replacement within a step
    group_size: int = 8  # G answers sampled per prompt
    max_new_tokens: int = 16  # N: longest answer
    temperature: float = 1.0  # sampling temperature of the rollouts
    clip: float = 0.2  # PPO's ε: the ratio π/π_old is clipped to [1 − ε, 1 + ε]
    beta: float = 0.0  # weight of the KL penalty to the reference; 0: no penalty
    advantage: str = "group"  # "group": GRPO; "filter": rejection sampling (see grpo_train)

    def __post_init__(self) -> None:
        check_args(steps=(self.steps, "int > 0"), lr=(self.lr, "> 0"), prompts_per_step=(self.prompts_per_step, "int > 0"),
                   group_size=(self.group_size, "int > 0"), max_new_tokens=(self.max_new_tokens, "int > 0"),
                   temperature=(self.temperature, "> 0"), clip=(self.clip, "> 0"), beta=(self.beta, ">= 0"),
                   advantage=(self.advantage, ("group", "filter")))


@torch.no_grad()
def rollout(model: GPT, prompts: Sequence[Sequence[int]], config: GRPOConfig, eos_id: int, pad_id: int,
            generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """``config.group_size`` sampled answers per prompt (batched, with the KV cache): ``input_ids``,
    ``attention_mask`` and ``labels`` ``(B·G, T + N)``, labels on the answer and its ``eos_id`` only,
    and ``start``, the column where answers begin."""
    check_args(model=(model, GPT), config=(config, GRPOConfig))
    check_type("prompts", prompts, Sequence, "a list of prompts (lists of token ids)")
    V = model.config.vocab_size
    for name, i in (("eos_id", eos_id), ("pad_id", pad_id)):
        if not is_int(i, 0) or i >= V:
            raise ValueError(f"{name} must be a token id in [0, vocab_size={V}), got {i!r}")
    ids, mask = pad_left([p for p in prompts for _ in range(config.group_size)], pad_id)  # (B·G, T)
    check_ids("prompts", ids, V, "vocab_size")
    device = model.wte.weight.device
    out = generate(model, ids.to(device), config.max_new_tokens, temperature=config.temperature,
                   eos_id=eos_id, attention_mask=mask.to(device), generator=generator)  # (B·G, T + N)
    new = out[:, ids.shape[1]:]  # (B·G, N)
    ended_before = (new == eos_id).int().cumsum(-1) - (new == eos_id).int()  # eos tokens before each column
    answer = ended_before == 0  # the answer and its first eos; later columns only repeat eos
    labels = torch.cat([torch.full_like(ids, IGNORE_INDEX).to(device), new.masked_fill(~answer, IGNORE_INDEX)], 1)
    full_mask = torch.cat([mask.to(device), answer.long()], 1)
    return {"input_ids": out, "attention_mask": full_mask, "labels": labels, "start": ids.shape[1]}


def grpo_loss(logps: Tensor, old_logps: Tensor, advantages: Tensor, labels: Tensor, config: GRPOConfig,
              reference_logps: Tensor | None = None) -> Tensor:
    """The clipped policy-ratio objective, per token ``(B, T)`` log-probs, averaged over each answer's
    tokens, then over answers. With one update per rollout ``old_logps`` is ``logps`` detached, the
    ratio is 1 and the gradient is the on-policy policy gradient A·∇log π. The KL penalty is the
    per-token estimator exp(ref − π) − (ref − π) − 1 (≥ 0, unbiased)."""
    check_args(config=(config, GRPOConfig))
    check_tensor("logps", logps, dims=2, floating=True, what="(batch, seq_len) token log-probabilities")
    for name, x in (("old_logps", old_logps), ("labels", labels), ("reference_logps", reference_logps)):
        if x is not None or name != "reference_logps":
            check_shape(name, x, tuple(logps.shape), "logps' shape")
    check_shape("advantages", advantages, tuple(logps.shape[:1]), "one per answer")
    check_finite("advantages", advantages)
    scored = (next_token_targets(labels) != IGNORE_INDEX).float()  # (B, T): answer tokens
    ratio = torch.exp(logps - old_logps)
    A = advantages[:, None]  # (B, 1)
    per_token = -torch.min(ratio * A, ratio.clamp(1 - config.clip, 1 + config.clip) * A)
    if config.beta > 0:
        if reference_logps is None:
            raise ValueError("config.beta > 0 needs reference_logps")
        diff = reference_logps - logps
        per_token = per_token + config.beta * (torch.exp(diff) - diff - 1)
    return ((per_token * scored).sum(-1) / scored.sum(-1).clamp(min=1)).mean()


def grpo_train(model: GPT, prompts: Sequence[Sequence[int]], reward_fn: Callable[[list[int], dict], Tensor],
               config: GRPOConfig, *, eos_id: int, pad_id: int, seed: int = 0) -> list[float]:
    """``config.steps`` of on-policy RL on ``model`` (in place). Each step samples
    ``config.group_size`` answers to ``config.prompts_per_step`` of the ``prompts`` (token ids),
    scores them with ``reward_fn(prompt_indices, rollout_batch) -> (B·G,)`` and makes one update.
    ``config.advantage="group"``: GRPO's group-normalised advantages; ``"filter"``: rejection
    sampling (weight 1 on the answers with reward 1, 0 on the rest: fine-tuning on the model's own
    correct answers, from the same samples). Returns the mean reward of each step's samples."""
    check_args(model=(model, GPT), config=(config, GRPOConfig), reward_fn=(reward_fn, callable))
    check_type("prompts", prompts, Sequence, "a list of prompts (lists of token ids)")
    check_int("seed", seed, 0)
    if config.prompts_per_step > len(prompts):
        raise ValueError(f"prompts_per_step={config.prompts_per_step} but only {len(prompts)} prompts")
    reference = copy.deepcopy(model).eval().requires_grad_(False) if config.beta > 0 else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    g, pick = torch.Generator().manual_seed(seed), random.Random(seed)
    means = []
    for _ in range(config.steps):
        indices = pick.sample(range(len(prompts)), config.prompts_per_step)
        batch = rollout(model, [prompts[i] for i in indices], config, eos_id, pad_id, generator=g)
        rewards = reward_fn(indices, batch)  # (B·G,)
        check_shape("reward_fn's rewards", rewards, (len(batch["input_ids"]),), "one per sampled answer")
        check_finite("reward_fn's rewards", rewards)
        means.append(rewards.float().mean().item())
        if config.advantage == "group":
            advantages = grpo_advantages(rewards, config.group_size)
        else:
            advantages = (rewards == 1).float()
        args = (batch["input_ids"], batch["labels"], batch["attention_mask"])
        logps = token_logprobs(model, *args)  # (B·G, T + N)
        with torch.no_grad():
            ref = token_logprobs(reference, *args) if reference is not None else None
        loss = grpo_loss(logps, logps.detach(), advantages, batch["labels"], config, ref)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return means
