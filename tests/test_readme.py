"""The README's reading path matches the package, and the package stays readable.

The limits are the course's own: the reading path (the files a learner reads, in order) holds at
most 2,600 lines, no function on it is longer than 60 lines, and no module of the package is
longer than 400 lines.
"""

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
ROW = re.compile(r"^\| \d+ \| \[`(mlstep/[\w/]+\.py)`\]\([^)]*\) \| ([\d,]+) \|", re.M)


def reading_path() -> list[tuple[str, int]]:
    section = README[README.index("### Reading path"):]
    section = section[: section.index("\n#", 1)]
    return [(path, int(n.replace(",", ""))) for path, n in ROW.findall(section)]


def lines(path: str) -> int:
    return len((ROOT / path).read_text(encoding="utf-8").splitlines())


def test_reading_path_table_gives_the_true_sizes():
    rows = reading_path()
    assert rows, "no reading-path table found in README.md"
    wrong = {path: (listed, lines(path)) for path, listed in rows if lines(path) != listed}
    assert not wrong, f"README's reading path lists stale sizes (listed, actual): {wrong}"
    total = int(re.search(r"\*\*total\*\* \| \*\*([\d,]+)\*\*", README)[1].replace(",", ""))
    assert total == sum(n for _, n in rows)


def test_reading_path_is_short_and_its_functions_are_short():
    rows = reading_path()
    assert sum(n for _, n in rows) <= 2600
    for path, _ in rows:
        for node in ast.walk(ast.parse((ROOT / path).read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= 60, f"{path}: {node.name} is {length} lines long"


def test_no_module_is_over_400_lines():
    too_long = {str(p.relative_to(ROOT)): n for p in (ROOT / "mlstep").rglob("*.py")
                if (n := lines(str(p.relative_to(ROOT)))) > 400}
    assert not too_long, too_long


def test_every_reading_path_module_is_documented():
    listed = {path for path, _ in reading_path()}
    for name in ("config", "attention", "transformer", "bert", "masking", "train", "finetune", "lora", "crf",
                 "distill", "gpt", "generation"):
        assert f"mlstep/{name}.py" in listed


def test_the_top_of_the_package_is_the_reading_path_and_nothing_else():
    top = {str(p.relative_to(ROOT)) for p in (ROOT / "mlstep").glob("*.py")} - {"mlstep/__init__.py"}
    assert top == {path for path, _ in reading_path()}, "move modules off the reading path into the folder of their role"


def test_no_function_in_the_package_is_over_60_lines():
    long = [f"{p.relative_to(ROOT)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for p in (ROOT / "mlstep").rglob("*.py")
            for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60]
    assert not long, long


def imported(path: pathlib.Path) -> set[str]:
    """The mlstep modules ``path`` imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mlstep"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("mlstep"))
    return names


def test_dependencies_point_down():
    """The reading path imports only itself and mlstep.tools; tools import no model; a model file
    imports no fine-tuning or task code; tasks and multistage never import experiments."""
    above_models = ("mlstep.tasks", "mlstep.multistage", "mlstep.experiments", "mlstep.exercises")
    for path, _ in reading_path():
        bad = {m for m in imported(ROOT / path) if m.startswith(above_models) or m == "mlstep.data"}
        assert not bad, f"{path} imports {bad}"
    for name in ("bert", "gpt", "transformer", "attention"):
        assert "mlstep.finetune" not in imported(ROOT / "mlstep" / f"{name}.py"), name
    for path in (ROOT / "mlstep" / "tools").glob("*.py"):
        assert all(m.startswith("mlstep.tools") for m in imported(path)), path
    for folder in ("tasks", "multistage", "tokenizers", "metrics", "data"):
        for path in (ROOT / "mlstep" / folder).glob("*.py"):
            bad = {m for m in imported(path) if m.startswith(("mlstep.experiments", "mlstep.exercises"))}
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
