"""Every chapter's student edition fails only at its exercises, checked cheaply (see
mlstep.exercises.verify): names statically, then each exercise's check on the stub and on the
solution in a kernel that runs only the first code cell and the exercises (about 4 s a chapter)."""

from pathlib import Path

import nbformat
import pytest

from mlstep.exercises.verify import exercise_name_problems, exercises_only, quick_verify

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
code, md = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell


def notebook(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    return nb


SETUP = code("import torch\nfrom mlstep.exercises import check_causal_mask")
EXERCISE = code("def causal_mask(n):\n    ### BEGIN SOLUTION\n    return torch.ones(n, n, dtype=torch.bool).tril()\n"
                "    ### END SOLUTION", metadata={"tags": ["exercise"]})
CHECK = code("assert check_causal_mask(causal_mask)", metadata={"tags": ["exercise-check"]})


def test_sound_notebook_has_no_problem():
    documents = code("documents = [1, 2]\ndef helper(documents):\n    return len(documents)")
    later = code("print(helper(documents))")  # `documents` is a parameter in the exercise: no leak
    exercise = code("def count(documents):\n    ### BEGIN SOLUTION\n    return len(documents)\n    ### END SOLUTION",
                    metadata={"tags": ["exercise"]})
    check = code("assert check_causal_mask(count)", metadata={"tags": ["exercise-check"]})
    assert exercise_name_problems(notebook(SETUP, documents, exercise, check, later)) == []


def test_ordinary_cell_using_an_exercise_name_is_reported():
    later = code("m = causal_mask(4)")
    problems = exercise_name_problems(notebook(SETUP, EXERCISE, CHECK, md("text"), later), "x.ipynb")
    assert len(problems) == 1 and "['causal_mask']" in problems[0] and "cell 5" in problems[0]


def test_redefining_the_name_in_an_ordinary_cell_is_fine():
    again = code("from mlstep.attention import causal_mask")
    assert exercise_name_problems(notebook(SETUP, EXERCISE, CHECK, again, code("causal_mask(3)"))) == []


def test_exercise_using_notebook_state_is_reported():
    state = code("n_heads = 4")
    exercise = code("def f(x):\n    ### BEGIN SOLUTION\n    return x * n_heads\n    ### END SOLUTION",
                    metadata={"tags": ["exercise"]})
    check = code("assert check_causal_mask(f)", metadata={"tags": ["exercise-check"]})
    problems = exercise_name_problems(notebook(SETUP, state, exercise, check))
    assert len(problems) == 1 and "['n_heads']" in problems[0] and "cannot run on its own" in problems[0]


def test_exercises_only_runs_stub_then_solution():
    mini, expected = exercises_only(notebook(SETUP, code("x = 1"), EXERCISE, CHECK))
    assert [c.source.splitlines()[-1].strip() for c in mini.cells] == [
        "from mlstep.exercises import check_causal_mask", 'raise NotImplementedError("Exercise: write this part")',
        CHECK.source, "### END SOLUTION", CHECK.source]
    assert expected == {3: False, 5: True}


def test_a_check_that_passes_on_the_stub_is_reported(tmp_path):
    """A check cell that does not test the exercise (it passes whatever the learner writes)."""
    lazy = code("from mlstep.attention import causal_mask as reference\nassert check_causal_mask(reference)",
                metadata={"tags": ["exercise-check"]})
    nb = notebook(SETUP, EXERCISE, lazy)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(nb, tmp_path / "lazy.ipynb")
    problems = quick_verify(tmp_path / "lazy.ipynb", timeout=120)
    assert len(problems) == 1 and "should fail on the student's stub" in problems[0]


@pytest.mark.slow
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_student_edition_fails_only_at_its_exercises(path):
    assert quick_verify(path, timeout=300) == []
