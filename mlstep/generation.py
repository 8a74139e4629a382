"""Generating text with a GPT, one token at a time::

    prompt → logits of the last position → ÷ temperature → top-k / top-p → sample → append → repeat

* **temperature** divides the logits before the softmax: below 1 it sharpens the distribution
  (0 = always the most likely token, *greedy*), above 1 it flattens it towards uniform.
* **top-k** keeps the k most likely tokens; **top-p** (nucleus) keeps the smallest set of most
  likely tokens whose probability reaches p. Both cut off the long tail of unlikely tokens, where
  a sampled mistake would derail the rest of the text.
* **the KV cache**: without it, every step runs the model over the whole sequence so far, although
  the keys and values of the earlier positions cannot change (causal attention: a position never
  sees the ones after it). With it, each attention layer keeps them, and a step runs the model on
  the one new token: N new tokens cost N one-token steps instead of N growing passes.

Prompts of different lengths are padded on the *left* (:func:`pad_left`), so that every row's next
token goes in the same column; the ``attention_mask`` keeps the padding out of attention and out of
the position count.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mlstep.gpt import GPT
from mlstep.tools.checks import check_args, check_id_list, check_int, check_sampling, check_tensor
from mlstep.tools.runtime import eval_mode

__all__ = ["filter_logits", "sample_next", "generate", "pad_left"]


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """``logits (B, V)`` with −inf outside the sampling set: the ``top_k`` most likely tokens, then
    the smallest set of most likely tokens whose probability reaches ``top_p``."""
    check_sampling(logits, 1.0, top_k, top_p, None)
    return _filter(logits, top_k, top_p)


def _filter(logits: Tensor, top_k: int | None, top_p: float | None) -> Tensor:
    if top_k is not None:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]  # (B, 1): the k-th largest
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        probs, order = logits.softmax(dim=-1).sort(dim=-1, descending=True)  # (B, V), most likely first
        outside = probs.cumsum(dim=-1) - probs >= top_p  # the more likely tokens already reach p
        outside = torch.zeros_like(outside).scatter(-1, order, outside)  # back to vocabulary order
        logits = logits.masked_fill(outside, float("-inf"))
    return logits


def sample_next(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> Tensor:
    """One token id per row of ``logits (B, V)``: ``(B,)``, the argmax when ``temperature == 0``."""
    check_sampling(logits, temperature, top_k, top_p, generator)
    return _draw(logits, temperature, top_k, top_p, generator)


def _draw(logits: Tensor, temperature: float, top_k: int | None, top_p: float | None,
          generator: torch.Generator | None) -> Tensor:
    """:func:`sample_next` without its checks: the sampling loop checks the request once."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = _filter(logits / temperature, top_k, top_p).softmax(dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def pad_left(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Prompts of different lengths as one batch ``(input_ids, attention_mask)``, both ``(B, T)``,
    padded on the left with ``pad_id`` (mask 0) so that they all end in the last column."""
    if isinstance(prompts, str) or not prompts or not all(prompts := [check_id_list("prompts", p) for p in prompts]):
        raise ValueError(f"prompts must be a non-empty list of non-empty lists of token ids, got {prompts!r}")
    check_int("pad_id", pad_id, 0)
    T = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (T - len(p)) + list(p) for p in prompts], dtype=torch.long)
    mask = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in prompts], dtype=torch.long)
    return ids, mask


@torch.no_grad()
def generate(model: GPT, input_ids: Tensor, max_new_tokens: int, *, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, eos_id: int | None = None,
             use_cache: bool = True, generator: torch.Generator | None = None,
             attention_mask: Tensor | None = None) -> Tensor:
    """Continue each prompt of ``input_ids (B, T)`` (or one prompt ``(T,)``) by up to
    ``max_new_tokens`` tokens; returns the prompts and the new tokens, ``(B, T + N)`` (or ``(T + N,)``).

    ``temperature`` 0 is greedy decoding; ``top_k`` / ``top_p`` restrict sampling (see the module
    docstring); ``generator`` makes sampling reproducible. A row that produces ``eos_id`` is filled
    with ``eos_id`` after it, and generation stops when every row has produced it.
    ``attention_mask (B, T)`` marks left padding (:func:`pad_left`). ``use_cache=False`` reruns the
    whole sequence at every step: the same tokens, slower.
    """
    check_tensor("input_ids", input_ids, dims=(1, 2), what="(batch, seq_len) or one prompt (seq_len,)")
    single = input_ids.dim() == 1
    ids = input_ids[None] if single else input_ids  # (B, T)
    mask = attention_mask[None] if single and attention_mask is not None else attention_mask
    _check_request(model, ids, max_new_tokens, (temperature, top_k, top_p), eos_id, generator)
    with eval_mode(model):
        ids = _decode(model, ids, mask, max_new_tokens, (temperature, top_k, top_p), eos_id, use_cache, generator)
    return ids[0] if single else ids


def _check_request(model: GPT, ids: Tensor, max_new_tokens: int, sampling: tuple, eos_id: int | None,
                   generator: torch.Generator | None) -> None:
    """Refuse what :func:`generate` cannot do, naming the argument."""
    check_args(model=(model, GPT), max_new_tokens=(max_new_tokens, "int > 0"))
    if ids.shape[1] + max_new_tokens > model.config.max_position:
        raise ValueError(f"prompt length {ids.shape[1]} + max_new_tokens {max_new_tokens} exceeds max_position={model.config.max_position}")
    check_sampling(None, *sampling, generator)
    if eos_id is not None:
        check_id_list("eos_id", [eos_id], model.config.vocab_size, "vocab_size")


def _decode(model: GPT, ids: Tensor, mask: Tensor | None, max_new_tokens: int, sampling: tuple,
            eos_id: int | None, use_cache: bool, generator: torch.Generator | None) -> Tensor:
    """The sampling loop: one token per step for every row, ``(B, T)`` → ``(B, T + N)``. With the
    cache, each step feeds only the newest token: the keys and values before it are kept."""
    caches = [{} for _ in model.decoder.layers] if use_cache else None
    step_ids, done = ids, torch.zeros(len(ids), dtype=torch.bool, device=ids.device)  # (B,)
    for _ in range(max_new_tokens):
        logits = model(step_ids, attention_mask=mask, caches=caches).logits[:, -1]  # (B, V): the next token
        token = _draw(logits.float(), *sampling, generator)  # (B,): the request was checked once
        if eos_id is not None:
            token = token.masked_fill(done, eos_id)  # finished rows keep emitting eos
            done |= token == eos_id
        ids = torch.cat([ids, token[:, None]], dim=1)  # (B, T + 1)
        if mask is not None:
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        step_ids = token[:, None] if use_cache else ids  # the cache holds everything before
        if done.all():
            break
    return ids
