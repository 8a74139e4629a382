"""Root conftest: make nbval's sanitize file path absolute (nbval resolves it from the cwd)."""

import pathlib

ROOT = pathlib.Path(__file__).resolve().parent
SANITIZE = ROOT / "chapters" / "sanitize.cfg"


def pytest_configure(config):
    if getattr(config.option, "nbval_sanitize_with", "missing") is None and SANITIZE.exists():
        config.option.nbval_sanitize_with = str(SANITIZE)
