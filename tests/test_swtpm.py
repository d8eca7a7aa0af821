"""swtpm as a companion: the state directory and command lines (libvirt's flags), a TPM
manufactured once, a swtpm that is ready when its socket accepts and gone after stop or
cleanup, and the proof inside the demo guest: a TPM 2.0 that answers (a PCR read) at boot and
again, with the same PCR value, after a save and a restore with a new genid on the same state
directory."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from test_demoguest import boot_guests, save_to_file, short_path, wait_incoming

from qemuwrap.companions import swtpm
from qemuwrap.companions.daemon import CompanionError, start_time

from conftest import QEMU

needs_swtpm = pytest.mark.skipif(
    shutil.which("swtpm") is None or shutil.which("swtpm_setup") is None,
    reason="swtpm and swtpm_setup are not installed (Debian packages swtpm, swtpm-tools)")
UUID = "d1be9029-163b-4415-a539-d03763ce7942"


def test_paths_and_command_lines():
    env = {"XDG_DATA_HOME": "/home/u/data", "HOME": "/home/u"}
    assert swtpm.state_dir(UUID, privileged=True) == f"/var/lib/qemuwrap/swtpm/{UUID}/tpm2"
    assert swtpm.state_dir(UUID, False, env) == f"/home/u/data/qemuwrap/swtpm/{UUID}/tpm2"
    assert swtpm.state_dir(UUID, False, {"HOME": "/h"}) == \
        f"/h/.local/share/qemuwrap/swtpm/{UUID}/tpm2"
    assert swtpm.runtime_paths("/run/qemuwrap/g") == {
        "socket": "/run/qemuwrap/g/swtpm.sock", "pidfile": "/run/qemuwrap/g/swtpm.pid",
        "log": "/run/qemuwrap/g/swtpm.log"}
    assert swtpm.setup_argv("/s", f"g:{UUID}", "/l") == [
        "swtpm_setup", "--tpm2", "--tpm-state", "/s", "--vmid", f"g:{UUID}", "--logfile", "/l",
        "--createek", "--create-ek-cert", "--create-platform-cert", "--lock-nvram",
        "--not-overwrite"]
    assert swtpm.swtpm_argv("/s", "/r/swtpm.sock", "/r/swtpm.log", "/r/swtpm.pid") == [
        "swtpm", "socket", "--ctrl", "type=unixio,path=/r/swtpm.sock,mode=0600",
        "--tpmstate", "dir=/s,mode=0600", "--log", "file=/r/swtpm.log", "--terminate",
        "--tpm2", "--pid", "file=/r/swtpm.pid"]
    assert swtpm.qemu_options("/r/swtpm.sock", "tpm-tis") == [
        ("-chardev", "socket,id=chrtpm,path=/r/swtpm.sock"),
        ("-tpmdev", "emulator,id=tpm-tpm0,chardev=chrtpm"),
        ("-device", "tpm-tis,tpmdev=tpm-tpm0,id=tpm0")]
    assert swtpm.passthrough_options("/dev/tpm0", "/sys/class/tpm/tpm0/device/cancel") == [
        ("-tpmdev", "passthrough,id=tpm-tpm0,path=/dev/tpm0,"
                    "cancel-path=/sys/class/tpm/tpm0/device/cancel"),
        ("-device", "tpm-tis,tpmdev=tpm-tpm0,id=tpm0")]


def test_passthrough_without_the_host_device_is_one_line(tmp_path):
    with pytest.raises(CompanionError) as info:
        swtpm.check_passthrough(str(tmp_path / "tpm0"))
    assert str(info.value) == f"tpm: Could not open TPM device {tmp_path / 'tpm0'}: " \
                              "No such file or directory"


def make(tmp_path: Path, name: str = "g") -> swtpm.Swtpm:
    run = short_path(tmp_path, "run")
    run.mkdir(exist_ok=True)
    paths = swtpm.runtime_paths(str(run))
    return swtpm.Swtpm(str(tmp_path / "state" / UUID / "tpm2"), paths["socket"], paths["log"],
                       paths["pidfile"], f"{name}:{UUID}")


@pytest.fixture
def tpms(tmp_path):
    """Make Swtpm objects; whatever they started is stopped at teardown."""
    made: list[swtpm.Swtpm] = []

    def new(name: str = "g") -> swtpm.Swtpm:
        tpm = make(tmp_path, name)
        made.append(tpm)
        return tpm

    yield new
    for tpm in made:
        tpm.stop(time.monotonic() + 5)


@needs_swtpm
def test_manufactured_once_then_kept(tpms):
    tpm = tpms()
    assert tpm.prepare() is True
    state = Path(tpm.tpm_dir) / swtpm.STATE_FILE
    first = state.read_bytes()
    assert "Successfully authored TPM state" in Path(tpm.logfile).read_text()
    assert oct(Path(tpm.tpm_dir).stat().st_mode & 0o777) == "0o700"
    assert tpm.prepare() is False  # a second start keeps the guest's TPM
    assert state.read_bytes() == first


@needs_swtpm
def test_start_ready_in_its_own_session_and_stop(tpms):
    tpm = tpms()
    tpm.prepare()
    with open(tpm.logfile + ".out", "ab") as log:
        pid = tpm.start(log.fileno(), time.monotonic() + 10)
    assert os.getsid(pid) == pid  # its own session: outlives a killed supervisor
    assert Path(tpm.sock).exists() and tpm.running()
    assert int(Path(tpm.pidfile).read_text()) == pid
    tpm.stop(time.monotonic() + 5)
    assert start_time(pid) is None, "swtpm still running"
    assert not Path(tpm.sock).exists() and not Path(tpm.pidfile).exists()


@needs_swtpm
def test_a_failing_swtpm_is_one_line_naming_it_and_leaves_nothing(tpms, tmp_path):
    tpm = tpms()
    tpm.prepare()
    # swtpm refuses a log file it cannot open, at start.
    tpm.own_log = str(tmp_path / "missing" / "log")
    tpm.argv = swtpm.swtpm_argv(tpm.tpm_dir, tpm.sock, tpm.own_log, tpm.pidfile)
    with open(tmp_path / "out.log", "ab") as log, pytest.raises(CompanionError) as info:
        tpm.start(log.fileno(), time.monotonic() + 10)
    text = str(info.value)
    assert text.startswith("swtpm: exited with status 1: see ") and "\n" not in text
    assert tpm.pid is None
    assert subprocess.run(["pgrep", "-f", tpm.sock], capture_output=True).stdout == b""


@needs_swtpm
def test_cleanup_after_a_killed_supervisor(tpms):
    tpm = tpms()
    tpm.prepare()
    pid = tpm.start(None, time.monotonic() + 10)
    record = tpm.record()
    # A record whose pid now names another process (pid reuse) must not kill that one.
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        reused = dict(record, pid=sleeper.pid)
        assert swtpm.Swtpm.cleanup(reused, time.monotonic() + 5) is False
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
    assert swtpm.Swtpm.cleanup(record, time.monotonic() + 5) is True
    assert start_time(pid) is None
    assert not Path(tpm.sock).exists()
    tpm.pid = None  # it was stopped through the record


@needs_swtpm
def test_clone_copies_the_state_and_never_overwrites(tpms, tmp_path):
    tpm = tpms()
    tpm.prepare()
    copy = tmp_path / "other" / "tpm2"
    swtpm.clone_state(tpm.tpm_dir, str(copy))
    assert (copy / swtpm.STATE_FILE).read_bytes() == \
        (Path(tpm.tpm_dir) / swtpm.STATE_FILE).read_bytes()
    with pytest.raises(CompanionError, match="already exists"):
        swtpm.clone_state(tpm.tpm_dir, str(copy))


# --- inside the demo guest ----------------------------------------------------------------------


@pytest.fixture
def guests(demo_image, tmp_path):
    yield from boot_guests(demo_image, tmp_path)


@needs_swtpm
@pytest.mark.slow
@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed")
@pytest.mark.parametrize("model", swtpm.MODELS)
def test_guest_sees_a_tpm2_that_survives_save_and_restore(guests, tpms, tmp_path, model):
    tpm = tpms()
    tpm.prepare()
    log = open(tmp_path / "swtpm.out", "ab")  # noqa: SIM115 - closed at the end
    tpm.start(log.fileno(), time.monotonic() + 10)
    extra = tuple(w for option in swtpm.qemu_options(tpm.sock, model) for w in option)
    g1, g2 = str(uuid.uuid4()), str(uuid.uuid4())
    first = guests("tpm", g1, extra=extra)
    monitor = first.qmp()
    first.wait_for(f"genid: {g1}\n")
    line = first.line("tpm: ")
    assert line.startswith("tpm: version 2 pcr0 "), first.diagnostics()
    pcr0 = line.split()[-1]
    assert len(pcr0) == 64 and int(pcr0, 16) != 0  # the firmware measured something into it
    if model == "tpm-tis":
        return  # the restore is the same for both models; once is enough under TCG

    state = tmp_path / "state.bin"
    save_to_file(first, monitor, state)
    tpm.stop(time.monotonic() + 5)  # swtpm ended with QEMU (--terminate) or is stopped now

    # A new swtpm on the same state directory, a new QEMU that loads the saved state.
    again = make(tmp_path)
    assert again.tpm_dir == tpm.tpm_dir and again.prepare() is False
    again.start(log.fileno(), time.monotonic() + 10)
    try:
        second = guests("tpm2", g2, extra=extra + (
            "-incoming", f"exec:cat {shlex.quote(str(state))}", "-S"))
        monitor = second.qmp()
        wait_incoming(second, monitor)
        monitor.cmd("cont")
        second.wait_for(f"genid: {g2}\n", timeout=30)
        # The guest checks its TPM again after the genid changed: same PCR 0, i.e. the
        # TPM's volatile state came back with the restore and the TPM answers commands.
        assert second.line("tpm: ") == f"tpm: version 2 pcr0 {pcr0}", second.diagnostics()
        assert "demo: up" not in second.log(), "rebooted instead of restored"
    finally:
        again.stop(time.monotonic() + 5)
        log.close()
