"""Committed chapters are executed top to bottom, error-free and normalised (see `make execute`)."""

import json
import pathlib
import subprocess
import sys

import pytest

CHAPTERS = sorted((pathlib.Path(__file__).resolve().parents[1] / "chapters").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_chapters():
    assert CHAPTERS, "no chapters/NN_*.ipynb found"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_executed_in_order_without_errors(path):
    cells = json.loads(path.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    counts = [c.get("execution_count") for c in code]
    assert None not in counts, f"{path.name}: some code cells were never executed: run `make execute`"
    assert counts == list(range(1, len(code) + 1)), (
        f"{path.name}: execution counts {counts} are not 1..N: re-execute top to bottom (`make execute`)"
    )
    for c in code:
        tags = c.get("metadata", {}).get("tags", [])
        errors = [o for o in c.get("outputs", []) if o["output_type"] == "error"]
        assert not errors or "raises-exception" in tags, (
            f"{path.name}: a cell stored an error without the raises-exception tag:\n{''.join(c['source'])[:200]}"
        )


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_is_normalised(path):
    result = subprocess.run(
        [sys.executable, "-m", "nbstripout", "--keep-output", "--keep-count", "--verify", str(path)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, f"{path.name} is not normalised: run `make execute` ({result.stdout})"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_imports_mlstep_instead_of_copying_it(path):
    cells = json.loads(path.read_text())["cells"]
    source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "import mlstep" in source or "from mlstep" in source
    for name in ("class MultiHeadAttention", "class BertModel", "class WordPieceTokenizer", "def train("):
        assert name not in source, f"{path.name} redefines `{name}`: import it from mlstep instead"
