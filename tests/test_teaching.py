"""mlstep.exercises' teacher tools: student editions leak no solution; grading runs notebooks and reports each check.

Kernel start-up costs seconds, so only three tiny notebooks are executed (the full one, its
student edition, and a "submission" that breaks something); the real chapters are checked
statically (no leak, every exercise paired with a check).
"""

import json
from pathlib import Path

import nbformat
import pytest

from mlstep.exercises.__main__ import main
from mlstep.exercises.editions import (
    STUB,
    ExerciseError,
    exercise_problems,
    solution_leaks,
    strip_solutions,
    student_notebook,
    write_student_editions,
)
from mlstep.exercises.grading import grade_notebook

ROOT = Path(__file__).resolve().parents[1]
SOLUTION_LINE = "return torch.ones(n, n, dtype=torch.bool).tril()"

code, md = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell


def tiny_notebook() -> nbformat.NotebookNode:
    """A full chapter in miniature: two exercises with their checks, ordinary cells, stored outputs."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.cells = [
        md("# Tiny chapter"),
        code("import torch\nfrom mlstep.exercises import check_causal_mask, check_split_heads\nx = 21\nprint(x)",
             execution_count=1, outputs=[nbformat.v4.new_output("stream", text="21\n")]),
        code("def causal_mask(n):\n    \"\"\"Lower-triangular bool mask.\"\"\"\n    ### BEGIN SOLUTION\n"
             f"    {SOLUTION_LINE}\n    ### END SOLUTION", metadata={"tags": ["exercise"]}, execution_count=2),
        code("assert check_causal_mask(causal_mask)", metadata={"tags": ["exercise-check"]}, execution_count=3,
             outputs=[nbformat.v4.new_output("stream", text="✅ check_causal_mask: passed (3 cases)\n")]),
        code("def split_heads(x, num_heads):\n    b, n, f = x.shape\n    ### BEGIN SOLUTION\n"
             "    x = x.view(b, n, num_heads, f // num_heads)\n    return x.transpose(1, 2)\n    ### END SOLUTION",
             metadata={"tags": ["exercise"]}),
        code("assert check_split_heads(split_heads)", metadata={"tags": ["exercise-check"]}),
        code("print('twice', 2 * x)", execution_count=4,
             outputs=[nbformat.v4.new_output("execute_result", data={"text/plain": "42"}, execution_count=4)]),
    ]
    return nb


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The tiny full notebook in chapters/, and its student edition written by the CLI."""
    root = tmp_path_factory.mktemp("course")
    (root / "chapters").mkdir()
    nbformat.write(tiny_notebook(), root / "chapters" / "01_tiny.ipynb")
    (root / "chapters" / "figure.txt").write_text("needed by the chapter")
    (root / "chapters" / "sanitize.cfg").write_text("[regex1]")
    assert main(["student", "--src", str(root / "chapters"), "--out", str(root / "build")]) == 0
    return root


# --- student edition (no kernel) ------------------------------------------------------------------

def test_student_edition_has_no_solution_and_no_outputs(built):
    text = (built / "build" / "01_tiny.ipynb").read_text(encoding="utf-8")
    student = nbformat.reads(text, as_version=4)
    nbformat.validate(student)
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    assert SOLUTION_LINE not in text and "x.view(b, n, num_heads" not in text
    assert text.count("NotImplementedError") >= 2
    for cell in student.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert "Student edition" in student.cells[0].source  # the banner, on top
    full = nbformat.read(built / "chapters" / "01_tiny.ipynb", as_version=4)
    assert solution_leaks(full, student) == []
    # the stub sits at the marker's indentation, the rest of the cell is kept
    assert student.cells[3].source == f'def causal_mask(n):\n    """Lower-triangular bool mask."""\n    {STUB}'
    assert student.cells[5].source == f"def split_heads(x, num_heads):\n    b, n, f = x.shape\n    {STUB}"
    # checks and ordinary cells unchanged, in the same order
    assert [student.cells[i + 1].source for i in (0, 1, 3, 5, 6)] == [full.cells[i].source for i in (0, 1, 3, 5, 6)]
    assert student.cells[4].metadata.tags == ["exercise-check"]


def test_student_copies_other_files_but_not_sanitize(built):
    assert (built / "build" / "figure.txt").read_text() == "needed by the chapter"
    assert not (built / "build" / "sanitize.cfg").exists()


def test_student_edition_is_reproducible(built, tmp_path):
    write_student_editions(built / "chapters", tmp_path)
    assert (tmp_path / "01_tiny.ipynb").read_bytes() == (built / "build" / "01_tiny.ipynb").read_bytes()


def test_solution_leaks_are_detected():
    full = tiny_notebook()
    student = student_notebook(full)
    student.cells[3].source += f"\n    {SOLUTION_LINE}"
    student.cells[5].source += "\n    ### END SOLUTION"
    leaks = solution_leaks(full, student)
    assert len(leaks) == 2 and any(SOLUTION_LINE in leak for leak in leaks)


@pytest.mark.parametrize(
    "source, words",
    [
        ("def f():\n    ### BEGIN SOLUTION\n    return 1\n", ["BEGIN SOLUTION", "line 2", "no matching"]),
        ("def f():\n    return 1\n    ### END SOLUTION\n", ["END SOLUTION", "line 3", "no '### BEGIN"]),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", ["line 2", "inside the block"]),
    ],
)
def test_unmatched_markers_name_the_notebook_and_cell(tmp_path, source, words):
    nb = tiny_notebook()
    nb.cells[2].source = source
    (tmp_path / "src").mkdir()
    nbformat.write(nb, tmp_path / "src" / "07_broken.ipynb")
    with pytest.raises(ExerciseError) as info:
        write_student_editions(tmp_path / "src", tmp_path / "out")
    for word in ["07_broken.ipynb", "cell 3", *words]:
        assert word in str(info.value)
    assert not (tmp_path / "out").exists()  # nothing half-written
    assert main(["student", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "out")]) == 1


