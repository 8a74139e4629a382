"""Checks for chapter 04: BERT's MLM masking and the MLM loss.

Masking is random, so that check cannot compare with one reference output: it checks exact
invariants (labels, specials, untouched positions, the input left alone, reproducibility from the
seed) and the rates on enough draws that a correct answer is inside the tolerances by more than 6
standard deviations. The MLM loss is compared exactly with :func:`mlstep.mlm_loss`. Shapes follow
the package legend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mlstep.bert import mlm_loss
from mlstep.exercises._core import (
    _call,
    _Case,
    _passed,
    _randn,
    _register,
    _run_cases,
    _shape_str,
)
from mlstep.tools.runtime import IGNORE_INDEX

__all__ = ["check_mask_tokens", "check_mlm_loss"]


# --- MLM masking ---------------------------------------------------------------------------------

def _masking_batch(g: torch.Generator, B: int, T: int, vocab_size: int, specials: dict[str, int]) -> Tensor:
    """``(B, T)`` ids like a real batch: [CLS] text [SEP] [PAD]..., with a few [UNK] in the text."""
    normal = torch.tensor([i for i in range(vocab_size) if i not in specials.values()])  # (K,)
    ids = normal[torch.randint(len(normal), (B, T), generator=g)]  # (B, T) ordinary tokens
    ids[torch.rand(B, T, generator=g) < 0.01] = specials["unk"]
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)  # real length of each row, >= T/2
    pos = torch.arange(T).expand(B, T)  # (B, T)
    ids[pos >= lengths[:, None]] = specials["pad"]
    ids[:, 0] = specials["cls"]
    ids[torch.arange(B), lengths - 1] = specials["sep"]
    return ids


def _fraction(part: Tensor, whole: Tensor) -> float:
    return float(part.sum()) / max(1, int(whole.sum()))


def _masking_invariants(ids: Tensor, inputs: Tensor, labels: Tensor, vocab_size: int, mask_id: int,
                        special_ids: list[int]) -> str | None:
    """What is wrong with ``(inputs, labels)`` whatever the random draws were, or None."""
    special = torch.isin(ids, torch.tensor(special_ids))  # (B, T)
    chosen = labels != IGNORE_INDEX  # (B, T)
    if not chosen.any():
        return ("no label is set: chosen positions need label = their original id (-100 only where "
                "not chosen)")
    if torch.equal(labels, ids) or torch.equal(chosen, ~special):
        return ("labels set for every token: the loss must only see the chosen ~15 %, so set the "
                f"label to {IGNORE_INDEX} wherever the token was not chosen")
    if not (labels == IGNORE_INDEX).any() and (labels == 0).any():
        return (f"unchosen labels are 0, not {IGNORE_INDEX}: 0 is a real token id; use {IGNORE_INDEX}, "
                "the value F.cross_entropy ignores")
    changed = ~chosen & (inputs != ids)  # (B, T) corrupted without a label
    if (chosen & special).any() or (changed & special).any() and not (changed & ~special).any():
        where = tuple(int(i) for i in ((chosen | changed) & special).nonzero()[0])
        return (f"masking specials: the special token {int(ids[where])} at {where} was chosen or "
                "changed; [CLS], [SEP], [PAD], ... (special_ids) must never be chosen")
    wrong_label = chosen & (labels != ids)
    if wrong_label.any():
        where = tuple(int(i) for i in wrong_label.nonzero()[0])
        if torch.equal(labels[chosen], inputs[chosen]):
            return ("labels hold the corrupted inputs ([MASK], random tokens): the label of a chosen "
                    f"position is its ORIGINAL id (e.g. at {where}: {int(ids[where])}, not {int(labels[where])})")
        return f"label at {where} is {int(labels[where])}, expected -100 or the original id {int(ids[where])}"
    if changed.any():
        where = tuple(int(i) for i in (changed & ~special).nonzero()[0])
        return (f"the input at {where} changed ({int(ids[where])} -> {int(inputs[where])}) but its label is "
                f"{IGNORE_INDEX}: every [MASK]ed or randomised position must be chosen and labelled; "
                "positions not chosen (and special tokens) stay as they were")
    if inputs.min() < 0 or inputs.max() >= vocab_size:
        return (f"inputs must be token ids in [0, {vocab_size}), found values in "
                f"[{int(inputs.min())}, {int(inputs.max())}]")
    return None


def _masking_rates(ids: Tensor, inputs: Tensor, labels: Tensor, mask_id: int, special_ids: list[int]) -> str | None:
    """What is wrong with the rates (15 % chosen; 80 % [MASK] / 10 % random / 10 % unchanged), or None."""
    maskable = ~torch.isin(ids, torch.tensor(special_ids))  # (B, T)
    chosen = labels != IGNORE_INDEX  # (B, T)
    masked = chosen & (inputs == mask_id)
    randomised = chosen & (inputs != mask_id) & (inputs != ids)
    kept = chosen & (inputs == ids)
    rate = _fraction(chosen, maskable)
    f_mask, f_rand, f_keep = (_fraction(x, chosen) for x in (masked, randomised, kept))
    split = (f"among your chosen tokens {f_mask:.1%} became [MASK], {f_rand:.1%} a random token, "
             f"{f_keep:.1%} stayed unchanged")
    if f_mask > 0.97:
        return ("every chosen token became [MASK]: BERT replaces 80 % of the chosen tokens with [MASK], "
                "10 % with a random token and leaves 10 % unchanged (80/10/10)")
    if abs(_fraction(masked, maskable) - 0.15) < 0.01 and rate > 0.17:
        return (f"15 % [MASK] tokens instead of 15 % chosen: {rate:.1%} of the tokens have a label; "
                "choose 15 %, THEN turn 80 % of those into [MASK] (so 12 % of all tokens are [MASK])")
    if abs(rate - 0.15) > 0.01:
        hint = ("; the 10 % left unchanged must still get their labels" if 0.125 < rate < 0.14
                and f_keep < 0.02 else "")
        return (f"wrong rate: {rate:.1%} of the maskable tokens are chosen (have a label); expected "
                f"15 %{hint}")
    if f_rand < 0.05 and f_keep < 0.05:
        return f"no random/unchanged 10 %-10 %: {split}; expected 80 % / 10 % / 10 %"
    if f_rand < 0.05:
        return f"no random replacements: {split}; 10 % of the chosen must become a random token id"
    if f_keep < 0.05:
        return f"no unchanged 10 %: {split}; 10 % of the chosen must keep their original token (still labelled)"
    if abs(f_mask - 0.8) > 0.025 or abs(f_rand - 0.1) > 0.02 or abs(f_keep - 0.1) > 0.02:
        return f"wrong 80/10/10 split: {split}; expected 80 % / 10 % / 10 %"
    n_random = int(randomised.sum())
    distinct = inputs[randomised].unique().numel()
    if distinct < min(100, n_random // 4):
        return (f"random replacements are not random: {n_random} randomised tokens use only {distinct} "
                "different ids; draw each one uniformly, e.g. torch.randint(vocab_size, ..., generator=generator)")
    return None


def _as_pair(result: Any, ids: Tensor) -> tuple[Tensor, Tensor] | str:
    """``(inputs, labels)`` out of the learner's result, or a message saying why not."""
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        what = f"a {type(result).__name__}" + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
        return f"expected a tuple (inputs, labels), got {what}"
    for name, x in zip(("inputs", "labels"), result, strict=True):
        if not isinstance(x, Tensor):
            return f"{name} is not a tensor: got {type(x).__name__}"
        if x.shape != ids.shape:
            return f"{name} has shape {_shape_str(x)}, expected the shape of input_ids {_shape_str(ids)}"
        if x.dtype != torch.long:
            return f"{name} has dtype {x.dtype}, expected torch.long (token ids; F.cross_entropy wants long labels)"
    return result[0].detach().cpu(), result[1].detach().cpu()


