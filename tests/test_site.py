"""The course website (``make site``): how pages are made, and the built site in a real browser.

* The helpers that make the "At a glance" box and fix links run everywhere (no site, no browser).
* The built-site checks need ``build/site/html`` (``make site``) and skip without it.
* The browser checks open every chapter page in headless Chromium (the system's browser, driven by
  Playwright; ``playwright install`` is never needed) and skip where no Chromium is installed
  (Debian: ``apt-get install chromium``; ``MLSTEP_CHROMIUM=/path/to/chrome`` to pick one;
  ``MLSTEP_REQUIRE_BROWSER=1`` makes a missing browser a failure instead of a skip).
  Screenshots of the home page and of a chapter are kept in ``build/site-test/``.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "build" / "site" / "html"
ARTEFACTS = ROOT / "build" / "site-test"
CHAPTERS = sorted(ROOT.glob("chapters/[0-9][0-9]_*.ipynb"))

sys.path.insert(0, str(ROOT / "website"))
import mlstep_site  # noqa: E402

# --------------------------------------------------------------------------------------------------
# How chapter pages are made (no site, no browser needed)

FIRST_CELL = """# Chapter 99 — Example

Intro with $x^2$.

**You will:** learn things.

**Measured results (asserted below):** accuracy ≥ 0.9;
the loss falls.

