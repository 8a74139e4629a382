"""Student editions of the chapters (nbgrader-style markers, no nbgrader needed).

A chapter's exercise is a code cell tagged ``exercise`` whose reference code sits between
``### BEGIN SOLUTION`` and ``### END SOLUTION``; the next cell, tagged ``exercise-check``, calls a
``check_*`` helper from :mod:`mlstep.exercises`::

    def attention_weights(q, k, mask=None):        # tags: ["exercise"]
        ### BEGIN SOLUTION
        ...reference code...
        ### END SOLUTION

    assert check_attention_weights(attention_weights)   # tags: ["exercise-check"]

The student edition replaces each solution block by ``raise NotImplementedError(...)`` and clears
all outputs. ``python -m mlstep.exercises`` is the command line (``make student``).
"""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import nbformat
from nbformat import NotebookNode

__all__ = ["ExerciseError", "strip_solutions", "exercise_problems", "student_notebook", "solution_leaks",
           "write_student_editions"]

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


