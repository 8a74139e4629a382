"""Build the course website from what is committed: ``python website/build.py`` (``make site``).

1. Stages README.md (as the home page), every ``chapters/NN_*.ipynb`` in file-name order, the data
   card and the benchmark results into ``build/site-src``, with a Jupyter Book configuration and
   table of contents generated from them (chapters are discovered, never listed by hand).
2. Builds static HTML into ``build/site/html`` with Jupyter Book 1 (Sphinx + MyST-NB). Notebooks
   are **not executed**: pages show the committed outputs, the ones nbval checks.

Everything comes from installed Python packages, MathJax included (sphinx-mathjax-offline ships
it and the build copies it into the site), so the build needs no network and the site references
no CDN: it works opened from disk, served locally, or published on GitHub Pages.

Options: ``--out DIR`` (default build/site), ``--repo-url URL`` (or ``MLSTEP_REPO_URL``: links to
repository files that are not pages of the site point there; without it they become plain text).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent

# Pages besides the home page and the chapters, in sidebar order (under "Reference"). Missing ones are skipped.
REFERENCE_PAGES = ["data/README.md", "benchmarks/README.md"]


def discover_chapters(root: Path = ROOT) -> list[Path]:
    return sorted((root / "chapters").glob("[0-9][0-9]_*.ipynb"))


def stage(src: Path) -> dict[str, str]:
    """Copy the sources into ``src``; return {repository path: site source path} of every page."""
    if src.exists():
        shutil.rmtree(src)
    (src / "_ext").mkdir(parents=True)
    pages: dict[str, str] = {"README.md": "index.md"}
    shutil.copyfile(ROOT / "README.md", src / "index.md")
    for nb in discover_chapters():
        rel = nb.relative_to(ROOT).as_posix()
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(nb, src / rel)
        pages[rel] = rel
    for rel in REFERENCE_PAGES:
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / rel, src / rel)
            pages[rel] = rel
    shutil.copyfile(HERE / "mlstep_site.py", src / "_ext" / "mlstep_site.py")
    return pages


def _runtimes() -> dict:
    path = ROOT / "chapters" / "runtimes.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_config(src: Path, pages: dict[str, str], repo_url: str | None) -> None:
    chapters = [p for p in pages.values() if p.endswith(".ipynb")]
    reference = [p for r, p in pages.items() if r in REFERENCE_PAGES]
    toc = {
        "format": "jb-book",
        "root": "index",
        "parts": [{"caption": "Chapters", "chapters": [{"file": p.rsplit(".", 1)[0]} for p in chapters]}],
    }
    if reference:
        toc["parts"].append(
            {"caption": "Reference", "chapters": [{"file": p.rsplit(".", 1)[0]} for p in reference]}
        )
    config = {
        "title": "mlstep",
        "author": "the mlstep authors",
        "copyright": "",
        "only_build_toc_files": True,
        "execute": {"execute_notebooks": "off"},  # pages show the committed outputs
        "html": {
            "use_repository_button": bool(repo_url),
            "use_issues_button": bool(repo_url),
            "home_page_in_navbar": True,
            "extra_footer": "Built from the committed, executed chapters; nothing was re-run to make this site.",
        },
        "launch_buttons": {"notebook_interface": "jupyterlab"},
        "repository": {"url": repo_url or "", "branch": os.environ.get("MLSTEP_REPO_BRANCH", "main")},
        "sphinx": {
            # sphinx-mathjax-offline copies MathJax 3 into _static/mathjax: no CDN, online or off.
            "extra_extensions": ["sphinx-mathjax-offline"],
            "local_extensions": {"mlstep_site": "_ext"},
            "config": {
                "mathjax_path": "mathjax/tex-chtml.js",
                # `[...](#a-heading)` links work as on GitHub
                "myst_heading_anchors": 3,
                # MyST-NB would load require.js and the widget manager from CDNs to draw widgets,
                # which need a live kernel anyway: no widget loader, and an output that has a
                # widget view shows its static form instead (the chapters' only widgets, progress
                # bars, are dropped by mlstep_site: their static form is the bar at 0 %).
                "nb_ipywidgets_js": {},
                "nb_mime_priority_overrides": [["html", "application/vnd.jupyter.widget-view+json", None]],
                "mlstep_pages": pages,
                "mlstep_runtimes": _runtimes(),
                "html_show_copyright": False,
                "html_last_updated_fmt": None,
            },
        },
    }
    # JSON is YAML: no YAML writer needed.
    (src / "_config.yml").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    (src / "_toc.yml").write_text(json.dumps(toc, indent=2, ensure_ascii=False) + "\n")


# Appended to the generated conf.py: settings _config.yml cannot express.
CONF_TAIL = """
# Live code (thebe) needs a Binder; without one sphinx-thebe only adds its loader twice to every
# page, which the browser reports as an error ("THEBE_JS_URL has already been declared").
# Comments (hypothesis, utterances) are off. Neither extension has work to do here.
extensions = [e for e in extensions if e not in ("sphinx_thebe", "sphinx_comments")]
# Heading levels that skip one (# then ###) are the author's choice, not a broken page; every
# other warning fails the build (-W).
suppress_warnings = [*globals().get("suppress_warnings", []), "myst.header"]
# An empty default mode makes the theme log "Got invalid theme mode" on every first visit.
html_context = {**globals().get("html_context", {}), "default_mode": "light"}
"""


def build(src: Path, out: Path) -> None:
    bindir = Path(sys.executable).parent
    jb = shutil.which("jupyter-book", path=str(bindir)) or shutil.which("jupyter-book")
    if jb is None:
        sys.exit("jupyter-book is not installed: pip install -e '.[site]' (or run `make site`)")
    # Jupyter Book turns _config.yml + _toc.yml into a Sphinx conf.py; Sphinx builds the HTML.
    subprocess.run([jb, "config", "sphinx", str(src)], check=True, stdout=subprocess.DEVNULL)
    conf = src / "conf.py"
    conf.write_text(
        # `jupyter-book config` lists local extensions but leaves sys.path alone
        'import os, sys\nsys.path.insert(0, os.path.abspath("_ext"))\n' + conf.read_text() + CONF_TAIL)
    if out.exists():
        shutil.rmtree(out)
    # -W: a warning (a link to nowhere, a missing image, a bad directive) fails the build.
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", "--keep-going",
         "-d", str(out / "doctrees"), str(src), str(out / "html")],
    )
    if done.returncode != 0:
        sys.exit(f"site build failed: Sphinx reported the problems above (warnings count as errors; "
                 f"paths are in {src.relative_to(ROOT) if src.is_relative_to(ROOT) else src})")


# MathJax's combined components besides tex-chtml.js, the one the site loads: ~14 MB nothing requests.
# (Its lazily loaded parts - input/, output/, ui/, a11y/, sre/ - stay.)
UNUSED_MATHJAX = ["mml-chtml.js", "mml-svg.js", "node-main.js", "tex-chtml-full-speech.js",
                  "tex-chtml-full.js", "tex-mml-chtml.js", "tex-mml-svg.js", "tex-svg-full.js", "tex-svg.js"]


def prune_mathjax(html: Path) -> None:
    mathjax = html / "_static" / "mathjax"
    if (mathjax / "tex-chtml.js").is_file():
        for name in UNUSED_MATHJAX:
            (mathjax / name).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "site")
    parser.add_argument("--src", type=Path, default=ROOT / "build" / "site-src")
    parser.add_argument("--repo-url", default=os.environ.get("MLSTEP_REPO_URL") or None)
    args = parser.parse_args(argv)
    if args.repo_url:
        os.environ["MLSTEP_REPO_URL"] = args.repo_url  # read by mlstep_site while Sphinx runs
    start = time.perf_counter()
    pages = stage(args.src)
    if not any(p.endswith(".ipynb") for p in pages.values()):
        print("no chapters found (chapters/NN_*.ipynb)", file=sys.stderr)
        return 1
    write_config(args.src, pages, args.repo_url)
    build(args.src, args.out)
    prune_mathjax(args.out / "html")
    index = args.out / "html" / "index.html"
    print(f"site built in {time.perf_counter() - start:.0f} s: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
