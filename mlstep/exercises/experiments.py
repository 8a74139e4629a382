"""Checks for the chapters' experiment exercises: predict, measure, compare with a stated range.

An experiment exercise asks the learner to write down a prediction, then to write the function
that measures it. The check runs that function on its own inputs (the same random generators as
the reference measurement, so a faithful implementation agrees closely), names the typical
mistake when it does not, and finally reports the measurement the prediction was about, the range
the course states for it and why, and whether the prediction fell inside::

    assert check_top_key_weight(top_key_weight, prediction=0.5)

The check passes on a correct measurement, whatever the prediction: the prediction is the
learner's, to compare.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from mlstep.data import english_sample, load_task
from mlstep.exercises._core import _call, _one_line, _register
from mlstep.masking import sop_pairs
from mlstep.tasks.course import load_course_model
from mlstep.tasks.labeled import encode_classification
from mlstep.tasks.masked_lm import (
    MaskingCollator,
    PairDataset,
    evaluate_pretraining,
    fixed_batches,
    make_pairs,
)
from mlstep.tokenizers.wordpiece import WordPieceTokenizer

__all__ = ["check_top_key_weight", "check_attention_flop_share", "check_pieces_per_word",
           "check_masked_accuracy_at",
           "check_accuracy_on_label",
           "check_linear_probe",
           "check_soft_target_entropy"]


@dataclass(frozen=True)
class _Experiment:
    cases: tuple[tuple[Callable[[], tuple], str], ...]  # (a fresh copy of the arguments, label)
    reference: Callable[..., float]  # the course's measurement
    variants: tuple[tuple[str, Callable[..., float]], ...]  # (diagnosis, a typical wrong measurement)
    tolerance: float  # how far a faithful measurement may land from the reference's
    key: int  # the case the prediction is about
    stated: tuple[float, float]  # the range the course states for that case
    lesson: str  # why it lands there


def _as_number(value: Any) -> float | None:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    return float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else None


def _run_experiment(fn: Callable[..., Any], exp: _Experiment, prediction: Any) -> tuple[bool, str]:
    measured = []
    for i, (make_args, label) in enumerate(exp.cases, start=1):
        where = f"(case {i}/{len(exp.cases)}: {label})"
        value, error = _call(fn, *make_args())
        if error:
            return False, f"{error} {where}"
        got = _as_number(value)
        if got is None or math.isnan(got):
            return False, f"return one number (a float), got {_one_line(repr(value))[:60]} {where}"
        expected = exp.reference(*make_args())
        if abs(got - expected) > exp.tolerance:
            for diagnosis, variant in exp.variants:
                if abs(got - variant(*make_args())) <= exp.tolerance:
                    return False, f"{diagnosis} {where}"
            return False, f"you measured {got:.4g}, the reference measures {expected:.4g} {where}"
        measured.append(got)
    low, high = exp.stated
    key = measured[exp.key]
    message = (f"passed ({len(exp.cases)} cases); {exp.cases[exp.key][1]}: you measured {key:.3g}, "
               f"the stated range is {low:g} to {high:g} — {exp.lesson}")
    guess = _as_number(prediction)
    if guess is None:
        message += ". Write your prediction down before you run the experiment next time"
    else:
        message += f". Your prediction, {guess:g}, was {'inside' if low <= guess <= high else 'outside'} that range"
    return low <= key <= high, message


# --- 01: what the scale does to the softmax ----------------------------------------------------------

def _top_key_weight(d_k: int, divisor: float, n_keys: int = 16, n_queries: int = 500,
                    generator: torch.Generator | None = None, *, dim: int = -1, reduce: str = "max") -> float:
    q = torch.randn(n_queries, 1, d_k, generator=generator)  # unit-variance queries and keys
    k = torch.randn(n_queries, n_keys, d_k, generator=generator)
    p = (q @ k.transpose(-2, -1) / divisor).softmax(dim)  # (n_queries, 1, n_keys)
    top = p.max(-1).values if reduce == "max" else p.min(-1).values
    return top.mean().item()


def _top_key_case(d_k: int, divisor: float) -> Callable[[], tuple]:
    return lambda: (d_k, divisor, 16, 500, torch.Generator().manual_seed(d_k + int(divisor)))


_TOP_KEY = _Experiment(
    cases=((_top_key_case(64, 1.0), "d_k = 64, divisor 1"), (_top_key_case(64, 8.0), "d_k = 64, divisor √d_k = 8"),
           (_top_key_case(1024, 32.0), "d_k = 1024, divisor √d_k = 32"),
           (_top_key_case(1024, 1024.0), "d_k = 1024, divisor d_k")),
    reference=_top_key_weight,
    variants=(
        ("you multiplied the scores by the divisor instead of dividing",
         lambda d, div, *a: _top_key_weight(d, 1 / div, *a)),
        ("the divisor is not used: divide the scores q·k by it before the softmax",
         lambda d, div, *a: _top_key_weight(d, 1.0, *a)),
        ("the softmax runs over the wrong axis: every weight is 1 (normalise over the keys, dim=-1)",
         lambda *a: _top_key_weight(*a, dim=-2)),
        ("that is the weight of the *smallest* key: take the max over the keys",
         lambda *a: _top_key_weight(*a, reduce="min")),
    ),
    tolerance=0.03, key=3, stated=(0.0625, 0.08),
    lesson="dividing by d_k shrinks the scores' variance to 1/d_k, so the softmax is nearly uniform "
           "(1/16 = 0.0625 for 16 keys) and can no longer prefer any key",
)


@_register
def check_top_key_weight(fn: Callable[..., Any], prediction: Any = None) -> tuple[bool, str]:
    """``fn(d_k, divisor, n_keys, n_queries, generator)``: the mean weight of the top key."""
    return _run_experiment(fn, _TOP_KEY, prediction)


# --- 02: where the FLOPs of multi-head attention go --------------------------------------------------

def _flop_share(T: int, d_model: int, num_heads: int) -> float:
    """Share of QKᵀ and ·V in the FLOPs: 4T²d / (8Td² + 4T²d) = T / (T + 2d)."""
    return T / (T + 2 * d_model)


_FLOP_SHARE = _Experiment(
    cases=tuple((lambda T=T, d=d, h=h: (T, d, h), f"T = {T}, d_model = {d}, {h} heads")
                for T, d, h in ((16, 128, 8), (1024, 128, 8), (64, 32, 4), (256, 64, 4))),
    reference=_flop_share,
    variants=(
        ("the counter saw no QKᵀ or ·V: the fused kernel hides them, call the layer with need_weights=True",
         lambda *a: 0.0),
        ("only half the attention products are counted: QKᵀ *and* the blend with V are both batched "
         "products (aten.bmm)", lambda T, d, h: T / (2 * T + 4 * d)),
        ("that is the projections' share (aten.addmm): the question is the attention products' share",
         lambda T, d, h: 2 * d / (T + 2 * d)),
        ("return a fraction between 0 and 1, not a percentage", lambda *a: 100 * _flop_share(*a)),
    ),
    tolerance=1e-6, key=3, stated=(0.66, 0.67),
    lesson="the share is T / (T + 2·d_model): half at T = 2·d_model = 128, two thirds at T = 4·d_model",
)


@_register
def check_attention_flop_share(fn: Callable[..., Any], prediction: Any = None) -> tuple[bool, str]:
    """``fn(T, d_model, num_heads)``: the share of QKᵀ and ·V in one layer's FLOPs, counted by PyTorch."""
    return _run_experiment(fn, _FLOP_SHARE, prediction)


