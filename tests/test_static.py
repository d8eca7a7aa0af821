"""The code stays lint-clean and type-clean: ruff and mypy run as part of the tests, so
a change that breaks either fails here, not in a later review."""

import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[test]')")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_ruff_clean():
    proc = _run_module("ruff", "check", "qemuwrap", "tests", "benchmarks", "scripts")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_clean():
    """pyproject.toml's [tool.mypy] names what is checked and which imports are untyped."""
    proc = _run_module("mypy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
