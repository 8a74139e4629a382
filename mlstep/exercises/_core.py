"""The machinery shared by every exercise check: reporting, the registry, comparing cases.

A check is a function ``check(fn) -> (passed, message)`` decorated with :func:`_register`, which
turns it into the public ``check_*(fn) -> bool``: it prints the one ✅/❌ line, appends it to the
grade report named by ``$MLSTEP_GRADE_REPORT`` and lists the check in :data:`CHECKS`. Checks whose
answer is one tensor per input build :class:`_Case` lists and call :func:`_run_cases`; the others
(a list of pieces, a module, a statistic) call the learner through :func:`_call` and write their
own comparison.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

REPORT_ENV = "MLSTEP_GRADE_REPORT"
# name -> check function; every check registered with @_register (the grader lists these).
CHECKS: dict[str, Callable[[Callable[..., Any]], bool]] = {}

# float32 leaves room for a different order of operations (q/√d before the matmul, a hand-written
# softmax); float64 cases are compared tightly.
_TOL = {torch.float32: dict(atol=1e-5, rtol=1e-4), torch.float64: dict(atol=1e-9, rtol=1e-7)}
_MAX_ERROR_CHARS = 300


# --- reporting ------------------------------------------------------------------------------------

def _report(name: str, passed: bool, message: str) -> bool:
    """Print the one-line verdict, append it to the grade report if one is requested, return it."""
    print(f"{'✅' if passed else '❌'} {name}: {message}")
    path = os.environ.get(REPORT_ENV)
    if path:
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"check": name, "passed": passed, "message": message},
                                   ensure_ascii=False) + "\n")
        except OSError as e:  # a grading problem must not look like the learner's mistake
            print(f"(could not write the grade report {path!r}: {e})", file=sys.stderr)
    return passed


def _register(check: Callable[..., tuple[bool, str]]) -> Callable[..., bool]:
    """Turn ``check(fn, **options) -> (passed, message)`` into a public, registered
    ``check_*(fn, **options) -> bool``."""
    name = check.__name__

    @functools.wraps(check)
    def wrapper(fn: Callable[..., Any], **options: Any) -> bool:
        if not callable(fn):
            return _report(name, False, f"expected your function, got {type(fn).__name__} "
                                        f"(pass the function itself, without calling it)")
        try:
            with _isolated_rng():  # the learner's code may draw from the global RNGs; undo that
                passed, message = check(fn, **options)  # options: e.g. an experiment's prediction
        except Exception as e:  # a bug in the check itself: still one line, never a traceback
            passed, message = False, f"internal error in the check ({type(e).__name__}: {e})"
        return _report(name, passed, message)

    CHECKS[name] = wrapper
    return wrapper


# --- comparing one case ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Case:
    args: tuple                    # positional arguments for the learner's function
    expected: Tensor               # the reference output
    label: str                     # how the case is described in messages
    arg_names: tuple[str, ...] = ()                    # names of args, to report in-place changes
    wrong: tuple[tuple[str, Tensor], ...] = ()         # (diagnosis, output of a typical mistake)
    extra: dict = field(default_factory=dict)          # whatever the check's diagnose() needs


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."


def _fmt(x: float | bool) -> str:
    return str(x) if isinstance(x, bool) else f"{x:.4g}"


def _same(a: Tensor, b: Tensor) -> bool:
    """Equal shape and dtype, and values equal (bool) or close (float, NaN == NaN)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype == torch.bool:
        return bool(torch.equal(a, b))
    return bool(torch.isclose(a, b, equal_nan=True, **_TOL.get(a.dtype, _TOL[torch.float32])).all())


def _value_diff(expected: Tensor, got: Tensor) -> str:
    """Where the values first differ, and by how much."""
    if expected.dtype == torch.bool:
        bad = got != expected
    else:
        bad = ~torch.isclose(got, expected, equal_nan=True, **_TOL[expected.dtype])
    idx = tuple(int(i) for i in bad.nonzero()[0])
    msg = f"values differ at index {idx}: expected {_fmt(expected[idx].item())}, got {_fmt(got[idx].item())}"
    if expected.dtype != torch.bool:
        diff = (got - expected).abs().nan_to_num(nan=float("inf")).max().item()
        msg += f" (max abs diff {diff:.3g}; {int(bad.sum())} of {bad.numel()} values differ)"
    else:
        msg += f" ({int(bad.sum())} of {bad.numel()} values differ)"
    return msg


def _output_tensor(fn: Callable[..., Any], case: _Case, args: tuple, where: str,
                   output: Callable[[Any], Any], error_hint: Callable[[_Case, str], str | None],
                   ) -> tuple[Tensor | None, str | None]:
    """``(tensor to compare, None)`` from ``fn(*args)``, or ``(None, failure message)``."""
    try:
        result = fn(*args)
    except Exception as e:
        err = f"{type(e).__name__}: {_one_line(e)}"
        hint = error_hint(case, err)
        return None, f"your function raised {err} {where}" + (f" — hint: {hint}" if hint else "")
    try:
        got = output(result)
    except Exception as e:
        return None, f"{_one_line(e)} {where}"
    if not isinstance(got, Tensor):
        return None, f"not a tensor: your function returned {type(got).__name__}, expected a torch.Tensor {where}"
    return got, None