# --- 03: when do subwords pay off? -------------------------------------------------------------------

def _pieces_per_word(lines: list[str], vocab_size: int, *, distinct: bool = False, specials: bool = False,
                     characters: bool = False) -> float:
    tok = WordPieceTokenizer.train(lines, vocab_size=vocab_size)
    words = [w for line in lines for w in line.split()]
    if distinct:
        words = sorted(set(words))
    if characters:
        return sum(len(w) for w in words) / len(words)
    extra = 2 * len(lines) if specials else 0
    return (sum(len(tok.tokenize(w)) for w in words) + extra) / len(words)


def _corpus_lines() -> list[str]:
    return [s for doc in load_task("pretrain", "train")["sentences"][:300] for s in doc]


_PIECES = _Experiment(
    cases=((lambda: (_corpus_lines(), 100), "the course corpus (300 documents), 100 pieces"),
           (lambda: (_corpus_lines(), 2000), "the course corpus (300 documents), 2,000 pieces"),
           (lambda: (english_sample(), 300), "the English docstrings, 300 pieces"),
           (lambda: (english_sample(), 2000), "the English docstrings, 2,000 pieces")),
    reference=_pieces_per_word,
    variants=(
        ("that is the average over *distinct* words: count every occurrence of a word",
         lambda *a: _pieces_per_word(*a, distinct=True)),
        ("[CLS] and [SEP] are counted: tokenize the words (tokenizer.tokenize), don't encode the lines",
         lambda *a: _pieces_per_word(*a, specials=True)),
        ("that is characters per word: count the pieces of tokenizer.tokenize(word)",
         lambda *a: _pieces_per_word(*a, characters=True)),
    ),
    tolerance=1e-6, key=3, stated=(1.8, 2.3),
    lesson="the corpus's 1,050 words fit whole in 2,000 pieces (about 1 piece a word), but the English "
           "text has over 1,600 distinct words, plus code and punctuation glued to them: about 2 pieces a word",
)