**Running time:** about 2 minutes on one CPU thread.
"""


def test_summary_finds_result_and_runtime():
    s = mlstep_site.chapter_summary(FIRST_CELL)
    assert s["result"].startswith("**Measured results (asserted below):** accuracy")
    assert "the loss falls." in s["result"]
    assert s["runtime"] == "**Running time:** about 2 minutes on one CPU thread."
    assert len(s["movable"]) == 2


@pytest.mark.parametrize("text", ["", "# Only a title", "no heading at all\n\nand **bold**", None])
def test_summary_without_result_or_runtime_is_empty_not_an_error(text):
    s = mlstep_site.chapter_summary(text)
    assert s["result"] is None and s["runtime"] is None


def test_runtime_line_inside_a_paragraph_is_shown_but_not_moved():
    s = mlstep_site.chapter_summary("# T\n\nIt trains a model (running time ≈ 3 min on a laptop).\nMore.")
    assert s["runtime"] == "It trains a model (running time ≈ 3 min on a laptop)."
    assert not s["movable"]


def test_result_followed_by_a_list_stays_in_place():
    s = mlstep_site.chapter_summary("# T\n\n**Measured result:** all of\n\n- one\n- two\n")
    assert s["result"] == "**Measured result:** all of" and not s["movable"]


def test_glance_box_goes_under_the_title_and_moves_the_paragraphs():
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": FIRST_CELL},
                    {"cell_type": "code", "metadata": {}, "source": "1", "outputs": []}]}
    mlstep_site.add_glance(nb, "99_example", seconds=75.2)
    text = nb["cells"][0]["source"]
    assert text.startswith("# Chapter 99 — Example\n\n````{admonition} At a glance")
    assert text.count("Measured results (asserted below)") == 1  # moved, not repeated
    assert text.count("Running time:** about 2 minutes") == 1
    assert "about 75 s" in text
    assert "http://localhost:8888/lab/tree/99_example.ipynb" in text
    assert "Intro with $x^2$." in text and "**You will:** learn things." in text


def test_glance_box_without_first_markdown_cell():
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": "1", "outputs": []}]}
    mlstep_site.add_glance(nb, "42_new_things", seconds=None)
    assert nb["cells"][0]["cell_type"] == "markdown"
    assert nb["cells"][0]["source"].startswith("# Chapter 42 — New things\n")  # a page title all the same
    assert "Run it locally" in nb["cells"][0]["source"]
    assert "Measured" not in nb["cells"][0]["source"]


@pytest.mark.parametrize("runtimes, expected", [
    ({"01_a": 12.5}, 12.5),
    ({"01_a.ipynb": {"seconds": 3}}, 3.0),
    ({"chapters/01_a.ipynb": 7}, 7.0),
    ({"01_a": "fast"}, None),
    ({"01_a": True}, None),
    ({}, None),
    ([], None),
])
def test_measured_runtime_is_optional_and_tolerant(runtimes, expected):
    assert mlstep_site.measured_runtime(runtimes, "01_a") == expected


def test_progress_bar_widgets_are_dropped_other_outputs_kept():
    widget = {"output_type": "display_data", "metadata": {},
              "data": {"application/vnd.jupyter.widget-view+json": {"model_id": "x"},
                       "text/plain": ["train:   0%|  | 0/10"]}}
    png = {"output_type": "display_data", "metadata": {}, "data": {"image/png": "iVBOR", "text/plain": "<Figure>"}}
    nb = {"cells": [{"cell_type": "code", "outputs": [widget, png]}]}
    assert mlstep_site.drop_progress_widgets(nb)["cells"][0]["outputs"] == [png]


PAGES = {"README.md": "index.md", "chapters/01_a.ipynb": "chapters/01_a.ipynb", "data/README.md": "data/README.md"}


def test_links_to_pages_follow_them_into_the_site():
    md = "[one](chapters/01_a.ipynb) [card](data/README.md#how) [web](https://x.org) [top](#top)"
    assert mlstep_site.rewrite_links(md, "README.md", PAGES, None) == md
    assert mlstep_site.rewrite_links("[home](../README.md)", "data/README.md", PAGES, None) == "[home](../index.md)"
    assert mlstep_site.rewrite_links("![plot](fig.png)", "README.md", PAGES, None) == "![plot](fig.png)"


def test_links_to_other_repository_files_go_to_the_repository_or_become_text():
    md = "see [the corpus](../mlstep/data/corpus.py) and [scripts/](../scripts/)"
    assert (mlstep_site.rewrite_links(md, "chapters/01_a.ipynb", PAGES, None)
            == "see the corpus and scripts/")
    assert (mlstep_site.rewrite_links(md, "chapters/01_a.ipynb", PAGES, "https://github.com/o/r/")
            == "see [the corpus](https://github.com/o/r/blob/main/mlstep/data/corpus.py) and "
               "[scripts/](https://github.com/o/r/tree/main/scripts)")


# --------------------------------------------------------------------------------------------------
# The built site (needs `make site`)

needs_site = pytest.mark.skipif(
    not (SITE / "index.html").is_file(),
    reason=f"site not built: run `make site` first (looked for {SITE.relative_to(ROOT)}/index.html)",
)


def page_of(nb: Path) -> Path:
    return SITE / "chapters" / (nb.stem + ".html")


@needs_site
def test_every_chapter_has_a_page_in_sidebar_order():
    assert CHAPTERS, "no chapters found"
    index = (SITE / "index.html").read_text(encoding="utf-8")
    positions = [index.find(f'href="chapters/{nb.stem}.html"') for nb in CHAPTERS]
    assert all(p >= 0 for p in positions), [nb.name for nb, p in zip(CHAPTERS, positions) if p < 0]
    assert positions == sorted(positions), "sidebar is not in chapter (file-name) order"
    for nb in CHAPTERS:
        assert page_of(nb).is_file(), f"no page for {nb.name}"


# An external asset: a <script src>, <link href> (stylesheet, preload, icon), <img src>, <iframe src>
# or CSS url()/@import with an absolute http(s) or protocol-relative address.
_EXTERNAL_TAG = re.compile(
    r"<(script|link|img|iframe|source)\b[^>]*?\b(src|href)\s*=\s*[\"']?\s*(https?:)?//", re.IGNORECASE)
_EXTERNAL_CSS = re.compile(r"(url\(\s*[\"']?|@import\s+[\"'])\s*(https?:)?//", re.IGNORECASE)


@needs_site
def test_site_loads_nothing_from_other_hosts():
    """No CDN: every script, style, font and image is served by the site itself."""
    bad = []
    for path in SITE.rglob("*"):
        if path.suffix == ".html":
            for m in _EXTERNAL_TAG.finditer(path.read_text(encoding="utf-8", errors="replace")):
                tag = m.group(0)
                if m.group(1).lower() == "link" and not re.search(
                        r"rel\s*=\s*[\"']?(stylesheet|preload|icon|modulepreload)", tag, re.IGNORECASE):
                    continue
                bad.append(f"{path.relative_to(SITE)}: {tag[:120]}")
        elif path.suffix == ".css":
            for m in _EXTERNAL_CSS.finditer(path.read_text(encoding="utf-8", errors="replace")):
                bad.append(f"{path.relative_to(SITE)}: {m.group(0)}")
    assert not bad, "external assets:\n" + "\n".join(bad)
    assert (SITE / "_static" / "mathjax" / "tex-chtml.js").is_file(), "MathJax is not bundled"


# --------------------------------------------------------------------------------------------------
# In a real browser (needs `make site`, Chromium and Playwright)

CHROMIUM_FLAGS = ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def find_chromium() -> str | None:
    candidates = [os.environ.get("MLSTEP_CHROMIUM"), "/usr/bin/chromium"]
    candidates += [shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome",
                                             "google-chrome-stable")]
    return next((c for c in candidates if c and os.path.isfile(c) and os.access(c, os.X_OK)), None)


def _browser_skip_reason() -> str | None:
    if not (SITE / "index.html").is_file():
        return "site not built: run `make site` first"
    if find_chromium() is None:
        return ("no Chromium found (/usr/bin/chromium, chromium on PATH, or MLSTEP_CHROMIUM): "
                "install it with `apt-get install chromium` to run the browser checks")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed: pip install -e '.[site]'"
    return None


# Where the browser checks must run (the Pages workflow), MLSTEP_REQUIRE_BROWSER=1 turns a skip into a failure.
REQUIRE_BROWSER = os.environ.get("MLSTEP_REQUIRE_BROWSER", "") not in ("", "0")
needs_browser = pytest.mark.skipif(
    _browser_skip_reason() is not None and not REQUIRE_BROWSER, reason=str(_browser_skip_reason()))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return  # the browser dropped a connection it no longer needed (closing a page)
        super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def server():
    """The built site over HTTP on 127.0.0.1 (search needs http://, not file://)."""
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    httpd = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    if _browser_skip_reason() is not None:  # only reached with MLSTEP_REQUIRE_BROWSER=1
        pytest.fail(f"MLSTEP_REQUIRE_BROWSER is set but {_browser_skip_reason()}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # Playwright gives each launch a fresh temporary profile (the user-data dir) and --no-sandbox.
        b = pw.chromium.launch(executable_path=find_chromium(), headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


class Visit:
    """Open one page, recording console errors, page errors and requests to other hosts."""

    def __init__(self, browser, url: str):
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.offsite: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console.error: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.route("**/*", self._route)
        self.response = self.page.goto(url, wait_until="load")
        self.page.wait_for_load_state("networkidle")

    def _route(self, route):
        host = urllib.parse.urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", "localhost") or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:  # the site must work offline: nothing may come from elsewhere
            self.offsite.append(route.request.url)
            route.abort()

    def typeset(self) -> None:
        """Wait until MathJax (when the page loads it) has finished typesetting."""
        if self.page.evaluate("() => !!(window.MathJax && MathJax.startup)"):
            self.page.wait_for_function(
                "() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30_000)
            self.page.evaluate("() => MathJax.startup.promise.then(() => true)")

    def close(self) -> None:
        self.context.close()


def _output_images(nb: Path) -> int:
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    return sum(1 for c in cells for o in c.get("outputs", [])
               if any(k.startswith("image/") for k in o.get("data", {})))


def _has_math(nb: Path) -> bool:
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    return any("$" in "".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


_FETCHED: dict[str, tuple[int, str]] = {}


def _fetch(url: str) -> tuple[int, str]:
    if url not in _FETCHED:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = r.read().decode("utf-8", errors="replace") if url.endswith((".html", "/")) else ""
                _FETCHED[url] = (r.status, body)
        except urllib.error.HTTPError as e:
            _FETCHED[url] = (e.code, "")
    return _FETCHED[url]


def check_internal_links(page, server: str) -> list[str]:
    """Every link to this site answers 200, and an #anchor in it names an element of the target."""
    broken = []
    for href in sorted(set(page.eval_on_selector_all("a[href]", "els => els.map(a => a.href)"))):
        if not href.startswith(server):
            continue  # another site, or the learner's own JupyterLab (http://localhost:8888/...)
        url, _, fragment = href.partition("#")
        status, body = _fetch(url)
        if status != 200:
            broken.append(f"{href}: HTTP {status}")
        elif fragment and body and not re.search(
                r"""\b(id|name)=["']?""" + re.escape(urllib.parse.unquote(fragment)) + r"""["'\s>]""", body):
            broken.append(f"{href}: no element #{fragment}")
    return broken


@needs_browser
@pytest.mark.parametrize("nb", CHAPTERS, ids=[nb.stem for nb in CHAPTERS])
def test_chapter_page_in_browser(browser, server, nb):
    visit = Visit(browser, server + f"chapters/{nb.stem}.html")
    try:
        assert visit.response is not None and visit.response.status == 200
        page = visit.page
        visit.typeset()

        # the box at the top: the asserted result (when the chapter states one) and how to run it
        glance = page.locator(".mlstep-glance")
        assert glance.count() == 1, "no 'At a glance' box"
        first_md = next((c for c in json.loads(nb.read_text(encoding="utf-8"))["cells"]
                         if c["cell_type"] == "markdown"), None)
        if first_md and mlstep_site.chapter_summary("".join(first_md["source"]))["result"]:
            assert "Measured result" in glance.inner_text()
        assert f"lab/tree/{nb.name}" in glance.inner_html()
        box_top = glance.bounding_box()["y"]
        h1 = page.locator("article.bd-article h1").first.bounding_box()
        h1_bottom = h1["y"] + h1["height"]  # a long title wraps onto several lines
        assert h1_bottom <= box_top < h1_bottom + 150, "the box is not right under the title"

        # plots: every image loaded and displayed, at least one per image output of the notebook
        images = page.eval_on_selector_all(
            "main img", "els => els.map(i => [i.currentSrc || i.src, i.complete, i.naturalWidth, i.naturalHeight])")
        not_shown = [src for src, complete, w, h in images if not (complete and w > 0 and h > 0)]
        assert not not_shown, f"images not displayed: {not_shown}"
        outputs = _output_images(nb)
        shown = page.locator("main .cell_output img").count()
        assert shown >= outputs, f"{outputs} image outputs in the notebook, {shown} on the page"

        # math: typeset by MathJax, without errors
        if _has_math(nb):
            status = page.evaluate("""() => {
                const math = [...document.querySelectorAll('main .math')];
                return {math: math.length,
                        typeset: math.filter(m => m.querySelector('mjx-container')).length,
                        errors: document.querySelectorAll('mjx-merror').length};
            }""")
            assert status["math"] > 0, "the chapter has $math$ but the page has none"
            assert status["typeset"] == status["math"], f"math not typeset: {status}"
            assert status["errors"] == 0, f"MathJax errors: {status}"

        broken = check_internal_links(page, server)
        assert not broken, "broken internal links:\n" + "\n".join(broken)

        if nb == _screenshot_chapter():
            ARTEFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTEFACTS / f"{nb.stem}.png"), full_page=True)

        assert not visit.offsite, f"requests to other hosts: {visit.offsite}"
        assert not visit.errors, "\n".join(visit.errors)
    finally:
        visit.close()


def _screenshot_chapter() -> Path | None:
    """The first chapter with both plots and math (else the first chapter): one of the two screenshots."""
    return next((nb for nb in CHAPTERS if _output_images(nb) and _has_math(nb)), CHAPTERS[0] if CHAPTERS else None)


@needs_browser
def test_home_page_in_browser(browser, server):
    visit = Visit(browser, server + "index.html")
    try:
        page = visit.page
        visit.typeset()
        sidebar = page.eval_on_selector_all(
            "nav.bd-links a.reference.internal", "els => els.map(a => a.getAttribute('href'))")
        chapter_links = [h for h in sidebar if h.startswith("chapters/")]
        assert chapter_links == [f"chapters/{nb.stem}.html" for nb in CHAPTERS], sidebar
        broken = check_internal_links(page, server)
        assert not broken, "broken internal links:\n" + "\n".join(broken)
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTEFACTS / "index.png"), full_page=True)
        assert not visit.offsite, f"requests to other hosts: {visit.offsite}"
        assert not visit.errors, "\n".join(visit.errors)
    finally:
        visit.close()


def _search_word(nb: Path) -> str:
    """A word of the chapter's title (its longest), to search for."""
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    text = next(("".join(c["source"]) for c in cells if c["cell_type"] == "markdown"), "")
    title = next((line[2:] for line in text.splitlines() if line.startswith("# ")), nb.stem)
    words = [w for w in re.findall(r"[A-Za-z]{4,}", title) if w.lower() != "chapter"]
    return max(words or re.findall(r"[A-Za-z]{4,}", nb.stem) or ["chapter"], key=len).lower()


def _search(visit: Visit) -> list[str]:
    page = visit.page
    page.wait_for_function(
        "() => { const s = document.querySelector('#search-results .search-summary');"
        " return s && s.textContent.trim().length > 0 && !/^\\s*(Searching|Preparing)/i.test(s.textContent); }",
        timeout=30_000)
    return page.eval_on_selector_all("#search-results ul.search li a", "els => els.map(a => a.getAttribute('href'))")


@needs_browser
def test_search_box_finds_a_chapter(browser, server):
    """Type a word into the sidebar's search box, as a reader would, and find its chapter."""
    nb = CHAPTERS[0]
    word = _search_word(nb)
    visit = Visit(browser, server + "index.html")
    try:
        visit.page.locator(".search-button__button:visible").first.click()  # opens the search dialog
        box = visit.page.locator("#pst-search-dialog input[name='q']")
        box.fill(word)
        box.press("Enter")
        visit.page.wait_for_url("**/search.html?q=*")
        results = _search(visit)
        assert any(nb.stem in r for r in results), f"searching {word!r} did not find {nb.name}: {results}"
        assert not visit.offsite, f"requests to other hosts: {visit.offsite}"
        assert not visit.errors, "\n".join(visit.errors)
    finally:
        visit.close()


@needs_browser
@pytest.mark.parametrize("nb", CHAPTERS, ids=[nb.stem for nb in CHAPTERS])
def test_search_finds_each_chapter(browser, server, nb):
    word = _search_word(nb)
    visit = Visit(browser, server + "search.html?q=" + urllib.parse.quote(word))
    try:
        results = _search(visit)
        assert any(nb.stem in r for r in results), f"searching {word!r} did not find {nb.name}: {results}"
        assert not visit.errors, "\n".join(visit.errors)
    finally:
        visit.close()

