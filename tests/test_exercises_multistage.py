"""Chapter 09's checks: reference answers pass, typical mistakes fail with a diagnosis."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mlstep.exercises import check_layerwise_loss, check_magnitude_mask
from mlstep.multistage.layerwise import layerwise_loss
from mlstep.multistage.prune import magnitude_masks

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def run(check, *args, capsys, **options):
    result = check(*args, **options)
    return result, capsys.readouterr().out.strip()


def weighted(z, y, a):
    return sum(w * F.cross_entropy(logits, y) for w, logits in zip(a, z))


def mask_ok(w, amount):
    return magnitude_masks({"w": w}, amount)["w"]


def mask_by_sort(w, amount):
    k = round(amount * w.numel())
    mask = torch.ones(w.numel())
    mask[w.abs().flatten().argsort()[:k]] = 0
    return mask.view_as(w)


@pytest.mark.parametrize("fn", [weighted, lambda z, y, a: layerwise_loss(z, y, a)[0],
                                lambda z, y, a: (a * F.cross_entropy(z.transpose(1, 2), y.expand(len(z), -1),
                                                                     reduction="none").mean(1)).sum()])
def test_layerwise_loss_references_pass(fn, capsys):
    result, line = run(check_layerwise_loss, fn, capsys=capsys)
    assert result is True, line
    assert line == "✅ check_layerwise_loss: passed (3 cases)"


@pytest.mark.parametrize("fn, words", [
    (lambda z, y, a: sum(F.cross_entropy(logits, y) for logits in z), ["weights α are ignored"]),
    (lambda z, y, a: torch.stack([F.cross_entropy(logits, y) for logits in z]).mean(), ["averaged"]),
    (lambda z, y, a: weighted(z, y, a) / a.sum(), ["divided by Σ α"]),
    (lambda z, y, a: a[-1] * F.cross_entropy(z[-1], y), ["only the last layer"]),
    (lambda z, y, a: sum(w * F.cross_entropy(logits, y, reduction="sum") for w, logits in zip(a, z)),
     ["summed over the batch"]),
    (lambda z, y, a: weighted(z.softmax(-1), y, a), ["softmax applied before"]),
    (lambda z, y, a: weighted(z, y, a.flip(0)), ["reverse order"]),
    (lambda z, y, a: torch.stack([w * F.cross_entropy(logits, y) for w, logits in zip(a, z)]), ["one loss per layer"]),
    (lambda z, y, a: (weighted(z, y, a), None), ["not a tuple"]),
    (lambda z, y, a: weighted(z.detach(), y, a), ["no gradient"]),
])
def test_layerwise_loss_mistakes_are_named(fn, words, capsys):
    result, line = run(check_layerwise_loss, fn, capsys=capsys)
    assert result is False and line.startswith("❌ check_layerwise_loss: ")
    for word in words:
        assert word in line, (word, line)


@pytest.mark.parametrize("fn", [mask_ok, mask_by_sort])
def test_magnitude_mask_passes_the_reference(fn, capsys):
    result, line = run(check_magnitude_mask, fn, capsys=capsys)
    assert result is True and line == "✅ check_magnitude_mask: passed (4 cases)", line


def zeros_at(w, index):
    mask = torch.ones(w.numel())
    mask[index] = 0
    return mask.view_as(w)


@pytest.mark.parametrize("fn, words", [
    (lambda w, a: 1 - mask_ok(w, a), ["inverted"]),
    (lambda w, a: zeros_at(w, w.abs().flatten().topk(round(a * w.numel())).indices), ["LARGEST"]),
    (lambda w, a: zeros_at(w, (-w).flatten().topk(round(a * w.numel())).indices), ["signed value"]),
    (lambda w, a: zeros_at(w, w.abs().flatten().argsort()[: int(a * w.numel())]), ["int() truncates"]),
    (lambda w, a: torch.stack([mask_ok(row[None], a)[0] for row in w]), ["row by row"]),
    (lambda w, a: mask_ok(w, a).flatten(), ["wrong shape"]),
    (lambda w, a: mask_ok(w, a).tolist(), ["not a tensor"]),
    (lambda w, a: zeros_at(w, torch.arange(round(a * w.numel()))), ["not the smallest-magnitude"]),
])
def test_magnitude_mask_mistakes_are_named(fn, words, capsys):
    result, line = run(check_magnitude_mask, fn, capsys=capsys)
    assert result is False and line.startswith("❌ check_magnitude_mask: ")
    for word in words:
        assert word in line, (word, line)
