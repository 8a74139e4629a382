"""Checks for chapter 11: the assistant-only mask, the DPO loss, group-normalised advantages, and an
experiment on how often a group of samples teaches GRPO nothing.

The references are :func:`mlstep.render_chat`'s labels, :func:`mlstep.dpo_loss` and
:func:`mlstep.grpo_advantages`; the typical mistakes named: the mask off by one at the turn
boundary (the role token labelled, the end token not), DPO without the reference, with the sign
flipped, β outside the sigmoid, per-token means instead of sums; advantages normalised over the
batch, with the population std, or NaN for a group whose rewards are all equal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mlstep.exercises._core import _Case, _randn, _register, _run_cases
from mlstep.exercises.experiments import _Experiment, _run_experiment
from mlstep.posttrain import dpo_loss, grpo_advantages
from mlstep.tools.runtime import IGNORE_INDEX

__all__ = ["check_assistant_labels", "check_dpo_loss", "check_group_advantages", "check_equal_group_share"]

ASSISTANT, END, USER = 7, 9, 8  # the ids of <|assistant|>, <|end|>, <|user|> in the cases below


# --- the assistant-only mask ---------------------------------------------------------------------

def _labels(ids: Tensor, *, role: bool = False, end: bool = True, first_only: bool = False) -> Tensor:
    """The ids inside assistant turns, −100 elsewhere; the keyword arguments make typical mistakes."""
    labels, inside, turns = torch.full_like(ids, IGNORE_INDEX), False, 0
    for t, token in enumerate(ids.tolist()):
        if token == ASSISTANT:
            inside, turns = not (first_only and turns), turns + 1
            if role and inside:
                labels[t] = token
            continue
        if inside and (token != END or end):
            labels[t] = token
        if token == END:
            inside = False
    return labels


def _conversation(g: torch.Generator, turns: int) -> Tensor:
    ids = [0]
    for _ in range(turns):
        for role in (USER, ASSISTANT):
            ids += [role, *torch.randint(10, 40, (int(torch.randint(1, 5, (1,), generator=g)),), generator=g).tolist(), END]
    return torch.tensor(ids)


@_register
def check_assistant_labels(fn: Callable[..., Any]) -> tuple[bool, str]:
    """``fn(input_ids (T,))`` → labels ``(T,)``: the ids of every assistant turn's content and its
    ``<|end|>`` (id 9), −100 elsewhere; ``<|assistant|>`` is id 7, ``<|user|>`` id 8."""
    g = torch.Generator().manual_seed(1100)
    cases = []
    for turns in (1, 2, 3):
        ids = _conversation(g, turns)
        wrong = (("the <|assistant|> token is labelled: the template, not the model, writes it (off by one "
                  "at the turn boundary)", _labels(ids, role=True)),
                 ("the <|end|> token is not labelled: then the model never learns to stop", _labels(ids, end=False)),
                 ("only the first assistant turn is labelled: every assistant turn is", _labels(ids, first_only=True)),
                 ("every token is labelled: the loss would teach the model to write the user's turns too", ids.clone()),
                 ("the labels are shifted by one: label the token itself (GPT.forward shifts inside)",
                  torch.cat([_labels(ids)[1:], torch.tensor([IGNORE_INDEX])])))
        cases.append(_Case((ids.clone(),), _labels(ids), f"{turns} turn(s), {len(ids)} tokens", ("input_ids",), wrong))
    return _run_cases(fn, cases)


# --- the DPO loss --------------------------------------------------------------------------------

def _dpo_variants(pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor, beta: float) -> tuple:
    s = [x.sum(-1) for x in (pc, pr, rc, rr)]
    m = [x.mean(-1) for x in (pc, pr, rc, rr)]
    return (("no reference model: subtract the reference's log-probabilities (π − π_ref) of each answer",
             -F.logsigmoid(beta * (s[0] - s[1])).mean()),
            ("the sign is flipped: the loss must fall as the chosen answer gains on the rejected one",
             -F.logsigmoid(-beta * ((s[0] - s[2]) - (s[1] - s[3]))).mean()),
            ("β is outside the sigmoid: it scales the margin inside it, −log σ(β · margin)",
             -beta * F.logsigmoid((s[0] - s[2]) - (s[1] - s[3])).mean()),
            ("per-token means: a sequence's log-probability is the SUM of its tokens' log-probabilities",
             dpo_loss(*m, beta=beta)[0]))


@_register
def check_dpo_loss(fn: Callable[..., Any]) -> tuple[bool, str]:
    """``fn(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta)`` with
    per-token log-probabilities ``(B, T)`` (0 outside the answers) → the DPO loss (a scalar)."""
    g = torch.Generator().manual_seed(1101)
    cases = []
    for B, T, beta in ((4, 6, 0.1), (3, 9, 0.5), (8, 5, 1.0)):
        tokens = [-_randn(g, B, T).abs() for _ in range(4)]
        for x in tokens:
            x[:, T - 2:] = 0.0  # shorter answers: the padding contributes nothing
        expected = dpo_loss(*(x.sum(-1) for x in tokens), beta=beta)[0]
        cases.append(_Case((*[x.clone() for x in tokens], beta), expected, f"B={B}, T={T}, beta={beta}",
                           ("policy_chosen", "policy_rejected", "reference_chosen", "reference_rejected", "beta"),
                           _dpo_variants(*tokens, beta)))
    return _run_cases(fn, cases, shape_hint=lambda case, shape: "return one number, the mean over the pairs" if shape else None)


# --- group-normalised advantages -----------------------------------------------------------------

@_register
def check_group_advantages(fn: Callable[..., Any]) -> tuple[bool, str]:
    """``fn(rewards (B,), group_size)`` → advantages ``(B,)``: within each consecutive group,
    (r − mean) / (std + 1e-4) with the unbiased std, and 0 for a group whose rewards are all equal."""
    g = torch.Generator().manual_seed(1102)
    cases = []
    for groups, G in ((3, 4), (2, 8), (4, 2)):
        rewards = torch.randint(0, 2, (groups, G), generator=g).float()
        rewards[0] = 1.0  # one group all correct: no answer is better than another
        rewards = rewards.flatten()
        r = rewards.view(-1, G)
        wrong = (("a group whose rewards are all equal must give 0, not NaN: add 1e-4 to the std, or set those to 0",
                  ((r - r.mean(-1, keepdim=True)) / r.std(-1, keepdim=True)).flatten()),
                 ("normalised over the whole batch: each group is normalised on its own (its own mean and std)",
                  (rewards - rewards.mean()) / (rewards.std() + 1e-4)),
                 ("the population std (unbiased=False): use torch.std's default, the unbiased one",
                  ((r - r.mean(-1, keepdim=True)) / (r.std(-1, keepdim=True, unbiased=False) + 1e-4)).flatten()),
                 ("the groups are taken across the batch: a group is group_size CONSECUTIVE rewards (view(-1, G))",
                  grpo_advantages(rewards.view(G, -1).t().flatten(), G).view(-1, G).t().flatten()))
        cases.append(_Case((rewards.clone(), G), grpo_advantages(rewards, G), f"{groups} groups of {G}",
                           ("rewards", "group_size"), wrong))
    return _run_cases(fn, cases)


# --- the experiment: how often does a group teach nothing? --------------------------------------

def _equal_group_share(p: float, group_size: int, n_groups: int, generator: torch.Generator,
                       *, correct_only: bool = False) -> float:
    rewards = (torch.rand(n_groups, group_size, generator=generator) < p).float()
    all_right = (rewards == 1).all(-1)
    same = all_right if correct_only else all_right | (rewards == 0).all(-1)
    return same.float().mean().item()


def _share_case(p: float, G: int) -> Callable[[], tuple]:
    return lambda: (p, G, 4000, torch.Generator().manual_seed(int(p * 100) + G))


_EQUAL_GROUPS = _Experiment(
    cases=((_share_case(0.5, 8), "p = 0.5, G = 8"), (_share_case(0.9, 8), "p = 0.9, G = 8"),
           (_share_case(0.9, 16), "p = 0.9, G = 16"), (_share_case(0.1, 4), "p = 0.1, G = 4")),
    reference=_equal_group_share,
    variants=(("you counted only the groups that are all correct: an all-wrong group teaches nothing either",
               lambda *a: _equal_group_share(*a, correct_only=True)),),
    tolerance=0.03, key=1, stated=(0.40, 0.46),
    lesson="0.9⁸ + 0.1⁸ ≈ 0.43: at 90 % accuracy almost half of the groups are all correct, their "
           "advantages are all 0 and a GRPO step learns from the rest only; larger groups help (0.9¹⁶ ≈ 0.19)",
)


@_register
def check_equal_group_share(fn: Callable[..., Any], prediction: Any = None) -> tuple[bool, str]:
    """``fn(p, group_size, n_groups, generator)``: the share of groups of ``group_size`` rewards, each
    1 with probability ``p`` (drawn as ``torch.rand(n_groups, group_size, generator=generator) < p``),
    whose rewards are all equal."""
    return _run_experiment(fn, _EQUAL_GROUPS, prediction)
