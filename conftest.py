"""Root conftest: settings every test run needs, wherever pytest is started from."""

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent
SANITIZE = ROOT / "chapters" / "sanitize.cfg"

# nbval's kernels inherit this process's environment. A non-inline backend there (MPLBACKEND=Agg
# is a common CI setting) makes plt.show() display nothing, and every plot cell would then differ
# from its committed output. Unset it so kernels use Jupyter's inline backend.
os.environ.pop("MPLBACKEND", None)
os.environ.setdefault("PYTHONHASHSEED", "0")


def pytest_configure(config):
    # nbval resolves the sanitize file from the current folder; make it absolute. (pytest-xdist
    # workers receive the controller's options, already absolute, and run this hook again.)
    if getattr(config.option, "nbval_sanitize_with", "missing") is None and SANITIZE.exists():
        config.option.nbval_sanitize_with = str(SANITIZE)


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (where the OS has one), capped by a
    cgroup v2 CPU quota (a container started with ``--cpus 2`` sees every core of its host)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = pathlib.Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return cores


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: ignored where xdist is not installed
def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per usable core (``PYTEST_XDIST_AUTO_NUM_WORKERS`` overrides).
    Each worker runs one file at a time and each chapter's kernel one torch thread, so the workers
    together use every core and no more."""
    if env := os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(env)
    return usable_cores()


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, chapters first: they are the longest files (minutes each, against
    seconds for most test files), and handing out the longest work first lets the short files
    fill the gaps at the end instead of one worker finishing a chapter alone."""
    if not hasattr(config, "workerinput"):  # set in pytest-xdist's workers, which collect
        return
    items.sort(key=lambda item: not item.nodeid.split("::", 1)[0].endswith(".ipynb"))
