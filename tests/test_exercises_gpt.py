"""mlstep.exercises.gpt (chapter 08): each check passes the reference answers and names each
typical mistake. (tests/test_exercises.py also runs every check on garbage and unfinished answers.)"""

import pytest
import torch
import torch.nn.functional as F

from mlstep.exercises import check_next_token_loss, check_top_k_filter


def run(check, fn, capsys):
    """Run a check; return (result, the one line it printed)."""
    result = check(fn)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, lines
    return result, lines[0]


def loss(logits, labels):
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100)


def loss_by_hand(logits, labels):
    """The same loss written out: log-softmax, pick the next token's log-probability, average."""
    logp = logits[:, :-1].log_softmax(-1)  # (B, T - 1, V)
    targets = labels[:, 1:]
    keep = targets != -100
    picked = logp.gather(-1, targets.clamp(min=0)[..., None])[..., 0]  # (B, T - 1)
    return -(picked * keep).sum() / keep.sum()


def top_k(logits, k):
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_k_scatter(logits, k):
    values, indices = torch.topk(logits, k, dim=-1)
    return torch.full_like(logits, float("-inf")).scatter(-1, indices, values)


def top_k_in_place(logits, k):
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]
    logits[logits < kth] = float("-inf")
    return logits


REFERENCES = [
    (check_next_token_loss, loss),
    (check_next_token_loss, loss_by_hand),
    (check_top_k_filter, top_k),
    (check_top_k_filter, top_k_scatter),
]

CE = F.cross_entropy
WRONG = [
    (check_next_token_loss, lambda z, y: CE(z.flatten(0, 1), y.flatten(), ignore_index=-100), ["no shift"]),
    (check_next_token_loss, lambda z, y: CE(z[:, 1:].flatten(0, 1), y[:, :-1].flatten(), ignore_index=-100),
     ["wrong way round"]),
    (check_next_token_loss, lambda z, y: CE(z[:, :-1].flatten(0, 1), y[:, :-1].flatten(), ignore_index=-100),
     ["labels not shifted"]),
    (check_next_token_loss,
     lambda z, y: CE(z[:, :-1].flatten(0, 1), y[:, 1:].flatten(), ignore_index=-100, reduction="sum"),
     ["summed instead of averaged"]),
    (check_next_token_loss,
     lambda z, y: CE(z[:, :-1].flatten(0, 1), y[:, 1:].flatten(), ignore_index=-100, reduction="sum") / y[:, 1:].numel(),
     ["ignored ones (-100) included"]),
    (check_next_token_loss, lambda z, y: loss(z, y).item(), ["not a tensor", "float"]),
    (check_next_token_loss, lambda z, y: CE(z[:, :-1].flatten(0, 1), y[:, 1:].flatten(), ignore_index=-100,
                                            reduction="none"), ["shape", "one number"]),
    (check_top_k_filter, lambda z, k: z.masked_fill(z < z.topk(k + 1, -1).values[:, -1:], float("-inf")),
     ["kept k + 1 tokens"]),
    (check_top_k_filter, lambda z, k: z.masked_fill(z <= z.topk(k, -1).values[:, -1:], float("-inf")),
     ["kept k - 1 tokens"]),
    (check_top_k_filter, lambda z, k: z.masked_fill(z < z.topk(k, -1).values[:, -1:], 0.0), ["0 instead of -inf"]),
    (check_top_k_filter, lambda z, k: top_k(z, k).softmax(-1), ["returned probabilities"]),
    (check_top_k_filter,
     lambda z, k: z.masked_fill(z > z.topk(k, -1, largest=False).values[:, -1:], float("-inf")), ["SMALLEST"]),
    (check_top_k_filter, lambda z, k: z.masked_fill(z < z.topk(k, 0).values[-1:], float("-inf")), ["wrong dimension"]),
    (check_top_k_filter, lambda z, k: z.topk(k, -1).values, ["shape", "top-k values alone"]),
    (check_top_k_filter, top_k_in_place, ["in place", "`logits`"]),
    (check_top_k_filter, lambda z, k: top_k(z, k) * 2, ["keep their values"]),
]


@pytest.mark.parametrize("check, fn", REFERENCES, ids=[f"{c.__name__}-{i}" for i, (c, _) in enumerate(REFERENCES)])
def test_references_pass(check, fn, capsys):
    result, line = run(check, fn, capsys)
    assert result is True and line.startswith(f"✅ {check.__name__}: passed"), line


@pytest.mark.parametrize("check, fn, words", WRONG, ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(WRONG)])
def test_typical_mistakes_fail_with_a_specific_message(check, fn, words, capsys):
    result, line = run(check, fn, capsys)
    assert result is False and line.startswith(f"❌ {check.__name__}: ")
    for word in words:
        assert word in line, (word, line)
