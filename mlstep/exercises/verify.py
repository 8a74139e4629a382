"""A cheap, sound check that a chapter's student edition fails only at its exercises.

Running every student edition end to end would cost as much as running the chapters again. Two
checks give the same guarantee for a fraction of it:

1. **Statically**, no ordinary cell uses a name whose latest definition is in an exercise cell, and
   the exercise and check cells use only names from the chapter's first code cell (its imports),
   their own definitions and builtins. Then, in the student edition, every ordinary cell computes
   what it computes in the full chapter (which nbval already runs), and each exercise can run on
   its own.
2. **In a kernel**, only the first code cell and the exercises run: each check cell once after the
   student's stub (it must fail) and once after the reference solution (it must pass).

``python -m mlstep.exercises verify --quick`` runs both; ``verify`` alone runs every student
edition from top to bottom.
"""

from __future__ import annotations

import builtins
import copy
import symtable
import tempfile
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from mlstep.exercises.editions import CHECK_TAG, EXERCISE_TAG, _describe, _tags, strip_solutions
from mlstep.exercises.grading import grade_notebook

__all__ = ["exercise_name_problems", "exercises_only", "quick_verify"]

_BUILTINS = set(dir(builtins)) | {"__name__", "__file__", "display", "get_ipython"}


def _code(source: str) -> str:
    """A cell's Python, IPython magics and shell escapes blanked out."""
    return "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in source.splitlines())


def _names(source: str) -> tuple[set[str], set[str]]:
    """``(defined, used)``: the names a cell binds at its top level, and the global names it reads
    (at the top level, or inside its functions) that it does not bind itself."""
    top = symtable.symtable(_code(source), "<cell>", "exec")
    defined = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported() or s.is_namespace()}
    used, tables = set(), [top]
    while tables:
        table = tables.pop()
        tables += table.get_children()
        used |= {s.get_name() for s in table.get_symbols()
                 if s.is_referenced() and (table is top or s.is_global())}
    return defined, used - defined


def exercise_name_problems(nb: NotebookNode, name: str = "notebook") -> list[str]:
    """Why the student edition of ``nb`` could fail outside its exercises (empty list = it cannot)."""
    problems, owner = [], {}  # owner[name]: "exercise" or "ordinary", by the latest cell defining it
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    if not code:
        return problems
    setup_names = _names(code[0][1].source)[0]
    exercise_names: set[str] = set()
    for i, cell in code:
        tags, where = _tags(cell), f"{name}, {_describe(cell, i)}"
        defined, used = _names(cell.source)
        if EXERCISE_TAG in tags or CHECK_TAG in tags:
            if EXERCISE_TAG in tags:
                exercise_names = defined
            outside = sorted(used - setup_names - exercise_names - _BUILTINS)
            if outside:
                problems.append(f"{where} uses {outside}, defined neither in the first code cell nor in "
                                "the exercise: the exercise cannot run on its own")
        else:
            leaked = sorted(n for n in used if owner.get(n) == "exercise")
            if leaked:
                problems.append(f"{where} uses {leaked}, defined only in an exercise cell: the student "
                                "edition would fail here")
        for n in defined:
            owner[n] = "exercise" if EXERCISE_TAG in tags else "ordinary"
    return problems


def exercises_only(nb: NotebookNode) -> tuple[NotebookNode, dict[int, bool]]:
    """The first code cell, then every exercise twice: the student's stub and its check, then the
    solution and its check. Returns the notebook and, for each check cell (1-based, as the grader
    counts), whether its checks must pass."""
    out = copy.deepcopy(nb)
    cells = [c for c in nb.cells if c.cell_type == "code"]
    out.cells, expected = [cells[0]], {}
    for cell, check in zip(cells, cells[1:]):
        if EXERCISE_TAG in _tags(cell):
            stub = copy.deepcopy(cell)
            stub.source, _ = strip_solutions(cell.source)
            out.cells += [stub, check, cell, check]
            expected |= {len(out.cells) - 2: False, len(out.cells): True}
    out.cells = [copy.deepcopy(c) for c in out.cells]
    for k, cell in enumerate(out.cells):
        cell.outputs, cell.execution_count = [], None
        if "id" in cell:
            cell.id = f"cell-{k}"  # each cell appears twice: keep the ids unique
    return out, expected


def quick_verify(path: str | Path, timeout: int = 300) -> list[str]:
    """Both checks of the module docstring for one chapter; the problems found (empty = sound)."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    problems = exercise_name_problems(nb, path.name)
    mini, expected = exercises_only(nb)
    if not expected:
        return problems
    with tempfile.TemporaryDirectory() as tmp:
        mini_path = Path(tmp) / path.name
        nbformat.write(mini, mini_path)
        report = grade_notebook(mini_path, timeout=timeout)
    ran = {c.cell for c in report.checks}
    for c in report.checks:
        if c.cell not in expected or c.passed != expected[c.cell]:
            should = "pass on the solution" if expected.get(c.cell) else "fail on the student's stub"
            problems.append(f"{path.name}: {c.check} should {should}: {c.message}")
    problems += [f"{path.name}: a check cell reported nothing" for cell in expected if cell not in ran]
    problems += [f"{path.name}: {e.source!r} raised {e.error}" for e in report.errors_outside_exercises]
    return problems
