"""How the tests themselves are run: pytest's default options, the worker count, CI's entry point."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _root_conftest():
    """The repository's root conftest.py as a module (pytest loads it under a name of its own)."""
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_default_run_spreads_whole_files_over_the_cores():
    """`make test` and `.ci/run` use these options: xdist with whole files per worker (a chapter's
    cells in order, in one kernel), the order conftest.py gives kept, and pytest-xdist installed."""
    config = _pyproject()
    addopts = config["tool"]["pytest"]["ini_options"]["addopts"].split()
    for option in ("--nbval", "-n", "auto", "--dist", "loadfile", "--no-loadscope-reorder"):
        assert option in addopts
    assert addopts[addopts.index("--dist") + 1] == "loadfile"
    assert any(dep.startswith("pytest-xdist") for dep in config["project"]["optional-dependencies"]["dev"])
    assert "pytest-xdist" in (ROOT / "environment.yml").read_text(encoding="utf-8")


def test_auto_worker_count_is_the_usable_cores(monkeypatch):
    conftest = _root_conftest()
    cores = conftest.usable_cores()
    assert 1 <= cores <= (os.cpu_count() or 1)
    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    assert conftest.pytest_xdist_auto_num_workers(config=None) == cores
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "3")
    assert conftest.pytest_xdist_auto_num_workers(config=None) == 3


def test_workers_take_chapters_first():
    """Inside an xdist worker, notebooks are moved before test files (the longest work first);
    outside one, the collection order is left alone."""

    class Item:
        def __init__(self, nodeid: str):
            self.nodeid = nodeid

    class Config:
        class option:  # noqa: N801 (pytest's own attribute name)
            pass

    names = ["tests/test_a.py::test_x", "chapters/01_a.ipynb::Cell 0", "tests/test_b.py::test_y",
             "chapters/02_b.ipynb::Cell 0"]
    conftest = _root_conftest()
    items = [Item(n) for n in names]
    conftest.pytest_collection_modifyitems(Config(), items)
    assert [i.nodeid for i in items] == names
    worker = Config()
    worker.workerinput = {"workerid": "gw0"}
    conftest.pytest_collection_modifyitems(worker, items)
    assert [i.nodeid for i in items] == [names[1], names[3], names[0], names[2]]


def test_ci_script_is_valid_bash_and_runs_the_readme_command():
    if shutil.which("bash") is None:
        pytest.skip("no bash here (.ci/run is a bash script)")
    script = ROOT / ".ci" / "run"
    assert os.access(script, os.X_OK), ".ci/run must be executable"
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = script.read_text(encoding="utf-8")
    assert "make test" in text and "make site" in text
    # Chromium installs in the background and is waited for before the tests need it.
    assert text.index('wait "$chromium_pid"') < text.rindex("make test")


# --- .github/workflows/ci.yml --------------------------------------------------------------------


def _workflow() -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8"))


def test_workflow_matrix_covers_systems_pythons_and_torch_versions():
    """Linux, macOS and Windows; the oldest and newest Python; torch at pyproject's lower bound and
    the newest; the combinations without wheels excluded (torch 2.2 has none for Python 3.13)."""
    job = _workflow()["jobs"]["matrix"]
    matrix = job["strategy"]["matrix"]
    assert matrix["os"] == ["ubuntu-latest", "macos-latest", "windows-latest"]
    assert matrix["python"] == ["3.10", "3.13"] and matrix["torch"] == ["oldest", "newest"]
    assert matrix["exclude"] == [{"python": "3.13", "torch": "oldest"}]
    assert job["strategy"]["fail-fast"] is False and job["defaults"]["run"]["shell"] == "bash"
    install = next(s["run"] for s in job["steps"] if "pip install -e" in s.get("run", ""))
    bound = _pyproject()["project"]["dependencies"]
    assert "torch>=2.2" in bound and "torch==2.2.2" in install  # the lower bound's last patch
    assert "numpy<2" in install and "transformers<5" in install
    runs = " ".join(s.get("run", "") for s in job["steps"])
    assert "pytest tests -p no:nbval" in runs
    assert "chapters/01_attention.ipynb chapters/02_multi_head_attention.ipynb" in runs and "--nbval" in runs


def test_workflow_runs_readme_command_once_and_its_scripts_parse():
    workflow = _workflow()
    full = workflow["jobs"]["full"]
    assert any(s.get("run", "").startswith("make test") for s in full["steps"])
    assert workflow["env"]["PYTHONHASHSEED"] == "0"
    if shutil.which("bash") is None:
        pytest.skip("no bash here to parse the run steps")
    for name, job in workflow["jobs"].items():
        for step in job["steps"]:
            if "run" in step:  # ${{ expressions }} become a word, then bash checks the syntax
                script = re.sub(r"\$\{\{[^}]*\}\}", "x", step["run"])
                result = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
                assert result.returncode == 0, f"{name}: {step.get('name')}: {result.stderr}"