@_register
def check_pieces_per_word(fn: Callable[..., Any], prediction: Any = None) -> tuple[bool, str]:
    """``fn(lines, vocab_size)``: mean pieces per whitespace-separated word after WordPiece training."""
    return _run_experiment(fn, _PIECES, prediction)


# --- 04: how much context does the masked language model need? -----------------------------------

@functools.cache
def _course_model_and_pairs() -> tuple:
    """The committed course model, its tokenizer, and 1,044 held-out sentence pairs (200 documents)."""
    model, tokenizer, _ = load_course_model()
    pairs = make_pairs(load_task("pretrain", "validation")["sentences"][:200], "mlm")
    return model, tokenizer, PairDataset(pairs, tokenizer, max_length=64)


def _masked_accuracy_at(model, dataset, tokenizer, rate: float, *, ignore_rate: bool = False) -> float:
    collator = MaskingCollator(tokenizer, mlm_probability=0.15 if ignore_rate else rate, sentence_labels=False)
    return evaluate_pretraining(model, fixed_batches(dataset, collator, seed=0, limit=500))["mlm_accuracy"]


def _masking_case(rate: float) -> Callable[[], tuple]:
    def args() -> tuple:
        model, tokenizer, dataset = _course_model_and_pairs()
        return model, dataset, tokenizer, rate
    return args


_MASKING = _Experiment(
    cases=tuple((_masking_case(r), f"{r:.0%} of the tokens masked") for r in (0.15, 0.3, 0.5)),
    reference=_masked_accuracy_at,
    variants=(
        ("the masking rate is not used: pass it as MaskingCollator(..., mlm_probability=rate)",
         lambda *a: _masked_accuracy_at(*a, ignore_rate=True)),
        ("that is the error rate: return the share of masked tokens predicted *correctly*",
         lambda *a: 1 - _masked_accuracy_at(*a)),
    ),
    tolerance=0.03, key=2, stated=(0.52, 0.62),
    lesson="with half of every pair hidden the course model still gets most masked words right, a few "
           "points below 15 %: the corpus's sentences are regular enough that half of one pins down the rest",
)


@_register
def check_masked_accuracy_at(fn: Callable[..., Any], prediction: Any = None) -> tuple[bool, str]:
    """``fn(model, dataset, tokenizer, rate)``: held-out masked-token accuracy with ``rate`` masked."""
    return _run_experiment(fn, _MASKING, prediction)


# --- 05: what does an NSP model make of a swapped pair? --------------------------------------------

def _accuracy_on_label(model, tokenizer, pairs, label: int, *, keep_all: bool = False, flip: bool = False) -> float:
    chosen = [p for p in pairs if keep_all or p[2] == label]
    batches = fixed_batches(PairDataset(chosen, tokenizer, max_length=64), MaskingCollator(tokenizer), seed=0)
    accuracy = evaluate_pretraining(model, batches)["nsp_accuracy"]
    return 1 - accuracy if flip else accuracy


def _label_case(label: int) -> Callable[[], tuple]:
    def args() -> tuple:
        model, tokenizer, _ = _course_model_and_pairs()
        return model, tokenizer, sop_pairs(load_task("pretrain", "validation")["sentences"][:200], seed=0), label
    return args


_SWAPPED = _Experiment(
    cases=((_label_case(0), "SOP pairs in order (label 0)"), (_label_case(1), "swapped SOP pairs (label 1)")),
    reference=_accuracy_on_label,
    variants=(
        ("that is the accuracy on all the pairs: keep only those whose label is `label`",
         lambda *a: _accuracy_on_label(*a, keep_all=True)),
        ("that is the share of *wrong* answers: return the accuracy",
         lambda *a: _accuracy_on_label(*a, flip=True)),
    ),
    tolerance=0.03, key=1, stated=(0.45, 0.62),
    lesson="the NSP-trained course model accepts in-order pairs almost always, but calls only about half of "
           "the swapped pairs 'NotNext': a swapped pair shares names and topic with a true one",
)


@_register
def check_accuracy_on_label(fn: Callable[..., Any], prediction: Any = None) -> tuple[bool, str]:
    """``fn(model, tokenizer, pairs, label)``: the sentence head's accuracy on the pairs with ``label``."""
    return _run_experiment(fn, _SWAPPED, prediction)


# --- 06: what a linear probe on frozen features can read -------------------------------------------

