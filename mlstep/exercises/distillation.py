"""Checks for chapter 07: soft targets at a temperature, and the knowledge-distillation loss.

Shape legend:
    b  rows (examples, or masked positions)    C  classes
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mlstep.distill import distillation_loss
from mlstep.exercises._core import _Case, _randn, _register, _run_cases, _shape_str

__all__ = ["check_soft_targets", "check_distillation_loss"]


# --- soft targets ----------------------------------------------------------------------------------

def _wrong_soft_targets(z: Tensor, T: float) -> list[tuple[str, Tensor]]:
    """Soft targets as the typical mistakes compute them (deliberately wrong)."""
    p = z.softmax(-1)  # (b, C) at T = 1
    return [
        ("temperature ignored: divide the logits by T before the softmax, softmax(logits / T, dim=-1)", p),
        ("multiplied by T instead of divided: softmax(logits / T, dim=-1) (a higher T must SOFTEN the "
         "distribution)", (z * T).softmax(-1)),
        ("softmax over the wrong dim: each row (example) is a distribution over the classes, dim=-1",
         (z / T).softmax(0)),
        ("log-softmax returned: the soft targets are probabilities, softmax(logits / T, dim=-1), not "
         "log-probabilities", (z / T).log_softmax(-1)),
        ("log-softmax returned, and the temperature ignored: softmax(logits / T, dim=-1)", z.log_softmax(-1)),
        ("temperature applied after the softmax: p ** (1/T) without renormalising does not sum to 1; "
         "divide the logits by T, then softmax", p ** (1 / T)),
        ("probabilities divided by T: the temperature divides the LOGITS, before the softmax",
         p / T),
    ]


@_register
def check_soft_targets(fn: Callable[..., Any]) -> tuple[bool, str]:
    """Check ``fn(logits (b, C), temperature) -> (b, C)``: ``softmax(logits / T, dim=-1)``.

    Cases cover several shapes, T in {1, 2, 5}, float32 and float64, and logits in the thousands
    (a naive ``exp`` overflows there). The reference is :func:`torch.softmax`, which
    :func:`mlstep.distillation_loss` uses (as ``log_softmax``) for its soft term.

    Returns:
        True if every case matches (a ✅/❌ line is printed either way).
    """
    g = torch.Generator().manual_seed(809)
    cases = []
    # T != 1 first, so a missing or misplaced temperature is named on case 1.
    for b, C, T, scale, dtype in ((4, 5, 2.0, 3.0, torch.float32), (3, 7, 5.0, 4.0, torch.float64),
                                  (6, 10, 1.0, 2.0, torch.float32), (1, 4, 2.0, 3.0, torch.float32),
                                  (5, 6, 2.0, 1000.0, torch.float32), (3, 8, 1.0, 2000.0, torch.float64)):
        z = _randn(g, b, C, dtype=dtype) * scale  # (b, C) logits
        expected = torch.softmax(z / T, dim=-1)  # (b, C)
        size = f" of size ~{scale:g}" if scale >= 100 else ""  # the overflow cases
        label = f"{'float64 ' if dtype == torch.float64 else ''}logits {_shape_str(z)}{size}, temperature {T:g}"
        cases.append(_Case((z, T), expected, label, ("logits",), tuple(_wrong_soft_targets(z, T))))

    def shape_hint(case: _Case, shape: tuple) -> str | None:
        b, C = case.args[0].shape
        if shape in ((b,), (b, 1)):
            return "that is one value per row; return the whole distribution, one probability per class"
        if shape == (C,) or shape == (1, C):
            return "that is one value per class: the softmax must be per row (dim=-1), without reducing"
        return None

    def diagnose(case: _Case, got: Tensor) -> str | None:
        if not torch.isfinite(got).all():
            return ("overflow: exp of large logits is inf (inf / inf = nan); subtract the max of each row "
                    "first, or use torch.softmax")
        sums = got.sum(-1)
        if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
            return f"rows don't sum to 1 (e.g. row 0 sums to {sums[0].item():.4g}): normalise over dim=-1"
        return None

    return _run_cases(fn, cases, shape_hint=shape_hint, diagnose=diagnose)


# --- the distillation loss -------------------------------------------------------------------------


def _kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """Per-row KL(p ‖ q) from log-probabilities, ``(b, C) -> (b,)``."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def _wrong_distillation(s: Tensor, t: Tensor, y: Tensor, T: float, a: float) -> list[tuple[str, Tensor]]:
    """The distillation loss as the typical mistakes compute it (deliberately wrong)."""
    ce = F.cross_entropy(s, y)
    ls, lt = F.log_softmax(s / T, -1), F.log_softmax(t / T, -1)  # (b, C) at temperature T
    kl = _kl(lt, ls).mean()  # KL(teacher ‖ student), batchmean
    C = s.shape[-1]

    def mix(soft: Tensor, hard: Tensor = ce, weight: float = a) -> Tensor:
        return (1 - weight) * hard + weight * soft

    return [
        ("missing T²: multiply the KL term by temperature**2 (it keeps the soft gradients on the "
         "scale of the hard ones)", mix(kl)),
        ("multiplied by T instead of T²", mix(kl * T)),
        ("KL with reduction 'mean' (off by C, the number of classes): use reduction='batchmean', which "
         "sums over classes and averages over rows", mix(kl * T**2 / C)),
        ("KL with reduction 'sum': use reduction='batchmean' (sum over classes, mean over rows)",
         mix(kl * T**2 * s.shape[0])),
        ("KL direction swapped: the target distribution is the teacher's, KL(p_teacher ‖ p_student); "
         "F.kl_div(log_softmax(student/T), softmax(teacher/T), reduction='batchmean')",
         mix(_kl(ls, lt).mean() * T**2)),
        ("temperature not applied to the teacher: soften both, softmax(teacher_logits / T)",
         mix(_kl(F.log_softmax(t, -1), ls).mean() * T**2)),
        ("temperature not applied to the student: soften both, log_softmax(student_logits / T)",
         mix(_kl(lt, F.log_softmax(s, -1)).mean() * T**2)),
        ("temperature applied to neither softmax: divide both logits by T before the softmax",
         mix(_kl(F.log_softmax(t, -1), F.log_softmax(s, -1)).mean() * T**2)),
        ("alpha weights swapped: alpha weighs the SOFT (distillation) term, (1 - alpha) the hard CE",
         mix(kl * T**2, weight=1 - a)),
        ("F.kl_div got probabilities as its first argument: it expects LOG-probabilities of the student, "
         "F.log_softmax(student_logits / T, dim=-1)",
         mix(F.kl_div(ls.exp(), lt.exp(), reduction="batchmean") * T**2)),
        ("F.kl_div got log-probabilities as its target: pass softmax(teacher/T), or log_target=True",
         mix(F.kl_div(ls, lt, reduction="batchmean") * T**2)),
        ("soft cross-entropy instead of KL: -Σ p_teacher log p_student is larger by the teacher's entropy; "
         "use KL(p_teacher ‖ p_student)", mix(-(lt.exp() * ls).sum(-1).mean() * T**2)),
        ("temperature applied to the hard cross-entropy: the CE with the labels uses the plain logits (T = 1)",
         mix(kl * T**2, hard=F.cross_entropy(s / T, y))),
    ]


