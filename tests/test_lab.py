"""`make lab` starts JupyterLab on chapters/, also as root (containers, cloud machines).

The command is read from the Makefile itself (``make -n lab``: what make would run, not run), then
started headless on a free local port with a token, the way a learner's `make lab` would start,
asked for its status, its Lab page and its folder, and shut down again.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT = 60  # seconds; JupyterLab answers within a few on a laptop


def lab_command() -> list[str]:
    """The arguments `make lab` gives ``jupyter`` (``["lab", ...flags, "chapters/"]``)."""
    if shutil.which("make") is None:
        pytest.skip("no make here (Windows): `make lab` is not how JupyterLab starts here")
    dry = subprocess.run(["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True, check=True)
    lines = [shlex.split(line) for line in dry.stdout.splitlines() if "jupyter lab" in line]
    assert len(lines) == 1, f"expected one `jupyter lab` line in `make -n lab`, got:\n{dry.stdout}"
    words = lines[0]
    return words[words.index("lab"):]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read().decode("utf-8", errors="replace")


def wait_for_status(base: str, token: str, process: subprocess.Popen, log: Path) -> dict:
    """Poll ``/api/status`` until the server answers; fail after STARTUP_TIMEOUT seconds."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"jupyter lab exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            status, body = get(f"{base}/api/status?token={token}", timeout=2)
            return {"http": status, **json.loads(body)}
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.25)
    pytest.fail(f"jupyter lab did not answer on {base} within {STARTUP_TIMEOUT} s")


def stop(process: subprocess.Popen, base: str, token: str) -> None:
    """Ask the server to shut down (``POST /api/shutdown``); terminate, then kill, if it lingers."""
    request = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST", data=b"")
    try:
        urllib.request.urlopen(request, timeout=5).close()
        process.wait(timeout=10)
    except (urllib.error.URLError, ConnectionError, TimeoutError, subprocess.TimeoutExpired):
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_make_lab_allows_root_only_as_root():
    args = lab_command()
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    assert ("--allow-root" in args) == is_root, args
    assert args[-1].rstrip("/") == "chapters"


def test_make_lab_serves_the_chapters(tmp_path):
    pytest.importorskip("jupyterlab")
    args = lab_command()
    port, token = free_port(), "mlstep-test-token"
    headless = ["--no-browser", "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
                f"--IdentityProvider.token={token}"]
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTER_CONFIG_DIR=str(tmp_path / "config"),  # the user's own settings stay out
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"))
    log = tmp_path / "lab.log"  # a file, not a pipe: a full pipe would block the server
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "jupyter", *args, *headless], cwd=ROOT,
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        status = wait_for_status(base, token, process, log)
        assert status["http"] == 200 and "started" in status
        code, page = get(f"{base}/lab?token={token}")
        assert code == 200 and "JupyterLab" in page
        _, listing = get(f"{base}/api/contents?token={token}")
        names = {entry["name"] for entry in json.loads(listing)["content"]}
        assert "01_attention.ipynb" in names, names  # the server's folder is chapters/
    finally:
        stop(process, base, token)
    assert process.returncode is not None
