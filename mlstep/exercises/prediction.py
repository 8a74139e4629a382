"""A prediction against the range of a measurement: the "predict, then measure" exercises (08–10).

The learner writes a number down (``my_prediction``) before the chapter's own cells measure it,
several times over (seeds, batches of samples, timing rounds). :func:`check_prediction` then
reports the range those measurements span and whether the prediction fell inside::

    check_prediction("grammatical share at T = 2 (%)", my_prediction, shares)

It never stops a chapter: a prediction outside the range is a lesson, not a bug. Only a
prediction that is not a number is reported as ❌ (in the grade report too).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from mlstep.exercises._core import _report

__all__ = ["check_prediction"]


def check_prediction(question: str, prediction: Any, measured: Sequence[float], unit: str = "") -> None:
    """Print one line: the range of ``measured`` (at least one number; ``unit`` is appended to
    each number shown) and whether ``prediction`` lies within it, ends included."""
    values = [float(v) for v in measured]
    if not values or any(math.isnan(v) for v in values):
        raise ValueError(f"measured must hold at least one number and no NaN, got {measured!r}")
    low, high = min(values), max(values)
    span = f"{low:.3g}{unit}" if low == high else f"{low:.3g}{unit} to {high:.3g}{unit}"
    message = f"{question}: measured {span} ({len(values)} measurement{'s' * (len(values) > 1)})"
    is_number = isinstance(prediction, numbers.Real) and not isinstance(prediction, bool)
    if not is_number or math.isnan(prediction):
        _report("check_prediction", False, f"{message}; write your prediction as a number, got {prediction!r}")
        return
    where = "inside" if low <= prediction <= high else "outside"
    _report("check_prediction", True, f"{message}; your prediction, {prediction:g}{unit}, was {where} that range")
