"""Re-execute chapters in place (top to bottom, fresh kernel) and normalise them with nbstripout.

    python scripts/execute_chapters.py                 # every chapters/NN_*.ipynb
    python scripts/execute_chapters.py chapters/01_attention.ipynb

Run it after changing mlstep, then commit the notebooks: nbval compares their stored outputs.
"""

from __future__ import annotations

import html
import os
import pathlib
import subprocess
import sys
import time

import nbformat
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"


def finish_progress_bars(nb: nbformat.NotebookNode) -> None:
    """Store every tqdm bar as the text of its final state.

    In a notebook, tqdm draws a widget; the saved notebook keeps only the text it had when it was
    created (``0/2500``), and a viewer without the widget's state (GitHub, JupyterLab, VS Code)
    shows that frozen first frame or nothing. The kernel's last widget state (kept by nbclient) has
    the finished bar: write it into the text form and drop the widget view, so every viewer shows it.
    """
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get("application/vnd.jupyter.widget-view+json")
            box = state.get(view["model_id"], {}) if view else {}
            if box.get("model_name") != "HBoxModel" or len(box["state"].get("children", [])) != 3:
                continue
            left, bar, right = (state.get(c.removeprefix("IPY_MODEL_"), {}).get("state", {})
                                for c in box["state"]["children"])
            filled = round(10 * bar.get("value", 0) / bar["max"]) if bar.get("max") else 0
            text = f"{left.get('value', '')}|{'█' * filled}{' ' * (10 - filled)}|{right.get('value', '')}"
            output["data"]["text/plain"] = html.unescape(text).replace("\u2007", " ")
            del output["data"]["application/vnd.jupyter.widget-view+json"]


def execute(path: pathlib.Path, timeout: int = 900) -> float:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    finish_progress_bars(nb)
    nbformat.write(nb, path)
    # Same normalisation CI verifies: keep outputs and counts, drop volatile metadata and ids.
    subprocess.run([sys.executable, "-m", "nbstripout", "--keep-output", "--keep-count", str(path)],
                   check=True)
    return elapsed


def main(argv: list[str]) -> int:
    os.environ["PYTHONHASHSEED"] = "0"  # inherited by the kernel: set iteration order is stable
    os.environ.pop("MPLBACKEND", None)  # kernels must use the inline backend, or plots vanish
    paths = [pathlib.Path(a).resolve() for a in argv] or sorted(CHAPTERS.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        print("no chapters found", file=sys.stderr)
        return 1
    for path in paths:
        print(f"executing {path.relative_to(ROOT)} ...", flush=True)
        elapsed = execute(path)
        print(f"  done in {elapsed:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