@functools.cache
def _probe_features() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The course model's pooled [CLS] features and labels: 500 training sentences (seen words), and
    the unseen-word test sentences without and with "not"."""
    model, tokenizer, _ = _course_model_and_pairs()
    out = {}
    for name, split, keep in (("train", "train", lambda t: True), ("plain", "test_unseen", lambda t: " not " not in t),
                              ("negated", "test_unseen", lambda t: " not " in t)):
        rows = [r for r in load_task("sentiment", split) if keep(r["text"])][:500]
        data = encode_classification(rows, tokenizer)
        with torch.no_grad():
            inputs = {k: v for k, v in data.tensors.items() if k != "labels"}
            out[name] = (model.bert(**inputs).pooled_output, data.tensors["labels"])
    return out


def _train_probe(train_x, train_y, test_x, test_y, steps: int, *, score_train: bool = False) -> float:
    """``nn.Linear`` after ``torch.manual_seed(0)``, full-batch Adam at 1e-2 for ``steps``; test accuracy."""
    torch.manual_seed(0)
    probe = torch.nn.Linear(train_x.shape[1], 2)
    opt = torch.optim.Adam(probe.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(probe(train_x), train_y).backward()
        opt.step()
    x, y = (train_x, train_y) if score_train else (test_x, test_y)
    with torch.no_grad():
        return (probe(x).argmax(-1) == y).float().mean().item()


def _probe_case(test: str, steps: int) -> Callable[[], tuple]:
    return lambda: (*_probe_features()["train"], *_probe_features()[test], steps)


_PROBE = _Experiment(
    cases=((_probe_case("plain", 100), "no 'not', 100 steps"), (_probe_case("negated", 100), "negated, 100 steps"),
           (_probe_case("negated", 3000), "negated, 3,000 steps")),
    reference=_train_probe,
    variants=(
        ("that is the accuracy on the *training* features: score the test features",
         lambda *a: _train_probe(*a, score_train=True)),
        ("that is the error rate: return the share of test sentences classified correctly",
         lambda *a: 1 - _train_probe(*a)),
    ),
    tolerance=0.05, key=2, stated=(0.55, 0.85),
    lesson="trained long enough, the probe reads 'not' from the frozen features too; briefly trained, it "
           "only fits the majority cue, the adjective's polarity, which 70 % of its training sentences follow",
)


@_register
def check_linear_probe(fn: Callable[..., Any], prediction: Any = None) -> tuple[bool, str]:
    """``fn(train_features, train_labels, test_features, test_labels, steps)``: a linear probe's test accuracy."""
    return _run_experiment(fn, _PROBE, prediction)


# --- 07: how soft are the soft targets? ----------------------------------------------------------

def _soft_target_entropy(logits: torch.Tensor, temperature: float, *, nats: bool = False, scale: bool = True,
                         total: bool = False) -> float:
    p = (logits / (temperature if scale else 1.0)).softmax(-1)  # (B, C)
    h = -(p * p.clamp_min(1e-12).log()).sum(-1) / (1.0 if nats else math.log(2))  # (B,) in bits
    return (h.sum() if total else h.mean()).item()


def _confident_teacher(temperature: float) -> Callable[[], tuple]:
    """Logits of a confident binary teacher: margins between 4 and 8, either class winning."""
    def args() -> tuple:
        g = torch.Generator().manual_seed(7)
        margin = 4 + 4 * torch.rand(256, generator=g)
        sign = torch.where(torch.rand(256, generator=g) < 0.5, 1.0, -1.0)
        return torch.stack([margin * sign / 2, -margin * sign / 2], dim=-1), temperature
    return args


_ENTROPY = _Experiment(
    cases=tuple((_confident_teacher(T), f"T = {T:g}") for T in (1.0, 2.0, 4.0, 8.0)),
    reference=_soft_target_entropy,
    variants=(
        ("that is in nats (natural log): measure in bits, log base 2", lambda *a: _soft_target_entropy(*a, nats=True)),
        ("the temperature is not used: divide the logits by T before the softmax",
         lambda *a: _soft_target_entropy(*a, scale=False)),
        ("that is the sum over the batch: return the mean entropy per example",
         lambda *a: _soft_target_entropy(*a, total=True)),
    ),
    tolerance=1e-4, key=3, stated=(0.75, 0.95),
    lesson="at T = 8 even a confident teacher's targets are close to a coin flip (1 bit), while still leaning "
           "towards its answer; the T² factor of the loss makes up for their small gradients",
)


@_register
def check_soft_target_entropy(fn: Callable[..., Any], prediction: Any = None) -> tuple[bool, str]:
    """``fn(logits, temperature)``: the mean entropy, in bits, of ``softmax(logits / T)``."""
    return _run_experiment(fn, _ENTROPY, prediction)