@_register
def check_mask_tokens(fn: Callable[..., Any]) -> tuple[bool, str]:
    """Check ``fn(input_ids, vocab_size, mask_id, special_ids, generator) -> (inputs, labels)``.

    BERT's masking: choose 15 % of the non-special tokens; labels = the original id there and
    -100 elsewhere; of the chosen, 80 % become ``mask_id``, 10 % a random id, 10 % stay. Every
    random draw must come from ``generator``. Checked: the invariants on two batches, the rates
    on ~60 000 tokens, reproducibility from the generator's seed, the input left unmodified.

    Returns:
        True if every case passes (a ✅/❌ line is printed either way).
    """
    g = torch.Generator().manual_seed(505)
    specials_big = dict(pad=0, unk=1, cls=2, sep=3, mask=4)
    specials_small = dict(pad=0, unk=1, cls=2, sep=3, mask=29)  # [MASK] as the last id
    cases = [  # (ids, vocab_size, specials, seed, check the rates)
        (_masking_batch(g, 200, 320, 1000, specials_big), 1000, specials_big, 11, True),
        (_masking_batch(g, 6, 40, 30, specials_small), 30, specials_small, 12, False),
    ]
    n = len(cases)
    # No RNG reset between the calls: an answer drawing from the global RNG must differ between them.
    for i, (ids, vocab_size, specials, seed, rates) in enumerate(cases, start=1):
        mask_id, special_ids = specials["mask"], sorted(specials.values())
        where = (f"(case {i}/{n}: input_ids {_shape_str(ids)}, vocab_size {vocab_size}, mask_id "
                 f"{mask_id}, special_ids {special_ids})")
        results = []
        for _ in range(2):  # twice with the same seed: the answers must be equal
            gen = torch.Generator().manual_seed(seed)
            before = gen.get_state()
            given = ids.clone()
            result, err = _call(fn, given, vocab_size, mask_id, list(special_ids), gen)
            if err:
                return False, f"{err} {where}"
            if not torch.equal(given, ids):
                return False, (f"your function changed input_ids in place; clone it first "
                               f"(inputs = input_ids.clone()) {where}")
            pair = _as_pair(result, ids)
            if isinstance(pair, str):
                return False, f"{pair} {where}"
            if torch.equal(gen.get_state(), before):
                return False, (f"your function did not draw from `generator`: pass it to every random "
                               f"call, e.g. torch.rand(shape, generator=generator) {where}")
            results.append(pair)
        (inputs, labels), (inputs2, labels2) = results
        if not (torch.equal(inputs, inputs2) and torch.equal(labels, labels2)):
            return False, (f"not reproducible: two calls with generators seeded alike gave different "
                           f"masks; draw every random number from `generator`, not the global RNG {where}")
        problem = _masking_invariants(ids, inputs, labels, vocab_size, mask_id, special_ids)
        if problem is None and rates:
            problem = _masking_rates(ids, inputs, labels, mask_id, special_ids)
        if problem:
            return False, f"{problem} {where}"
    return True, _passed(n)


