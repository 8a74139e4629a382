"""The README's reading path matches the package, and the package stays readable.

The limits are the course's own: the reading path (the files a learner reads, in order) holds at
most 2,200 lines, no function on it is longer than 60 lines, and no module of the package is
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
    assert sum(n for _, n in rows) <= 2200
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
    for name in ("config", "attention", "transformer", "bert", "masking", "train", "finetune", "lora", "distill",
                 "gpt", "generation"):
        assert f"mlstep/{name}.py" in listed
