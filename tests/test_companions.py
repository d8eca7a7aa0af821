"""Companions outlive no guest (issue 8): a guest with swtpm and virtiofsd whose supervisor
is SIGKILLed keeps running (QEMU and its companions are in sessions of their own); a later
``destroy``, or an ``adopt`` and then ``shutdown`` or ``destroy``, stops every swtpm and
virtiofsd of that guest, recognised from the guest record.  Each test skips, with the
reason, when a package it needs is absent.

The proofs that each companion works inside the guest are in ``test_firmware.py``
(OVMF), ``test_swtpm.py`` and ``test_virtiofsd.py``; the refusals before anything is
spawned in ``test_companion_refusals.py``."""

from __future__ import annotations

import os
import shutil
import signal
import time

import psutil
import pytest

from conftest import needs_qemu
from test_launcher import Env, gone

pytestmark = [needs_qemu, pytest.mark.slow]

TPM = "<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>"
SHARED_MEMORY = ("<memoryBacking><source type='memfd'/><access mode='shared'/>"
                 "</memoryBacking>")


@pytest.fixture
def env(tmp_path, demo_image, monkeypatch):
    from qemuwrap.companions import virtiofsd

    if shutil.which("swtpm") is None or shutil.which("swtpm_setup") is None:
        pytest.skip("needs swtpm and swtpm_setup (Debian packages swtpm, swtpm-tools)")
    if os.geteuid() != 0 or not os.access(virtiofsd.VIRTIOFSD, os.X_OK):
        pytest.skip("needs root and /usr/lib/qemu/virtiofsd (qemu-system-common)")
    monkeypatch.setenv("QEMUWRAP_DATA_DIR", str(tmp_path / "data"))
    e = Env(tmp_path, demo_image)
    yield e
    e.cleanup()
    for p in companions(tmp_path):
        p.kill()


def companions(tmp_path) -> list[psutil.Process]:
    """The swtpm/virtiofsd processes of this test still alive."""
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if cmd and os.path.basename(cmd[0]) in ("swtpm", "virtiofsd") and \
                any(str(tmp_path) in a for a in cmd) and p.info["status"] != "zombie":
            out.append(p)
    return out


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.mark.parametrize("after", ["destroy", "adopt+shutdown", "adopt+destroy"])
def test_no_companion_outlives_a_killed_supervisor(env, tmp_path, after):
    share = tmp_path / "share"
    share.mkdir()
    (share / "hello.txt").write_text("from the host\n")
    fs = (f"<filesystem type='mount'><driver type='virtiofs'/><source dir='{share}'/>"
          "<target dir='hostshare'/></filesystem>")
    path = env.xml(extra_devices=TPM + fs, cmdline="qemuwrap.virtiofs=hostshare:hello.txt")
    path.write_text(path.read_text().replace("<vcpu", SHARED_MEMORY + "<vcpu", 1))
    res = env.qw("start", str(path))
    assert res.returncode == 0, res.stderr
    env.wait_serial("demo", r"virtiofs: hostshare: hello.txt: from the host", timeout=120)
    env.wait_serial("demo", r"tpm: version 2 pcr0", timeout=30)
    rec = env.record("demo")
    recorded = {c["kind"]: c["proc"]["pid"] for c in rec["companions"]}
    assert sorted(recorded) == ["swtpm", "virtiofsd"]
    assert all(psutil.pid_exists(pid) for pid in recorded.values())
    sockets = [env.gdir("demo") / "swtpm.sock", env.gdir("demo") / "fs0-fs.sock"]
    assert all(s.exists() for s in sockets)

    os.kill(rec["supervisor_pid"], signal.SIGKILL)
    assert wait_for(lambda: gone(rec["supervisor_pid"]), 10)
    # QEMU and its companions run on without their supervisor.
    assert psutil.pid_exists(rec["qemu_pid"]) and not gone(rec["qemu_pid"])
    assert all(not gone(pid) for pid in recorded.values())

    adopter = None
    if after.startswith("adopt"):
        adopter = env.popen("adopt", "demo")
        assert wait_for(lambda: env.record("demo")["supervisor_pid"] == adopter.pid, 30), \
            adopter.stderr
        assert {c["kind"]: c["proc"]["pid"] for c in env.record("demo")["companions"]} == \
            recorded  # the same processes, now in the adopter's care
    verb = "shutdown" if after.endswith("shutdown") else "destroy"
    if verb == "destroy":
        # Stopped, they cannot end by themselves when QEMU goes (swtpm's --terminate,
        # virtiofsd's one connection closing): only qemuwrap's cleanup from the record
        # (SIGTERM, then SIGKILL) ends them. (Not for an ACPI shutdown: the guest's
        # kernel talks to its TPM while it powers off.)
        for pid in recorded.values():
            os.kill(pid, signal.SIGSTOP)
    res = env.qw(verb, "demo", timeout=120)
    assert res.returncode == 0, res.stderr
    if adopter is not None:
        adopter.wait(30)
    assert wait_for(lambda: gone(rec["qemu_pid"]), 10)
    assert wait_for(lambda: companions(tmp_path) == [], 10), \
        [p.info["cmdline"] for p in companions(tmp_path)]
    assert all(gone(pid) for pid in recorded.values())
    assert not any(s.exists() for s in sockets)