# --- MLM loss ------------------------------------------------------------------------------------

def _ce_sum(logits: Tensor, labels: Tensor) -> Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="sum")


def _wrong_mlm_losses(logits: Tensor, labels: Tensor) -> list[tuple[str, Tensor]]:
    """The MLM loss as the typical mistakes compute it (deliberately wrong)."""
    B, T, V = logits.shape
    flat, y = logits.reshape(-1, V), labels.reshape(-1)  # (B·T, V), (B·T,)
    chosen = labels != IGNORE_INDEX  # (B, T)
    per_seq = torch.stack([F.cross_entropy(logits[b][chosen[b]], labels[b][chosen[b]]) for b in range(B)])
    return [
        ("averaged over all B·T positions: divide by the number of LABELLED positions (labels != -100), "
         "not by B·T", _ce_sum(logits, labels) / (B * T)),
        ("treated -100 as class 0: unlabelled positions must be ignored (ignore_index=-100), not scored "
         "as token 0", F.cross_entropy(flat, y.clamp(min=0))),
        ("summed instead of mean: average over the labelled positions (reduction='mean')", _ce_sum(logits, labels)),
        ("softmax applied twice: F.cross_entropy takes raw logits (it applies log_softmax itself); you "
         "passed probabilities", F.cross_entropy(flat.softmax(-1), y)),
        ("used probabilities instead of log-probabilities: F.nll_loss needs log_softmax(logits), or use "
         "F.cross_entropy on the logits", F.nll_loss(flat.softmax(-1), y)),
        ("used the logits as log-probabilities: F.nll_loss needs log_softmax(logits) (F.cross_entropy "
         "does that for you)", F.nll_loss(flat, y)),
        ("averaged per sequence, then over the batch: the mean must be over ALL labelled positions of "
         "the batch at once", per_seq.mean()),
    ]


