"""mlstep.exercises.posttrain (chapter 11): each check passes answers written out by hand and names
each typical mistake. (tests/test_exercises.py also runs every check on garbage and unfinished answers.)"""

import torch
import torch.nn.functional as F

from mlstep.exercises import (
    check_assistant_labels,
    check_dpo_loss,
    check_equal_group_share,
    check_group_advantages,
)


def run(check, fn, capsys, **options):
    result = check(fn, **options)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, lines
    return result, lines[0]


def labels_by_hand(ids, *, role=False, end=True):
    """Walk the tokens: inside an assistant turn (after id 7, up to id 9) keep the id."""
    out, inside = [], False
    for token in ids.tolist():
        if token == 7:
            inside = True
            out.append(token if role else -100)
        elif inside:
            out.append(token if token != 9 or end else -100)
            inside = token != 9
        else:
            out.append(-100)
    return torch.tensor(out)


def dpo_by_hand(pc, pr, rc, rr, beta, reduce="sum"):
    seq = [getattr(x, reduce)(-1) for x in (pc, pr, rc, rr)]
    margin = (seq[0] - seq[2]) - (seq[1] - seq[3])
    return -F.logsigmoid(beta * margin).mean()


def advantages_by_hand(rewards, G, eps=1e-4, unbiased=True):
    out = []
    for group in rewards.view(-1, G):
        if (group == group[0]).all():
            out += [0.0] * G
        else:
            out += ((group - group.mean()) / (group.std(unbiased=unbiased) + eps)).tolist()
    return torch.tensor(out)


def test_assistant_labels(capsys):
    assert run(check_assistant_labels, labels_by_hand, capsys)[0]
    ok, line = run(check_assistant_labels, lambda ids: labels_by_hand(ids, role=True), capsys)
    assert not ok and "off by one" in line
    ok, line = run(check_assistant_labels, lambda ids: labels_by_hand(ids, end=False), capsys)
    assert not ok and "never learns to stop" in line
    ok, line = run(check_assistant_labels, lambda ids: ids.clone(), capsys)
    assert not ok and "every token" in line


def test_dpo_loss(capsys):
    assert run(check_dpo_loss, dpo_by_hand, capsys)[0]
    ok, line = run(check_dpo_loss, lambda *a: dpo_by_hand(*a, reduce="mean"), capsys)
    assert not ok and "SUM" in line
    ok, line = run(check_dpo_loss, lambda pc, pr, rc, rr, b: -F.logsigmoid(b * (pc.sum(-1) - pr.sum(-1))).mean(), capsys)
    assert not ok and "reference" in line
    ok, line = run(check_dpo_loss, lambda pc, pr, rc, rr, b: dpo_by_hand(pr, pc, rr, rc, b), capsys)
    assert not ok and "sign" in line
    ok, line = run(check_dpo_loss, lambda pc, pr, rc, rr, b: -b * F.logsigmoid(
        (pc.sum(-1) - rc.sum(-1)) - (pr.sum(-1) - rr.sum(-1))).mean(), capsys)
    assert not ok and "outside the sigmoid" in line


def test_group_advantages(capsys):
    assert run(check_group_advantages, advantages_by_hand, capsys)[0]
    ok, line = run(check_group_advantages, lambda r, G: advantages_by_hand(r, G, unbiased=False), capsys)
    assert not ok and "population" in line
    ok, line = run(check_group_advantages, lambda r, G: (r - r.mean()) / (r.std() + 1e-4), capsys)
    assert not ok and "whole batch" in line
    ok, line = run(check_group_advantages, lambda r, G: ((r.view(-1, G) - r.view(-1, G).mean(-1, keepdim=True))
                                                         / r.view(-1, G).std(-1, keepdim=True)).flatten(), capsys)
    assert not ok and "NaN" in line


def equal_share(p, G, n, generator):
    rewards = (torch.rand(n, G, generator=generator) < p).float()
    return (rewards.min(-1).values == rewards.max(-1).values).float().mean().item()


def test_equal_group_share(capsys):
    ok, line = run(check_equal_group_share, equal_share, capsys, prediction=0.43)
    assert ok and "inside" in line and "0.4 to 0.46" in line
    ok, line = run(check_equal_group_share, lambda p, G, n, g: (torch.rand(n, G, generator=g) < p).all(-1).float().mean().item(),
                   capsys)
    assert not ok and "all-wrong" in line