def _form_problem(case: _Case, args: tuple, got: Tensor,
                  shape_hint: Callable[[_Case, tuple], str | None]) -> str | None:
    """An input changed in place, or an output of the wrong shape or dtype; None if neither."""
    # arg_names may be shorter than args (only tensors are named)
    for name, before, after in zip(case.arg_names, case.args, args, strict=False):
        if isinstance(before, Tensor) and not torch.equal(before, after):
            return (f"your function changed its input `{name}` in place (e.g. `{name} /= ...` or "
                    f"a method ending in `_`); compute a new tensor instead")
    expected = case.expected
    if got.shape != expected.shape:
        hint = shape_hint(case, tuple(got.shape))
        return (f"wrong output shape: expected {tuple(expected.shape)}, got {tuple(got.shape)}"
                + (f" — {hint}" if hint else ""))
    if got.dtype != expected.dtype:
        why = ("a mask must be boolean (True = may attend); use dtype=torch.bool or `.bool()`"
               if expected.dtype == torch.bool else "keep the dtype of the inputs")
        return f"wrong dtype: expected {expected.dtype}, got {got.dtype} — {why}"
    return None


def _value_problem(case: _Case, got: Tensor, diagnose: Callable[[_Case, Tensor], str | None]) -> str | None:
    """Why the values of ``got`` (right shape and dtype) are wrong, most specific first; None if right."""
    got = got.detach().cpu()
    if _same(got, case.expected):
        return None
    for diagnosis, wrong in case.wrong:
        if _same(got, wrong):
            return diagnosis
    return diagnose(case, got) or _value_diff(case.expected, got)


def _run_cases(
    fn: Callable[..., Any],
    cases: Sequence[_Case],
    *,
    output: Callable[[Any], Any] = lambda r: r,
    shape_hint: Callable[[_Case, tuple], str | None] = lambda case, shape: None,
    error_hint: Callable[[_Case, str], str | None] = lambda case, err: None,
    diagnose: Callable[[_Case, Tensor], str | None] = lambda case, got: None,
) -> tuple[bool, str]:
    """Run ``fn`` on every case; stop at the first failure with the most specific message.

    Args:
        fn: the learner's function.
        cases: inputs, reference output and known wrong variants.
        output: picks the tensor to compare out of ``fn``'s return value (e.g. ``out`` from
            ``(out, weights)``).
        shape_hint: extra words for a wrong shape (e.g. "did you return the weights?").
        error_hint: extra words for an exception (e.g. "`.T` only works on 2-D tensors").
        diagnose: generic symptoms checked after the wrong variants (rows don't sum to 1, ...).

    Returns:
        ``(passed, message)``.
    """
    n = len(cases)
    for i, case in enumerate(cases, start=1):
        where = f"(case {i}/{n}: {case.label})"
        # The learner gets copies, so an in-place edit of an input cannot change the reference.
        args = tuple(a.clone() if isinstance(a, Tensor) else a for a in case.args)
        got, failure = _output_tensor(fn, case, args, where, output, error_hint)
        if got is None:
            return False, failure
        problem = _form_problem(case, args, got, shape_hint) or _value_problem(case, got, diagnose)
        if problem is not None:
            return False, f"{problem} {where}"
    return True, _passed(n)


def _randn(g: torch.Generator, *shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.randn(*shape, generator=g, dtype=dtype)


def _shape_str(x: Tensor) -> str:
    return str(tuple(x.shape))


def _passed(n: int) -> str:
    """The message of a passed check: ``passed (3 cases)``."""
    return f"passed ({n} case{'s' if n != 1 else ''})"


def _call(fn: Callable[..., Any], *args: Any) -> tuple[Any, str | None]:
    """``fn(*args)`` as ``(result, None)``, or ``(None, "your function raised ...")`` if it raised."""
    try:
        return fn(*args), None
    except Exception as e:
        return None, f"your function raised {type(e).__name__}: {_one_line(e)}"


@contextlib.contextmanager
def _isolated_rng() -> Iterator[None]:
    """Leave the notebook's global RNGs (torch CPU, ``random``, numpy) as they were.

    Wrap a *whole* sequence of calls to the learner, not each call: a function that wrongly draws
    from the global RNG must still give different results on two calls with the same seed.
    """
    torch_state, py_state, np_state = torch.random.get_rng_state(), random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        torch.random.set_rng_state(torch_state)
        random.setstate(py_state)
        np.random.set_state(np_state)
