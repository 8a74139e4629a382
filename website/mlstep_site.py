"""Sphinx extension for the course website (website/build.py loads it into the generated book).

While Sphinx reads each page it

* puts an "At a glance" box under every chapter's title: the result the notebook asserts, its
  running time (where the chapter states one, or the optional chapters/runtimes.json records one)
  and how to open the chapter in JupyterLab on your own machine;
* drops progress-bar widget outputs: their saved form is the bar's first frame ("0/2500"), and
  without a live kernel there is nothing else to show (``scripts/execute_chapters.py`` saves
  finished bars as plain text instead, which the site shows like any output);
* points links to repository files that are not pages of the site (a module, a folder) at the
  repository when its address is known (``MLSTEP_REPO_URL``), else leaves their text unlinked.

The files on disk are not changed: the site shows, and offers for download, the committed
notebooks with their committed outputs.
"""

from __future__ import annotations

import json
import os
import posixpath
import re

# -------------------------------------------------------------------------------------------------
# What a chapter's first markdown cell says about itself (pure functions, tested in tests/)

_RESULT = re.compile(r"^\s*\*\*\s*Measured results?\b", re.IGNORECASE)
_RUNTIME_PARAGRAPH = re.compile(r"^\s*(\*\*|__|\*|_)?\s*(expected\s+)?running\s+time\b", re.IGNORECASE)
_RUNTIME_LINE = re.compile(r"running\s+time", re.IGNORECASE)
_LIST_START = re.compile(r"^(\s+|[-*+]\s|\d+[.)]\s)")


def _blocks(text: str) -> list[str]:
    return [b for b in re.split(r"\n[ \t]*\n", text.strip("\n")) if b.strip()]


def chapter_summary(markdown: str) -> dict:
    """The measured-result paragraph and the running-time text of a chapter's first cell.

    Returns ``{"result": str | None, "runtime": str | None, "movable": set of block texts}``:
    ``movable`` holds the paragraphs that can leave the introduction for the box without breaking
    what follows them (a paragraph followed by an indented or list block stays, and is shown twice).
    Never raises: anything not found is None.
    """
    blocks = _blocks(markdown or "")
    result = runtime = None
    movable: set[str] = set()
    for i, block in enumerate(blocks):
        nxt = blocks[i + 1] if i + 1 < len(blocks) else ""
        standalone = not _LIST_START.match(nxt)
        if result is None and _RESULT.match(block):
            result = block.strip()
            if standalone:
                movable.add(block)
        elif runtime is None and _RUNTIME_PARAGRAPH.match(block):
            runtime = block.strip()
            if standalone:
                movable.add(block)
    if runtime is None:  # a "running time" line inside some other paragraph: show it, move nothing
        for line in (markdown or "").splitlines():
            if _RUNTIME_LINE.search(line) and not line.lstrip().startswith("#"):
                runtime = line.strip()
                break
    return {"result": result, "runtime": runtime, "movable": movable}


def measured_runtime(runtimes: dict, stem: str) -> float | None:
    """Seconds recorded for chapter ``stem`` in a runtimes mapping; None when absent or malformed.

    Accepts ``{"01_attention": 12.3}``, ``{"01_attention.ipynb": ...}``, ``{"chapters/01_attention.ipynb": ...}``
    and values that are numbers or ``{"seconds": ...}``.
    """
    if not isinstance(runtimes, dict):
        return None
    for key in (stem, f"{stem}.ipynb", f"chapters/{stem}.ipynb"):
        value = runtimes.get(key)
        if isinstance(value, dict):
            value = value.get("seconds")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return float(value)
    return None


def format_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    return f"about {seconds / 60:.1f} min".replace(".0 min", " min")


def glance_box(stem: str, summary: dict, seconds: float | None) -> str:
    """The MyST markup of the box shown under a chapter's title."""
    lines = []
    if summary.get("result"):
        lines.append(summary["result"])
    runtime = summary.get("runtime")
    if runtime:
        lines.append(runtime if runtime.lstrip().startswith(("*", "_")) else f"**Running time:** {runtime}")
    if seconds is not None:
        lines.append(f"**Measured running time** (last full execution): {format_seconds(seconds)}.")
    lines.append(
        f"**Run it locally:** `make lab` in a clone of the repository, then open `{stem}.ipynb` "
        f"— JupyterLab's default address for it is "
        f"[localhost:8888/lab/tree/{stem}.ipynb](http://localhost:8888/lab/tree/{stem}.ipynb) "
        f"(a link to your own machine: it works while `make lab` runs; the download button "
        f"above gives this notebook as committed)."
    )
    body = "\n\n".join(lines)
    return f"````{{admonition}} At a glance\n:class: tip mlstep-glance\n\n{body}\n````"


