"""virtiofsd as a companion: its command line, a daemon that is ready on a socket qemuwrap
made (owner-only), gone after stop, a failure that is one line naming it, and the proof
inside the demo guest started by ``qemuwrap start``: it mounts the tag and reads a file the
test wrote on the host. QEMU's side (the shared memory backend, ``vhost-user-fs-pci``) is
built in ``qemu/build/`` (golden cases ``data/xml2argv/*virtiofs*``); the refusals before
anything is spawned are in ``test_companion_refusals.py``, the cleanup after a killed
supervisor in ``test_companions.py``."""

from __future__ import annotations

import os
import secrets
import stat
import time

import psutil
import pytest
from test_demoguest import short_path

from qemuwrap.companions import virtiofsd
from qemuwrap.companions.daemon import CompanionError, start_time

from conftest import QEMU
from test_launcher import Env

needs_virtiofsd = pytest.mark.skipif(
    not os.access(virtiofsd.VIRTIOFSD, os.X_OK) or os.geteuid() != 0,
    reason=f"{virtiofsd.VIRTIOFSD} (Debian package qemu-system-common) is missing, "
           "or not root (QEMU 7.2's virtiofsd sandboxes itself in namespaces)")


def test_command_lines():
    assert virtiofsd.virtiofsd_argv("/srv/share") == [
        virtiofsd.VIRTIOFSD, "--fd=FD", "-o", "source=/srv/share,cache=auto"]
    assert virtiofsd.virtiofsd_argv("/a,b", 7, "none", xattr=True, thread_pool_size=4) == [
        virtiofsd.VIRTIOFSD, "--fd=7", "-o", "source=/a,,b,cache=none,xattr",
        "--thread-pool-size=4"]


def test_prepare_refusals(tmp_path):
    with pytest.raises(CompanionError, match="is not a directory"):
        virtiofsd.Virtiofsd(str(tmp_path / "missing"), str(tmp_path / "s")).prepare()
    if os.geteuid() == 0:
        with pytest.raises(CompanionError, match="unknown cache mode 'sometimes'"):
            virtiofsd.Virtiofsd(str(tmp_path), str(tmp_path / "s"), cache="sometimes").prepare()


@pytest.fixture
def daemons():
    made: list[virtiofsd.Virtiofsd] = []

    def new(*args, **kwargs) -> virtiofsd.Virtiofsd:
        daemon = virtiofsd.Virtiofsd(*args, **kwargs)
        made.append(daemon)
        return daemon

    yield new
    for daemon in made:
        daemon.stop(time.monotonic() + 5)


@needs_virtiofsd
def test_start_ready_stop(daemons, tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    sock = short_path(tmp_path, "fs0-fs.sock")
    daemon = daemons(str(share), str(sock))
    daemon.prepare()
    log_path = tmp_path / "virtiofsd.log"
    log_path.write_text(virtiofsd.READY_TEXT + " (an older start's line)\n")
    with open(log_path, "ab") as log:
        pid = daemon.start(log.fileno(), time.monotonic() + 10)
    assert os.getsid(pid) == pid
    assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert log_path.read_text().count(virtiofsd.READY_TEXT) == 2  # waited for the new one
    assert daemon.argv[1].startswith("--fd=") and daemon.argv[1] != "--fd=FD"
    daemon.stop(time.monotonic() + 5)
    assert start_time(pid) is None and not sock.exists()


@needs_virtiofsd
def test_a_failing_virtiofsd_is_one_line_naming_it(daemons, tmp_path):
    sock = short_path(tmp_path, "fs0-fs.sock")
    daemon = daemons(str(tmp_path), str(sock), cache="sometimes")  # prepare() would refuse
    with open(tmp_path / "log", "ab") as log, pytest.raises(CompanionError) as info:
        daemon.start(log.fileno(), time.monotonic() + 10)
    text = str(info.value)
    assert text.startswith("virtiofsd: exited with status 1: ") and "\n" not in text
    assert "cache" in text


# --- inside the demo guest, started by qemuwrap -----------------------------------------------

SHARED_MEMORY = ("<memoryBacking><source type='memfd'/><access mode='shared'/>"
                 "</memoryBacking>")


@pytest.fixture
def env(tmp_path, demo_image):
    e = Env(tmp_path, demo_image)
    yield e
    e.cleanup()
    for p in virtiofsds(tmp_path):
        p.kill()


def virtiofsds(tmp_path) -> list[psutil.Process]:
    """This test's virtiofsd processes (and the child each sandboxes itself in)."""
    return [p for p in psutil.process_iter(["cmdline"])
            if os.path.basename((p.info["cmdline"] or [""])[0]) == "virtiofsd"
            and any(str(tmp_path) in a for a in p.info["cmdline"])]


@needs_virtiofsd
@pytest.mark.slow
@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed")
def test_guest_mounts_the_tag_and_reads_the_hosts_file(env, tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    token = secrets.token_hex(8)
    (share / "hello.txt").write_text(f"written on the host {token}\n")
    fs = (f"<filesystem type='mount'><driver type='virtiofs'/><source dir='{share}'/>"
          "<target dir='hostshare'/></filesystem>")
    path = env.xml(extra_devices=fs, cmdline="qemuwrap.virtiofs=hostshare:hello.txt")
    path.write_text(path.read_text().replace("<vcpu", SHARED_MEMORY + "<vcpu", 1))
    res = env.qw("start", str(path))
    assert res.returncode == 0, res.stderr
    out = env.wait_serial("demo", r"virtiofs: hostshare: hello.txt: .*\n", timeout=120)
    assert "virtiofs: hostshare: mounted" in out, out
    assert f"virtiofs: hostshare: hello.txt: written on the host {token}" in out, out
    assert virtiofsds(tmp_path)  # the companion serves it beside QEMU
    sock = env.gdir("demo") / "fs0-fs.sock"
    assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert virtiofsd.READY_TEXT in (env.gdir("demo") / "virtiofsd-fs0.log").read_text()
    res = env.qw("destroy", "demo")
    assert res.returncode == 0, res.stderr
    assert virtiofsds(tmp_path) == []  # stopped with the guest
    assert not sock.exists()
