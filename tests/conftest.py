"""Shared test data locations and fixtures."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
XML2ARGV = DATA / "xml2argv"
XML2XML = DATA / "xml2xml"
CAPS_DIR = DATA / "caps"
DEFAULT_CAPS = CAPS_DIR / "qemu-7.2.0.x86_64.json"
#: The state directory root golden files are written for.
GOLDEN_STATE_ROOT = "/run/qemuwrap"

QEMU = shutil.which("qemu-system-x86_64")
needs_qemu = pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed "
                                "(Debian package qemu-system-x86)")


def regenerate() -> bool:
    """QEMUWRAP_REGENERATE=1 rewrites expected files instead of comparing."""
    return os.environ.get("QEMUWRAP_REGENERATE") == "1"


def check_golden(path: Path, actual: str) -> None:
    """Compare ``actual`` with the expected file (or rewrite it when regenerating)."""
    if regenerate():
        path.write_text(actual)
        return
    assert path.exists(), f"{path} is missing: review the output and create it " \
                          "(QEMUWRAP_REGENERATE=1)"
    assert actual == path.read_text(), f"output differs from {path.name}"
