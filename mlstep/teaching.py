"""Student editions and grading of the chapters (nbgrader-style markers, no nbgrader needed).

A chapter's exercise is a code cell tagged ``exercise`` whose reference code sits between
``### BEGIN SOLUTION`` and ``### END SOLUTION``; the next cell, tagged ``exercise-check``, calls a
``check_*`` helper from :mod:`mlstep.exercises`::

    def attention_weights(q, k, mask=None):        # tags: ["exercise"]
        ### BEGIN SOLUTION
        ...reference code...
        ### END SOLUTION

    assert check_attention_weights(attention_weights)   # tags: ["exercise-check"]

Command line (``make student`` / ``make grade NB=...``)::

    python -m mlstep.teaching student [--src chapters] [--out build/student]
    python -m mlstep.teaching grade NOTEBOOK [--json out.json] [--timeout 600] [--executed out.ipynb]
    python -m mlstep.teaching verify [--src chapters]   # CI: no leak, student editions fail only at exercises

``student`` replaces each solution block by ``raise NotImplementedError(...)`` and clears all outputs.
``grade`` runs a notebook in a fresh kernel and reports every check's verdict (the checks append
them to the file named by ``MLSTEP_GRADE_REPORT``) plus any cell that failed outside the exercises.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from mlstep.exercises import REPORT_ENV

__all__ = [
    "ExerciseError",
    "strip_solutions",
    "exercise_problems",
    "student_notebook",
    "solution_leaks",
    "write_student_editions",
    "CheckResult",
    "CellError",
    "GradeReport",
    "grade_notebook",
    "main",
]

EXERCISE_TAG = "exercise"          # the cell holding a solution block
CHECK_TAG = "exercise-check"       # the cell right after it, calling a check_* helper
BANNER_TAG = "student-banner"      # the markdown cell put on top of a student edition
EXPECTED_ERROR_TAG = "raises-exception"  # nbval's tag for cells that demonstrate an error
STUB = 'raise NotImplementedError("Exercise: write this part")'
MARKDOWN_STUB = "_Write your answer here._"
BANNER = (
    "**Student edition.** Fill in the cells marked `raise NotImplementedError(\"Exercise: write this "
    "part\")` (tagged *exercise*), then run the check cell below each one: it prints ✅ when your code "
    "agrees with the reference and ❌ with what looks wrong otherwise. Run the cells from the top."
)

_BEGIN = re.compile(r"^(?P<indent>[ \t]*)#+\s*BEGIN SOLUTION\s*$")
_END = re.compile(r"^[ \t]*#+\s*END SOLUTION\s*$")
_CHECK_CALL = re.compile(r"\b(check_\w+)\s*\(")


class ExerciseError(ValueError):
    """A notebook's exercise markup is broken (unmatched markers, an exercise without a check)."""


# --- student edition ------------------------------------------------------------------------------

