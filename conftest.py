"""Root conftest: settings every test run needs, wherever pytest is started from."""

import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent
SANITIZE = ROOT / "chapters" / "sanitize.cfg"

# nbval's kernels inherit this process's environment. A non-inline backend there (MPLBACKEND=Agg
# is a common CI setting) makes plt.show() display nothing, and every plot cell would then differ
# from its committed output. Unset it so kernels use Jupyter's inline backend.
os.environ.pop("MPLBACKEND", None)
os.environ.setdefault("PYTHONHASHSEED", "0")


def pytest_configure(config):
    # nbval resolves the sanitize file from the current folder; make it absolute.
    if getattr(config.option, "nbval_sanitize_with", "missing") is None and SANITIZE.exists():
        config.option.nbval_sanitize_with = str(SANITIZE)
