"""swtpm as a companion: the state directory and command lines (libvirt's flags), a TPM
manufactured once, a swtpm that is ready when its socket accepts and gone after stop, and
the proof inside the demo guest started by ``qemuwrap start``: a TPM 2.0 that answers (a
PCR read) at boot and again, with the same PCR value, after ``qemuwrap save`` and
``restore`` (a new genid) on the same state directory. QEMU's side is built in
``qemu/build/companion_devices.py`` (golden cases ``data/xml2argv/tpm-*``); the cleanup
after a killed supervisor is in ``test_companions.py``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from test_demoguest import short_path

from qemuwrap.companions import swtpm
from qemuwrap.companions.daemon import CompanionError, start_time

from conftest import QEMU
from test_launcher import Env

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
    assert swtpm.setup_argv("/s", f"g:{UUID}", "/l") == [
        "swtpm_setup", "--tpm2", "--tpm-state", "/s", "--vmid", f"g:{UUID}", "--logfile", "/l",
        "--createek", "--create-ek-cert", "--create-platform-cert", "--lock-nvram",
        "--not-overwrite"]
    assert swtpm.swtpm_argv("/s", "/r/swtpm.sock", "/r/swtpm.log", "/r/swtpm.pid") == [
        "swtpm", "socket", "--ctrl", "type=unixio,path=/r/swtpm.sock,mode=0600",
        "--tpmstate", "dir=/s,mode=0600", "--log", "file=/r/swtpm.log", "--terminate",
        "--tpm2", "--pid", "file=/r/swtpm.pid"]


def make(tmp_path: Path, name: str = "g") -> swtpm.Swtpm:
    run = short_path(tmp_path, "run")
    run.mkdir(exist_ok=True)
    return swtpm.Swtpm(str(tmp_path / "state" / UUID / "tpm2"), str(run / "swtpm.sock"),
                       str(run / "swtpm.log"), str(run / "swtpm.pid"), f"{name}:{UUID}")


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
def test_clone_copies_the_state_and_never_overwrites(tpms, tmp_path):
    tpm = tpms()
    tpm.prepare()
    copy = tmp_path / "other" / "tpm2"
    swtpm.clone_state(tpm.tpm_dir, str(copy))
    assert (copy / swtpm.STATE_FILE).read_bytes() == \
        (Path(tpm.tpm_dir) / swtpm.STATE_FILE).read_bytes()
    with pytest.raises(CompanionError, match="already exists"):
        swtpm.clone_state(tpm.tpm_dir, str(copy))


# --- inside the demo guest, started by qemuwrap -----------------------------------------------

TPM = "<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>"


@pytest.fixture
def env(tmp_path, demo_image, monkeypatch):
    monkeypatch.setenv("QEMUWRAP_DATA_DIR", str(tmp_path / "data"))  # the TPM states
    e = Env(tmp_path, demo_image)
    yield e
    e.cleanup()
    for p in swtpms(tmp_path):
        p.kill()


def swtpms(tmp_path: Path) -> list[psutil.Process]:
    """The swtpm processes of this test (their state directories are under tmp_path)."""
    return [p for p in psutil.process_iter(["cmdline"])
            if (p.info["cmdline"] or [""])[0].endswith("swtpm")
            and any(str(tmp_path) in a for a in p.info["cmdline"])]


def swtpm_state_dir(env: Env) -> str:
    """The --tpmstate directory of the guest's running swtpm, from its guest record."""
    rec = json.loads((env.gdir("demo") / "state.json").read_text())
    [entry] = [c for c in rec["companions"] if c["kind"] == "swtpm"]
    argv = entry["proc"]["argv"]
    return argv[argv.index("--tpmstate") + 1].split(",")[0].removeprefix("dir=")


@needs_swtpm
@pytest.mark.slow
@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed")
def test_guest_sees_a_tpm2_that_survives_save_and_restore(env, tmp_path):
    res = env.qw("start", str(env.xml(extra_devices=TPM)), "--json")
    assert res.returncode == 0, res.stderr
    uuid = json.loads(res.stdout)["uuid"]
    out = env.wait_serial("demo", r"tpm: version \d+.*\n", timeout=120)
    pcr0 = re.search(r"tpm: version 2 pcr0 ([0-9a-fA-F]{64})\r?\n", out)
    assert pcr0, out
    assert int(pcr0.group(1), 16) != 0  # the firmware measured something into it
    state = tmp_path / "data" / "swtpm" / uuid / "tpm2"
    assert (state / swtpm.STATE_FILE).is_file()  # manufactured under the guest's uuid
    assert swtpm_state_dir(env) == str(state)
    assert len(swtpms(tmp_path)) == 1

    save = tmp_path / "demo.save"
    res = env.qw("save", "demo", str(save))
    assert res.returncode == 0, res.stderr
    assert swtpms(tmp_path) == []  # ended with the saved guest's QEMU

    res = env.qw("restore", str(save), "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["genid"] != info["previous_genid"]
    # The guest checks its TPM again when its genid changes: the same PCR 0 from a TPM that
    # answers, i.e. the TPM's volatile state came back with the restore, from a new swtpm
    # on the same state directory.
    out = env.wait_serial("demo", f"genid: {info['genid']}\r?\n(.*\n)*tpm: .*\n", timeout=60)
    after = out[out.index(f"genid: {info['genid']}"):]
    assert re.search(r"tpm: version 2 pcr0 ([0-9a-fA-F]{64})", after).group(1) == \
        pcr0.group(1), after
    assert "demo: up" not in env.serial("demo"), "rebooted instead of restored"
    assert swtpm_state_dir(env) == str(state)
    assert len(swtpms(tmp_path)) == 1
    res = env.qw("destroy", "demo")
    assert res.returncode == 0, res.stderr
    assert swtpms(tmp_path) == []
    assert (state / swtpm.STATE_FILE).is_file()  # the guest's for good
