"""``python -m mlstep.exercises {student,grade,verify}``: the teacher's command line.

    python -m mlstep.exercises student [--src chapters] [--out build/student]
    python -m mlstep.exercises grade NOTEBOOK [--json out.json] [--timeout 600] [--executed out.ipynb]
    python -m mlstep.exercises verify [--src chapters]   # CI: no leak; student editions fail only at exercises
    python -m mlstep.exercises verify --quick            # the same guarantee, running only the exercises
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import nbformat

from mlstep.exercises.editions import (
    ExerciseError,
    solution_leaks,
    student_notebook,
    write_student_editions,
)
from mlstep.exercises.grading import GradeError, grade_notebook
from mlstep.exercises.verify import quick_verify


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
    if args.quick:
        return _quick_verify(args)
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


def _quick_verify(args: argparse.Namespace) -> int:
    """No leak, no exercise name used outside the exercises, each check fails on the stub and passes
    on the solution (see :mod:`mlstep.exercises.verify`)."""
    failures = []
    for path in sorted(Path(args.src).glob("*.ipynb")):
        full = nbformat.read(path, as_version=4)
        found = [f"{path.name}: {leak}" for leak in solution_leaks(full, student_notebook(full, path.name))]
        found += quick_verify(path, timeout=args.timeout)
        print(f"{path.name}: " + ("exercises sound" if not found else f"{len(found)} problem(s)"))
        failures += found
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m mlstep.exercises {student,grade,verify} ...``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m mlstep.exercises", description=__doc__.split("\n")[0])
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
    p.add_argument("--quick", action="store_true",
                   help="check names statically and run only the exercises (stub, then solution)")
    p.set_defaults(run=_cmd_verify)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ExerciseError, GradeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
