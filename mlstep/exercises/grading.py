"""Grading a notebook: run it in a fresh kernel and collect every exercise check's verdict.

The checks append their verdicts to the file named by ``MLSTEP_GRADE_REPORT``; the report adds
any cell that failed outside the exercises. ``python -m mlstep.exercises grade NB`` is the
command line (``make grade NB=...``).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from mlstep.exercises._core import REPORT_ENV
from mlstep.exercises.editions import (
    _CHECK_CALL,
    CHECK_TAG,
    EXERCISE_TAG,
    EXPECTED_ERROR_TAG,
    _tags,
)

__all__ = ["CheckResult", "CellError", "GradeReport", "GradeError", "grade_notebook"]


@dataclass
class CheckResult:
    cell: int | None  # 1-based cell that ran the check (None: could not be attributed)
    check: str        # e.g. "check_attention_weights"
    passed: bool
    message: str


@dataclass
class CellError:
    cell: int         # 1-based cell index
    kind: str         # "exercise", "exercise-check" or "code" (outside the exercises)
    error: str        # "ename: evalue"
    source: str       # the cell's first line, to find it


@dataclass
class GradeReport:
    notebook: str
    checks: list[CheckResult] = field(default_factory=list)
    errors: list[CellError] = field(default_factory=list)  # failures no check accounts for
    executed: NotebookNode | None = field(default=None, repr=False)  # the notebook after the run

    @property
    def passed(self) -> int:
        return sum(c.passed for c in self.checks)

    @property
    def total(self) -> int:
        return len(self.checks)

    @property
    def errors_outside_exercises(self) -> list[CellError]:
        return [e for e in self.errors if e.kind == "code"]

    def to_dict(self) -> dict:
        return {"notebook": self.notebook, "passed": self.passed, "total": self.total,
                "checks": [asdict(c) for c in self.checks], "errors": [asdict(e) for e in self.errors]}

    def format(self) -> str:
        """A plain-text table: one row per check, then the total, then other failing cells."""
        rows = [("cell", "check", "result", "message")]
        rows += [(str(c.cell or "?"), c.check, "PASS" if c.passed else "FAIL", c.message) for c in self.checks]
        widths = [max(len(r[j]) for r in rows) for j in range(3)]
        lines = [f"Grading {self.notebook}"]
        lines += ["  ".join(r[j].ljust(widths[j]) for j in range(3)) + "  " + r[3] for r in rows]
        lines.append(f"{self.passed}/{self.total} checks passed")
        if self.errors:
            lines.append("Cells that raised an error no check accounts for:")
            lines += [f"  cell {e.cell} [{e.kind}] {e.source!r}: {e.error}" for e in self.errors]
        return "\n".join(lines)


class GradeError(RuntimeError):
    """The notebook could not be run at all (missing, unreadable, kernel died or failed to start)."""


def _error_of(cell: NotebookNode) -> str | None:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return " ".join(f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".split())
    return None


def _read_notebook(path: Path) -> NotebookNode:
    """The notebook at ``path`` (nbformat 4), or :class:`GradeError` if it cannot be read."""
    try:
        return nbformat.read(path, as_version=4)
    except Exception as e:
        raise GradeError(f"cannot read notebook {str(path)!r}: {type(e).__name__}: {e}") from e


class _Verdicts:
    """The checks' verdicts read from the grade report file as the notebook runs, by cell."""

    def __init__(self, report_path: str) -> None:
        self.report_path = report_path
        self.offset = 0
        self.per_cell: dict[int | None, list[CheckResult]] = {}

    def collect(self, cell_index: int | None) -> None:
        """Attribute the report lines written since the last call to this cell."""
        with open(self.report_path, encoding="utf-8") as f:
            f.seek(self.offset)
            text = f.read()
            self.offset = f.tell()
        for line in text.splitlines():
            try:
                rec = json.loads(line)
                result = CheckResult(None if cell_index is None else cell_index + 1, str(rec["check"]),
                                     bool(rec["passed"]), str(rec["message"]))
            except (ValueError, KeyError, TypeError):  # a learner wrote to the file: not ours
                continue
            self.per_cell.setdefault(cell_index, []).append(result)


@contextlib.contextmanager
def _report_env(report_path: str) -> Iterator[None]:
    """Set ``$MLSTEP_GRADE_REPORT`` to ``report_path`` (the kernel inherits the environment), then restore it."""
    previous = os.environ.get(REPORT_ENV)
    os.environ[REPORT_ENV] = report_path
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(REPORT_ENV, None)
        else:
            os.environ[REPORT_ENV] = previous


def _build_report(path: Path, nb: NotebookNode, per_cell: dict[int | None, list[CheckResult]]) -> GradeReport:
    """The checks of every cell in order (a row for a check that never ran), and the cells that failed
    with no failing check to account for it; then the checks no cell could be credited with."""
    report = GradeReport(str(path), executed=nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tags, error, results = _tags(cell), _error_of(cell), per_cell.get(i, [])
        report.checks += results
        kind = CHECK_TAG if CHECK_TAG in tags else EXERCISE_TAG if EXERCISE_TAG in tags else "code"
        if kind == CHECK_TAG and not results:
            # The check never ran (e.g. the learner's cell had a syntax error): still one row per check.
            names = _CHECK_CALL.findall(cell.source) or ["(check cell)"]
            report.checks += [CheckResult(i + 1, n, False, f"the check cell failed before the check "
                                                           f"ran: {error or 'no result reported'}")
                              for n in dict.fromkeys(names)]
        elif error and EXPECTED_ERROR_TAG not in tags and not any(not r.passed for r in results):
            first = next((ln.strip() for ln in cell.source.splitlines() if ln.strip()), "")
            report.errors.append(CellError(i + 1, kind, error, first[:80]))
    report.checks += per_cell.get(None, [])
    return report


def grade_notebook(path: str | Path, timeout: int = 600, executed: str | Path | None = None) -> GradeReport:
    """Run a notebook top to bottom in a fresh ``python3`` kernel and collect the checks' verdicts.

    Args:
        path: the notebook (a submission or a student edition).
        timeout: seconds per cell; a cell running longer is interrupted and reported as an error.
        executed: where to save the executed notebook (optional).

    Returns:
        A :class:`GradeReport` (failing checks are part of the report, not an exception).

    Raises:
        GradeError: the notebook could not be read or the kernel could not run it.
    """
    from nbclient import NotebookClient  # imported here: only grading needs Jupyter

    path = Path(path)
    nb = _read_notebook(path)
    fd, report_path = tempfile.mkstemp(prefix="mlstep-grade-", suffix=".jsonl")
    os.close(fd)
    verdicts = _Verdicts(report_path)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", allow_errors=True, interrupt_on_timeout=True,
        resources={"metadata": {"path": str(path.resolve().parent)}},
        on_cell_executed=lambda cell, cell_index, **_: verdicts.collect(cell_index),
    )
    try:
        with _report_env(report_path):
            client.execute()
            verdicts.collect(None)
    except Exception as e:
        raise GradeError(f"could not run {str(path)!r}: {type(e).__name__}: {e}") from e
    finally:
        os.unlink(report_path)
    if executed is not None:
        nbformat.write(nb, executed)
    return _build_report(path, nb, verdicts.per_cell)