def add_glance(nb: dict, stem: str, seconds: float | None) -> dict:
    """Insert the box under the chapter's title (its first ``# `` heading).

    The summary comes from the first markdown cell. A notebook without a ``# `` title gets one made
    from its file name, so that it still has a page title and a sidebar entry.
    """
    cells = nb.setdefault("cells", [])
    markdown = [c for c in cells if c.get("cell_type") == "markdown"]
    first_source = _text(markdown[0]["source"]) if markdown else ""
    summary = chapter_summary(first_source)
    box = glance_box(stem, summary, seconds)
    for cell in markdown:
        lines = _text(cell["source"]).split("\n")
        h1 = next((i for i, line in enumerate(lines) if re.match(r"^#\s", line)), None)
        if h1 is None:
            continue
        head = "\n".join(lines[: h1 + 1])
        rest = "\n".join(lines[h1 + 1 :])
        if cell is markdown[0]:
            for block in summary["movable"]:
                rest = rest.replace(block, "", 1)
            rest = re.sub(r"\n{3,}", "\n\n", rest)
        cell["source"] = f"{head}\n\n{box}\n\n{rest.strip(chr(10))}\n"
        return nb
    number, _, name = stem.partition("_")
    title = f"# Chapter {number} — {name.replace('_', ' ').capitalize()}" if name else f"# {stem}"
    cells.insert(0, {"cell_type": "markdown", "metadata": {}, "source": f"{title}\n\n{box}\n"})
    return nb


def drop_progress_widgets(nb: dict) -> dict:
    """Remove display outputs that are only a widget view (+ its text fallback)."""
    for cell in nb.get("cells", []):
        outputs = cell.get("outputs")
        if not outputs:
            continue
        cell["outputs"] = [
            o for o in outputs
            if not ("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                    and set(o["data"]) <= {"application/vnd.jupyter.widget-view+json", "text/plain"})
        ]
    return nb


def _text(source) -> str:
    return "".join(source) if isinstance(source, list) else (source or "")


# -------------------------------------------------------------------------------------------------
# Links to repository files that are not pages of the site

_LINK = re.compile(r"(?<!!)\[([^\]\n]*)\]\(([^)\s]+)\)")


def rewrite_links(markdown: str, doc_repo_path: str, pages: dict[str, str], repo_url: str | None,
                  branch: str = "main") -> str:
    """Rewrite relative markdown links of a page that lives at ``doc_repo_path`` in the repository.

    ``pages`` maps repository paths of staged pages to their paths in the site source (README.md ->
    index.md). A link to a page keeps working (rewritten to the staged path); a link to anything
    else in the repository goes to ``repo_url`` (blob/tree view) or, without one, becomes its text.
    """
    doc_dir = posixpath.dirname(doc_repo_path)
    site_dir = posixpath.dirname(pages.get(doc_repo_path, doc_repo_path))

    def fix(match: re.Match) -> str:
        text, target = match.group(1), match.group(2)
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith(("#", "/")):
            return match.group(0)  # absolute URL, mailto:, in-page anchor or site-absolute
        path, _, fragment = target.partition("#")
        repo_path = posixpath.normpath(posixpath.join(doc_dir, path))
        if repo_path.startswith(".."):
            return match.group(0)
        if repo_path in pages:
            new = posixpath.relpath(pages[repo_path], site_dir or ".")
            return f"[{text}]({new}{'#' + fragment if fragment else ''})"
        if repo_url:
            kind = "tree" if path.endswith("/") else "blob"
            return f"[{text}]({repo_url.rstrip('/')}/{kind}/{branch}/{repo_path})"
        return text

    return _LINK.sub(fix, markdown)


# -------------------------------------------------------------------------------------------------
# Sphinx hooks

_CHAPTER = re.compile(r"^chapters/(\d\d_[^/]+)$")


def _on_source_read(app, docname: str, source: list) -> None:
    pages = app.config.mlstep_pages or {}
    repo_paths = {site: repo for repo, site in pages.items()}
    path = str(app.env.doc2path(docname, base=False))
    repo_path = repo_paths.get(path, path)
    repo_url = os.environ.get("MLSTEP_REPO_URL") or None
    branch = os.environ.get("MLSTEP_REPO_BRANCH", "main")
    if path.endswith(".ipynb"):
        nb = json.loads(source[0])
        chapter = _CHAPTER.match(docname)
        if chapter:
            stem = chapter.group(1)
            seconds = measured_runtime(app.config.mlstep_runtimes or {}, stem)
            add_glance(drop_progress_widgets(nb), stem, seconds)
        for cell in nb.get("cells", []):
            if cell.get("cell_type") == "markdown":
                cell["source"] = rewrite_links(_text(cell["source"]), repo_path, pages, repo_url, branch)
        source[0] = json.dumps(nb)
    elif path.endswith(".md"):
        source[0] = rewrite_links(source[0], repo_path, pages, repo_url, branch)


def setup(app):
    app.add_config_value("mlstep_pages", {}, "env")      # repository path -> site source path
    app.add_config_value("mlstep_runtimes", {}, "env")   # chapters/runtimes.json, when committed
    app.connect("source-read", _on_source_read)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