def test_exercise_pairing_problems_are_reported():
    nb = tiny_notebook()
    assert exercise_problems(nb) == []
    nb.cells[3].metadata.tags = []  # exercise without its check cell
    nb.cells[5].source = "print('no check here')"
    nb.cells[6].metadata["tags"] = ["exercise-check"]
    problems = "\n".join(exercise_problems(nb, "nb.ipynb"))
    assert "cell 3" in problems and "next cell is not tagged 'exercise-check'" in problems
    assert "cell 6" in problems and "calls no check_* function" in problems
    assert "cell 7" in problems and "does not follow an 'exercise' cell" in problems


def test_markdown_solution_blocks_are_replaced():
    source, blocks = strip_solutions("Why √d_k?\n### BEGIN SOLUTION\nThe variance.\n### END SOLUTION",
                                     markdown=True)
    assert blocks == 1 and "variance" not in source and "answer" in source


# --- grading (each test here runs a kernel) -------------------------------------------------------

@pytest.fixture(scope="module")
def student_report(built):
    return grade_notebook(built / "build" / "01_tiny.ipynb", timeout=120)


def test_student_edition_fails_only_in_exercise_check_cells(student_report):
    failing = []
    for cell in student_report.executed.cells:
        errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
        if errors:
            failing.append((cell.metadata.get("tags", []), errors[0].ename))
    assert failing == [(["exercise-check"], "AssertionError")] * 2
    assert student_report.errors == []


def test_grading_the_student_edition_fails_every_check(student_report):
    assert [(c.check, c.passed) for c in student_report.checks] == [
        ("check_causal_mask", False), ("check_split_heads", False)]
    assert all("NotImplementedError" in c.message for c in student_report.checks)
    assert [c.cell for c in student_report.checks] == [5, 7]  # 1-based, the banner is cell 1
    assert "0/2 checks passed" in student_report.format()


def test_grading_the_full_notebook_passes_every_check_cli_json(built, capsys):
    out = built / "report.json"
    assert main(["grade", str(built / "chapters" / "01_tiny.ipynb"), "--json", str(out), "--timeout", "120"]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert (report["passed"], report["total"], report["errors"]) == (2, 2, [])
    assert [c["check"] for c in report["checks"]] == ["check_causal_mask", "check_split_heads"]
    assert all(c["passed"] and c["message"].startswith("passed (") for c in report["checks"])
    table = capsys.readouterr().out
    assert "2/2 checks passed" in table and "check_split_heads" in table and "PASS" in table


def test_grading_reports_errors_outside_exercises(tmp_path):
    nb = tiny_notebook()
    nb.cells[2].source = "def causal_mask(n)\n    return None"  # a syntax error in the learner's cell
    nb.cells[6].source = "print(undefined_name)"  # the learner broke an ordinary cell
    nb.cells.append(code("raise ValueError('on purpose')", metadata={"tags": ["raises-exception"]}))
    nbformat.write(nb, tmp_path / "submission.ipynb")
    report = grade_notebook(tmp_path / "submission.ipynb", timeout=120)
    assert [(c.check, c.passed) for c in report.checks] == [("check_causal_mask", False), ("check_split_heads", True)]
    assert "the check cell failed before the check ran: NameError" in report.checks[0].message
    assert [(e.cell, e.kind, e.error.split(":")[0]) for e in report.errors] == [
        (3, "exercise", "SyntaxError"), (7, "code", "NameError")]
    assert [e.cell for e in report.errors_outside_exercises] == [7]


def test_grading_a_missing_notebook_exits_non_zero(tmp_path, capsys):
    assert main(["grade", str(tmp_path / "nope.ipynb")]) == 1
    assert "cannot read notebook" in capsys.readouterr().err


# --- the real chapters (static) ---------------------------------------------------------------------

def _chapters_with_exercises():
    paths = []
    for path in sorted((ROOT / "chapters").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        if any("exercise" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
            paths.append(path)
    return paths


@pytest.mark.parametrize("path", _chapters_with_exercises() or [None], ids=lambda p: p.name if p else "none")
def test_real_chapters_leak_no_solution_and_pair_each_exercise(path):
    if path is None:
        pytest.skip("no chapter has exercise cells yet")
    full = nbformat.read(path, as_version=4)
    assert exercise_problems(full, path.name) == []
    student = student_notebook(full, path.name)
    assert solution_leaks(full, student) == []
    text = nbformat.writes(student)
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    assert all(not c.get("outputs") for c in student.cells)


@pytest.mark.slow
def test_first_real_chapter_student_edition_fails_only_at_its_exercises(tmp_path):
    """One real chapter (~20 s): the unsolved edition runs, every check fails, nothing else breaks."""
    paths = _chapters_with_exercises()
    if not paths:
        pytest.skip("no chapter has exercise cells yet")
    path = paths[0]
    student = student_notebook(nbformat.read(path, as_version=4), path.name)
    nbformat.write(student, tmp_path / path.name)
    report = grade_notebook(tmp_path / path.name, timeout=300)
    assert report.errors_outside_exercises == []
    assert report.total >= 1 and report.passed == 0
    assert all("NotImplementedError" in c.message for c in report.checks)