def _tags(cell: NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _describe(cell: NotebookNode, index: int) -> str:
    """``cell 7 ("def attention(q, k, v):")`` — 1-based, as a reader counts cells."""
    first = next((ln.strip() for ln in cell.source.splitlines() if ln.strip()), "")
    return f'cell {index + 1} ("{first[:60]}")'


def strip_solutions(source: str, where: str = "cell", markdown: bool = False) -> tuple[str, int]:
    """Replace every solution block (markers included) with the stub, at the BEGIN marker's indent.

    Args:
        source: a cell's source.
        where: names the notebook and cell in error messages.
        markdown: replace with a "write your answer" line instead of ``raise NotImplementedError``.

    Returns:
        ``(new_source, number_of_blocks)``.

    Raises:
        ExerciseError: a BEGIN without END, an END without BEGIN, or nested BEGIN markers.
    """
    out: list[str] = []
    begin_line: int | None = None
    blocks = 0
    for i, line in enumerate(source.splitlines(), start=1):
        begin = _BEGIN.match(line)
        if begin:
            if begin_line is not None:
                raise ExerciseError(f"{where}: '### BEGIN SOLUTION' on line {i} inside the block opened "
                                    f"on line {begin_line} (a '### END SOLUTION' is missing)")
            begin_line = i
            out.append(MARKDOWN_STUB if markdown else begin.group("indent") + STUB)
        elif _END.match(line):
            if begin_line is None:
                raise ExerciseError(f"{where}: '### END SOLUTION' on line {i} has no '### BEGIN SOLUTION'")
            begin_line = None
            blocks += 1
        elif begin_line is None:
            out.append(line)
    if begin_line is not None:
        raise ExerciseError(f"{where}: '### BEGIN SOLUTION' on line {begin_line} has no matching "
                            "'### END SOLUTION'")
    return "\n".join(out), blocks


def _has_markers(source: str) -> bool:
    return any(_BEGIN.match(ln) or _END.match(ln) for ln in source.splitlines())


def exercise_problems(nb: NotebookNode, name: str = "notebook") -> list[str]:
    """Everything wrong with a notebook's exercise markup (empty list = fine).

    Rules: an ``exercise`` code cell has solution markers and is followed by an ``exercise-check``
    cell that calls a ``check_*`` helper; an ``exercise-check`` cell follows an ``exercise`` cell; a
    code cell with markers is tagged ``exercise``; markers are matched.
    """
    problems = []
    cells = nb.cells
    for i, cell in enumerate(cells):
        where = f"{name}, {_describe(cell, i)}"
        tags = _tags(cell)
        try:
            _, blocks = strip_solutions(cell.source, where)
        except ExerciseError as e:
            problems.append(str(e))
            blocks = 1
        if cell.cell_type != "code":
            continue
        if EXERCISE_TAG in tags:
            if blocks == 0:
                problems.append(f"{where} is tagged '{EXERCISE_TAG}' but has no '### BEGIN SOLUTION' block")
            if i + 1 >= len(cells) or CHECK_TAG not in _tags(cells[i + 1]):
                problems.append(f"{where} is tagged '{EXERCISE_TAG}' but the next cell is not tagged "
                                f"'{CHECK_TAG}'")
        elif blocks:
            problems.append(f"{where} has solution markers but is not tagged '{EXERCISE_TAG}'")
        if CHECK_TAG in tags:
            if i == 0 or EXERCISE_TAG not in _tags(cells[i - 1]):
                problems.append(f"{where} is tagged '{CHECK_TAG}' but does not follow an "
                                f"'{EXERCISE_TAG}' cell")
            if not _CHECK_CALL.search(cell.source):
                problems.append(f"{where} is tagged '{CHECK_TAG}' but calls no check_* function")
    return problems


def student_notebook(nb: NotebookNode, name: str = "notebook") -> NotebookNode:
    """The student edition of a full notebook (a new object; ``nb`` is left as it is).

    Solutions are replaced by the stub, every output and execution count is cleared, and a banner
    cell is put on top; everything else is kept.

    Raises:
        ExerciseError: the exercise markup is broken (see :func:`exercise_problems`).
    """
    problems = exercise_problems(nb, name)
    if problems:
        raise ExerciseError("broken exercise markup:\n  " + "\n  ".join(problems))
    student = copy.deepcopy(nb)
    for i, cell in enumerate(student.cells):
        if _has_markers(cell.source):
            cell.source, _ = strip_solutions(cell.source, f"{name}, {_describe(cell, i)}",
                                             markdown=cell.cell_type == "markdown")
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    banner = nbformat.v4.new_markdown_cell(BANNER, metadata={"tags": [BANNER_TAG]})
    if (student.nbformat, student.nbformat_minor) >= (4, 5):
        banner["id"] = BANNER_TAG  # deterministic, so rebuilding gives the same file
    else:
        banner.pop("id", None)  # cell ids are not allowed before nbformat 4.5
    student.cells.insert(0, banner)
    return student


def solution_leaks(full: NotebookNode, student: NotebookNode) -> list[str]:
    """Solution text that survived into a student edition (empty list = no leak).

    A leak is any marker line left in the student edition, or a solution line found in the student
    version of its cell (unless the same line also appears outside the markers in the full cell).
    """
    leaks = []
    for i, cell in enumerate(student.cells):
        for ln in cell.source.splitlines():
            if _BEGIN.match(ln) or _END.match(ln):
                leaks.append(f"student {_describe(cell, i)} still contains the marker {ln.strip()!r}")
    body = [c for c in student.cells if BANNER_TAG not in _tags(c)]
    if len(body) != len(full.cells):
        return leaks + [f"the student edition has {len(body)} cells besides the banner, the full one "
                        f"{len(full.cells)}"]
    for i, (f_cell, s_cell) in enumerate(zip(full.cells, body, strict=True)):
        inside, outside, in_block = set(), set(), False
        for ln in f_cell.source.splitlines():
            if _BEGIN.match(ln):
                in_block = True
            elif _END.match(ln):
                in_block = False
            elif ln.strip():
                (inside if in_block else outside).add(ln.strip())
        student_lines = {ln.strip() for ln in s_cell.source.splitlines()}
        for ln in sorted((inside - outside) & student_lines):
            leaks.append(f"{_describe(f_cell, i)}: solution line {ln!r} is in the student edition")
    return leaks


def write_student_editions(src: str | Path = "chapters", out: str | Path = "build/student") -> list[Path]:
    """Write the student edition of every ``src/*.ipynb`` to ``out`` and copy the other files.

    Files the student edition does not need (nbval's sanitize files, dotfiles, caches) are skipped.

    Returns:
        The notebooks written.

    Raises:
        FileNotFoundError: ``src`` is not a folder.
        ExerciseError: a notebook's exercise markup is broken (names the notebook and cell).
    """
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise FileNotFoundError(f"no chapters folder {str(src)!r}")
    written = []
    editions = []  # build everything first, so a broken notebook leaves no half-written folder
    for path in sorted(src.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        editions.append((path.name, student_notebook(nb, name=path.name)))
    out.mkdir(parents=True, exist_ok=True)
    for name, student in editions:
        nbformat.write(student, out / name)
        written.append(out / name)
    for path in sorted(src.iterdir()):
        skip = (path.suffix == ".ipynb" or path.name.startswith((".", "sanitize", "conftest"))
                or path.name == "__pycache__")
        if skip:
            continue
        if path.is_dir():
            shutil.copytree(path, out / path.name, dirs_exist_ok=True)
        else:
            shutil.copy2(path, out / path.name)
    return written


# --- grading --------------------------------------------------------------------------------------

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
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:
        raise GradeError(f"cannot read notebook {str(path)!r}: {type(e).__name__}: {e}") from e

    fd, report_path = tempfile.mkstemp(prefix="mlstep-grade-", suffix=".jsonl")
    os.close(fd)
    per_cell: dict[int | None, list[CheckResult]] = {}
    offset = 0

    def collect(cell_index: int | None) -> None:
        """Attribute the report lines written since the last call to this cell."""
        nonlocal offset
        with open(report_path, encoding="utf-8") as f:
            f.seek(offset)
            text = f.read()
            offset = f.tell()
        for line in text.splitlines():
            try:
                rec = json.loads(line)
                result = CheckResult(None if cell_index is None else cell_index + 1, str(rec["check"]),
                                     bool(rec["passed"]), str(rec["message"]))
            except (ValueError, KeyError, TypeError):  # a learner wrote to the file: not ours
                continue
            per_cell.setdefault(cell_index, []).append(result)

    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", allow_errors=True, interrupt_on_timeout=True,
        resources={"metadata": {"path": str(path.resolve().parent)}},
        on_cell_executed=lambda cell, cell_index, **_: collect(cell_index),
    )
    previous = os.environ.get(REPORT_ENV)
    os.environ[REPORT_ENV] = report_path  # the kernel inherits the environment
    try:
        client.execute()
        collect(None)
    except Exception as e:
        raise GradeError(f"could not run {str(path)!r}: {type(e).__name__}: {e}") from e
    finally:
        if previous is None:
            os.environ.pop(REPORT_ENV, None)
        else:
            os.environ[REPORT_ENV] = previous
        os.unlink(report_path)
    if executed is not None:
        nbformat.write(nb, executed)

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


# --- command line ---------------------------------------------------------------------------------

def _cmd_student(args: argparse.Namespace) -> int:
    written = write_student_editions(args.src, args.out)
    for path in written:
        print(f"wrote {path}")
    if not written:
        print(f"no notebooks in {args.src}")
    return 0


def _cmd_grade(args: argparse.Namespace) -> int:
    report = grade_notebook(args.notebook, timeout=args.timeout, executed=args.executed)
    print(report.format())
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n",
                                   encoding="utf-8")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    """For CI: every student edition leaks nothing, and fails only at its exercises."""
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        written = write_student_editions(args.src, tmp)
        for path in written:
            full = nbformat.read(Path(args.src) / path.name, as_version=4)
            failures += [f"{path.name}: {leak}" for leak in solution_leaks(full, nbformat.read(path, as_version=4))]
            report = grade_notebook(path, timeout=args.timeout)
            failures += [f"{path.name}: cell {e.cell} failed outside the exercises: {e.error}"
                         for e in report.errors_outside_exercises]
            failures += [f"{path.name}: {c.check} passes on the unsolved student edition"
                         for c in report.checks if c.passed]
            ok = not report.errors_outside_exercises and report.passed == 0
            print(f"{path.name}: {report.total} checks, " + ("all failing as they should" if ok else "problems"))
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m mlstep.teaching {student,grade,verify} ...``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m mlstep.teaching", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("student", help="write the student editions (solutions removed, outputs cleared)")
    p.add_argument("--src", default="chapters", help="folder of full chapters (default: chapters)")
    p.add_argument("--out", default="build/student", help="output folder (default: build/student)")
    p.set_defaults(run=_cmd_student)
    p = sub.add_parser("grade", help="run a notebook and report each exercise check")
    p.add_argument("notebook")
    p.add_argument("--json", help="also write the report as JSON to this file")
    p.add_argument("--timeout", type=int, default=600, help="seconds per cell (default: 600)")
    p.add_argument("--executed", help="save the executed notebook here")
    p.set_defaults(run=_cmd_grade)
    p = sub.add_parser("verify", help="CI: student editions leak no solution and fail only at exercises")
    p.add_argument("--src", default="chapters")
    p.add_argument("--timeout", type=int, default=600, help="seconds per cell (default: 600)")
    p.set_defaults(run=_cmd_verify)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ExerciseError, GradeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
