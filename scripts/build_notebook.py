"""Build a notebook from a percent-format script (an authoring aid; the .ipynb stays the source).

Cells start with a line `# %%` (code) or `# %% [markdown]` (markdown), optionally followed by
`tags=["a", "b"]`. Markdown cell lines may start with `# ` (stripped). Example:

    # %% [markdown]
    # # Title
    # %% tags=["nbval-ignore-output"]
    train(...)

    python scripts/build_notebook.py draft.py chapters/01_attention.ipynb
"""

from __future__ import annotations

import json
import re
import sys

import nbformat

HEADER = re.compile(r"^# %%(?P<md> \[markdown\])?(?:\s+tags=(?P<tags>\[.*\]))?\s*$")


def parse(text: str) -> list[nbformat.NotebookNode]:
    cells, kind, tags, lines = [], None, [], []

    def flush():
        if kind is None:
            return
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in body.split("\n"))
            cell = nbformat.v4.new_markdown_cell(body)
        else:
            cell = nbformat.v4.new_code_cell(body)
        if tags:
            cell.metadata["tags"] = tags
        cells.append(cell)

    for line in text.split("\n"):
        m = HEADER.match(line)
        if m:
            flush()
            kind = "markdown" if m.group("md") else "code"
            tags = json.loads(m.group("tags")) if m.group("tags") else []
            lines = []
        else:
            lines.append(line)
    flush()
    return cells


def main(src: str, dst: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = parse(open(src, encoding="utf-8").read())
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    nbformat.write(nb, dst)


if __name__ == "__main__":
    main(*sys.argv[1:3])
