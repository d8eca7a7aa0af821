"""Shared test data locations and fixtures."""

from __future__ import annotations

import contextlib
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

# The golden cases' own configuration (the networks their interfaces join), unless a
# test sets its own; never the host's /etc/qemuwrap.
os.environ.setdefault("QEMUWRAP_CONFIG_DIR", str(DATA / "config"))

# qemuwrap commands the tests run as subprocesses use this working tree, not an
# installed copy.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])

# Persistent per-guest state (NVRAM copies, TPM state) as root keeps it: golden commands
# name these paths, so they must not depend on who runs the tests.
os.environ.setdefault("QEMUWRAP_DATA_DIR", "/var/lib/qemuwrap")

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


@pytest.fixture(scope="session")
def demo_image():
    """The demo guest (cloud kernel + our initramfs), built once; skipped without QEMU."""
    if QEMU is None:
        pytest.skip("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
    from qemuwrap import demoguest

    dest = Path(os.environ.get("QEMUWRAP_DEMO_DIR") or demoguest.DEFAULT_DIR)
    return demoguest.build(dest)


def demo_xml(path: Path, image, *, name: str = "demo", genid: str | None = "",
             cmdline: str = "", lifecycle: dict | None = None, extra_devices: str = "") -> Path:
    """Write a definition of the demo guest; genid "" means <genid/>, None means none."""
    text = (ROOT / "examples" / "demo.xml").read_text()
    text = text.replace("<name>demo</name>", f"<name>{name}</name>")
    text = text.replace("/var/tmp/qemuwrap-demo/vmlinuz", str(image.kernel))
    text = text.replace("/var/tmp/qemuwrap-demo/initrd.img", str(image.initrd))
    import re

    text = re.sub(r"<cmdline>[^<]*</cmdline>",
                  f"<cmdline>console=ttyS0 panic=-1 quiet {cmdline}</cmdline>", text)
    genid_el = "" if genid is None else ("<genid/>" if genid == "" else f"<genid>{genid}</genid>")
    text = re.sub(r"<genid[^>]*/>|<genid>[^<]*</genid>", genid_el, text)
    for tag, value in (lifecycle or {}).items():
        text = re.sub(rf"<{tag}>[^<]*</{tag}>", f"<{tag}>{value}</{tag}>", text)
    text = text.replace("<memballoon", extra_devices + "<memballoon")
    path.write_text(text)
    return path


def missing_needs(name: str, suffix: str = "needs") -> str | None:
    """A golden case may depend on host files from an optional package: ``NAME.needs``
    lists what its translation reads (OVMF's firmware descriptors), ``NAME.qemu-needs``
    what QEMU needs to run it (an audio module of qemu-system-gui); one per line, each
    ``PATH PACKAGE`` (or ``PATH (WHAT)`` for what no package gives: a SCSI disk).  The
    reason to skip, or None."""
    needs = XML2ARGV / f"{name}.{suffix}"
    if not needs.exists():
        return None
    for line in needs.read_text().splitlines():
        path, _, package = line.partition(" ")
        if path and not os.path.exists(path):
            what = package if package.startswith("(") else f"(Debian package {package or '?'})"
            return f"needs {path} {what}"
    return None


def unreachable_by_others() -> str | None:
    """Why another local user cannot run this checkout with its Python (None: it can).
    A checkout inside a 0700 directory (``git clone . "$(mktemp -d)/c"``) keeps the
    tests that run as a second user from running at all."""
    import stat
    import sys

    for top in (ROOT, Path(sys.prefix)):
        for d in (top, *top.parents):
            mode = os.stat(d).st_mode
            if not mode & stat.S_IXOTH:
                return (f"{d} (mode {stat.S_IMODE(mode):o}) keeps other users out of {top}: "
                        "a test that runs as a second local user cannot run from here")
    return None


@contextlib.asynccontextmanager
async def qmp_at(sock: str, name: str = "test", timeout: float = 5.0):
    """A QMP client on a QEMU that is starting: its socket file appears a moment before
    it listens, so connecting is retried for up to ``timeout`` seconds. QEMU is told to
    quit when the block ends without an error; the client is closed either way."""
    import asyncio
    import time

    from qemu.qmp import ConnectError, QMPClient

    qmp = QMPClient(name)
    deadline = time.monotonic() + timeout
    while True:
        if os.path.exists(sock):
            try:
                await qmp.connect(sock)
                break
            except ConnectError:
                pass
        if time.monotonic() > deadline:
            raise AssertionError(f"QMP never came up on {sock}")
        await asyncio.sleep(0.01)
    try:
        yield qmp
        await qmp.execute("quit")
    finally:
        try:
            await qmp.disconnect()
        except EOFError:  # expected after quit
            pass