@_register
def check_mlm_loss(fn: Callable[..., Any]) -> tuple[bool, str]:
    """Check ``fn(logits (B, T, V), labels (B, T)) -> scalar``: mean cross-entropy over labelled positions.

    Positions with label -100 are ignored. The reference is :func:`mlstep.mlm_loss` (which is
    ``F.cross_entropy(logits.view(-1, V), labels.view(-1), ignore_index=-100)``).

    Returns:
        True if every case matches (a ✅/❌ line is printed either way).
    """
    g = torch.Generator().manual_seed(606)
    cases = []
    for B, T, V, dtype in ((2, 7, 11, torch.float32), (3, 5, 6, torch.float64), (4, 9, 20, torch.float32)):
        logits = (_randn(g, B, T, V, dtype=dtype) * 2).requires_grad_(True)  # (B, T, V)
        labels = torch.randint(1, V, (B, T), generator=g)  # (B, T)
        chosen = torch.rand(B, T, generator=g) < 0.3
        chosen[:, 0] = chosen[0, 1] = True  # a label in every sequence, one of them class 0
        chosen[-1, -1] = False  # and at least one position without a label
        labels[0, 0] = 0
        labels = labels.masked_fill(~chosen, IGNORE_INDEX)
        with torch.no_grad():
            expected = mlm_loss(logits, labels)
            wrong = tuple(_wrong_mlm_losses(logits, labels))
        label = f"{'float64 ' if dtype == torch.float64 else ''}logits {_shape_str(logits)}, {int(chosen.sum())} labelled"
        cases.append(_Case((logits, labels), expected, label, ("logits", "labels"), wrong))

    def output(result: Any) -> Any:
        if isinstance(result, Tensor) and not result.requires_grad:
            raise ValueError("your loss has no gradient (requires_grad is False): compute it with torch "
                             "operations on the logits, without .item(), .detach() or torch.tensor(...)")
        return result

    def shape_hint(case: _Case, shape: tuple) -> str | None:
        B, T = case.args[1].shape
        if shape in ((B, T), (B * T,)):
            return "that is one loss per position (reduction='none'?); average the labelled ones to a scalar"
        if shape == (1,):
            return "return a 0-d scalar (e.g. .mean(), or .squeeze())"
        return None

    def error_hint(case: _Case, err: str) -> str | None:
        if "Expected target size" in err or "expected target size" in err.lower():
            return "F.cross_entropy wants classes in dim 1: flatten to logits.view(-1, V) and labels.view(-1)"
        if "out of bounds" in err or "-100" in err:
            return "labels contain -100 (= ignore): pass ignore_index=-100, or select the labelled positions first"
        return None

    return _run_cases(fn, cases, output=output, shape_hint=shape_hint, error_hint=error_hint)