@_register
def check_distillation_loss(fn: Callable[..., Any]) -> tuple[bool, str]:
    """Check ``fn(student_logits, teacher_logits, labels, temperature, alpha) -> scalar``.

    The loss is ``(1 - α)·CE(student, labels) + α·T²·KL(softmax(teacher/T) ‖ softmax(student/T))``
    with the KL summed over classes and averaged over rows ("batchmean"). The reference is
    :func:`mlstep.distillation_loss`.

    Returns:
        True if every case matches (a ✅/❌ line is printed either way).
    """
    g = torch.Generator().manual_seed(808)
    cases = []
    # α never 0.5 (swapped weights would agree) and T never 1 (a missing T² would agree).
    for b, C, T, a, dtype in ((8, 5, 2.0, 0.7, torch.float32), (16, 10, 4.0, 0.3, torch.float32),
                              (6, 3, 3.0, 0.9, torch.float64)):
        s = (_randn(g, b, C, dtype=dtype) * 2).requires_grad_(True)  # (b, C) student logits
        t = _randn(g, b, C, dtype=dtype) * 3  # (b, C) teacher logits: more confident
        y = torch.randint(0, C, (b,), generator=g)  # (b,)
        with torch.no_grad():
            expected = distillation_loss(s, t, y, temperature=T, alpha=a)
            wrong = tuple(_wrong_distillation(s, t, y, T, a))
        label = (f"{'float64 ' if dtype == torch.float64 else ''}student_logits {_shape_str(s)}, "
                 f"temperature {T:g}, alpha {a:g}")
        cases.append(_Case((s, t, y, T, a), expected, label, ("student_logits", "teacher_logits", "labels"), wrong))

    def output(result: Any) -> Any:
        if isinstance(result, Tensor) and not result.requires_grad:
            raise ValueError("your loss has no gradient (requires_grad is False): compute it with torch "
                             "operations on student_logits, without .item(), .detach() or torch.tensor(...)")
        return result

    def shape_hint(case: _Case, shape: tuple) -> str | None:
        if shape == tuple(case.args[0].shape[:1]):
            return "that is one loss per row; average over the rows (reduction='batchmean' / 'mean')"
        if shape == tuple(case.args[0].shape):
            return "that is one value per class; sum the KL over the classes (reduction='batchmean')"
        if shape == (1,):
            return "return a 0-d scalar"
        return None

    return _run_cases(fn, cases, output=output, shape_hint=shape_hint)
