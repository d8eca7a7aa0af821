"""virtiofsd as a companion: its command line and QEMU's side, a daemon that is ready on a
socket qemuwrap made (owner-only), gone after stop or cleanup, a failure that is one line
naming it, and the proof inside the demo guest: it mounts the tag and reads a file the test
wrote on the host."""

from __future__ import annotations

import os
import secrets
import stat
import time

import pytest
from test_demoguest import boot_guests, short_path

from qemuwrap.companions import virtiofsd
from qemuwrap.companions.daemon import CompanionError, start_time

from conftest import QEMU

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
    assert virtiofsd.socket_path("/run/qemuwrap/g") == "/run/qemuwrap/g/fs0-fs.sock"
    assert virtiofsd.qemu_options("/run/qemuwrap/g/fs0-fs.sock", "share") == [
        ("-chardev", "socket,id=chr-vu-fs0,path=/run/qemuwrap/g/fs0-fs.sock"),
        ("-device", "vhost-user-fs-pci,id=fs0,chardev=chr-vu-fs0,tag=share,queue-size=1024")]
    assert virtiofsd.memory_options(256 << 20) == (
        [("-object", "memory-backend-memfd,id=pc.ram,share=on,size=268435456")],
        {"memory-backend": "pc.ram"})


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


@needs_virtiofsd
def test_cleanup_after_a_killed_supervisor(daemons, tmp_path):
    sock = short_path(tmp_path, "fs0-fs.sock")
    daemon = daemons(str(tmp_path), str(sock))
    with open(tmp_path / "log", "ab") as log:
        pid = daemon.start(log.fileno(), time.monotonic() + 10)
    record = daemon.record()
    assert virtiofsd.Virtiofsd.cleanup(record, time.monotonic() + 5) is True
    assert start_time(pid) is None and not sock.exists()
    daemon.pid = None


# --- inside the demo guest ----------------------------------------------------------------------


@pytest.fixture
def guests(demo_image, tmp_path):
    yield from boot_guests(demo_image, tmp_path)


@needs_virtiofsd
@pytest.mark.slow
@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed")
def test_guest_mounts_the_tag_and_reads_the_hosts_file(guests, daemons, tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    token = secrets.token_hex(8)
    (share / "hello.txt").write_text(f"written on the host {token}\n")
    sock = short_path(tmp_path, "fs0-fs.sock")
    daemon = daemons(str(share), str(sock))
    daemon.prepare()
    log = open(tmp_path / "virtiofsd.log", "ab")  # noqa: SIM115 - closed below
    try:
        pid = daemon.start(log.fileno(), time.monotonic() + 10)
    finally:
        log.close()
    memory, machine = virtiofsd.memory_options(256 << 20)
    options = memory + virtiofsd.qemu_options(str(sock), "hostshare")
    extra = tuple(word for option in options for word in option)
    machine_arg = "pc,acpi=on," + ",".join(f"{k}={v}" for k, v in machine.items())
    guest = guests("fs", None, extra=extra, machine=machine_arg, poweroff=1,
                   cmdline="qemuwrap.virtiofs=hostshare:hello.txt")
    assert guest.line("virtiofs: hostshare: hello.txt") == \
        f"virtiofs: hostshare: hello.txt: written on the host {token}", guest.diagnostics()
    assert "virtiofs: hostshare: mounted\n" in guest.log()
    assert guest.wait_exit() == 0
    # QEMU gone, virtiofsd goes by itself (its one connection closed).
    deadline = time.monotonic() + 10
    while daemon.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not daemon.running(), "virtiofsd outlived QEMU"
    daemon.stop(time.monotonic() + 5)
    assert start_time(pid) is None
