"""``save`` and the requests around it, on the real qemu-system-x86_64 (TCG) with the
demo guest: the supervisor answers status, destroy and signals while a save is in
flight; the save's target checks; its progress display; the unlimited bandwidth; and
the no-supervisor fallbacks of save, suspend/resume and snapshot create."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time

import pytest
from test_lifecycle import qcow2_disk
from test_operations import one_line, started

from qemuwrap import savefile
from qemuwrap.errors import QemuwrapError
from qemuwrap.ops.save import check_target
from qemuwrap.runtime import control, migrate, qmp

from test_launcher import GENID, Env, gone

pytestmark = [pytest.mark.slow]


@pytest.fixture
def env(tmp_path, demo_image):
    e = Env(tmp_path, demo_image)
    yield e
    e.cleanup()


class StalledSave:
    """A save whose stream nobody reads: QEMU's migration blocks on a full pipe for as
    long as the test likes (the way a slow disk or a huge guest would keep it busy)."""

    def __init__(self, env: Env, name: str = "demo"):
        self.read_end, write_end = os.pipe()
        self.client = control.Client(str(env.gdir(name) / control.SOCKET))
        self.client.send({"request": "save"}, fds=[write_end])
        os.close(write_end)
        assert self.client.receive(30) == {"event": "started"}

    def close(self) -> None:
        self.client.close()
        os.close(self.read_end)


def wait_for(predicate, timeout: float = 30) -> bool:
    """Poll ``predicate`` until it holds; a hang guard, not a speed claim."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


def test_status_and_destroy_are_answered_by_the_supervisor_during_a_save(env):
    info = started(env, genid=GENID, extra_devices=qcow2_disk(env))
    env.wait_serial("demo", f"genid: {GENID}")
    save = StalledSave(env)
    try:
        st = env.status("demo")
        # Only the supervisor knows a save is in flight: a fallback to QEMU's second
        # monitor (what a blocked supervisor caused) would say "paused".
        assert st["state"] == "paused (saving)" and st["supervised"], st
        # The save runs unthrottled, as libvirt sets it (QEMU's default: 128 MiB/s).
        params = qmp.command(str(env.gdir("demo") / "control.sock"),
                             "query-migrate-parameters")
        assert params["max-bandwidth"] == migrate.UNLIMITED
        assert "the guest is busy (saving)" in one_line(env.qw("suspend", "demo"))
        assert "the guest is busy (saving)" in one_line(env.qw("snapshot", "create", "demo",
                                                               "s1"))
        res = env.qw("destroy", "demo", "--json")
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["outcome"] == "destroyed"
        assert save.client.receive(30) == {"error": "QEMU ended during the save"}
    finally:
        save.close()
    assert gone(info["qemu_pid"])
    assert wait_for(lambda: gone(info["supervisor_pid"]))
    log = (env.gdir("demo") / "supervisor.log").read_text()
    assert "QEMU stopped by force" in log


def test_a_signal_during_a_save_is_served(env):
    """SIGTERM during a save: the power button is pressed at once; the guest, paused
    for the save, cannot answer it, and is forced off after --shutdown-timeout."""
    path = env.xml(genid=GENID)
    res = env.qw("start", str(path), "--shutdown-timeout", "1", "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    save = StalledSave(env)
    try:
        os.kill(info["supervisor_pid"], signal.SIGTERM)
        assert save.client.receive(30) == {"error": "QEMU ended during the save"}
    finally:
        save.close()
    assert wait_for(lambda: gone(info["supervisor_pid"]))
    log = (env.gdir("demo") / "supervisor.log").read_text()
    assert "asking the guest to power off (ACPI), 1 s before forcing" in log
    assert "guest still running after 1 s" in log and "QEMU stopped by force" in log
    assert gone(info["qemu_pid"])


def test_a_save_client_that_leaves_lets_the_guest_run_on(env):
    started(env, genid=GENID)
    save = StalledSave(env)
    save.close()  # gone mid-stream
    assert wait_for(lambda: env.status("demo")["state"] == "running")
    log = (env.gdir("demo") / "supervisor.log").read_text()
    assert "save abandoned by its client; the guest runs on" in log
    assert env.qw("destroy", "demo").returncode == 0


def test_progress_is_shown_on_a_terminal_only(env, tmp_path):
    started(env, genid=GENID)
    env.wait_serial("demo", f"genid: {GENID}")
    master, slave = pty.openpty()
    proc = subprocess.Popen(env.argv("save", "demo", str(tmp_path / "demo.save")),
                            stdout=subprocess.PIPE, stderr=slave)
    env.procs.append(proc)
    os.close(slave)
    shown = b""
    while True:  # until the pty closes (the command ended)
        if not select.select([master], [], [], 60)[0]:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0
    lines = re.findall(rb"\rsaving: +([\d.]+) MiB, +([\d.]+) MiB/s", shown)
    assert lines, shown
    size = os.path.getsize(tmp_path / "demo.save")
    stream = float(lines[-1][0]) * 2**20  # the last line: the whole stream
    assert abs(size - stream) < size * 0.01 + 2**20
    assert shown.endswith(b"\r\n")  # the line is ended, not left for the prompt
    # Not a terminal: quiet.
    started(env, genid=GENID)
    res = env.qw("save", "demo", str(tmp_path / "again.save"))
    assert res.returncode == 0 and res.stderr == ""


def test_save_suspend_and_snapshot_without_a_supervisor(env, tmp_path):
    """The documented fallback: with its supervisor killed, the tools drive QEMU's
    second monitor themselves, and clean up as the supervisor would have."""
    path = env.xml(genid=GENID, extra_devices=qcow2_disk(env))
    res = env.qw("start", str(path), "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    env.wait_serial("demo", f"genid: {GENID}")
    os.kill(info["supervisor_pid"], signal.SIGKILL)
    assert wait_for(lambda: gone(info["supervisor_pid"]))
    assert not env.status("demo")["supervised"]
    assert json.loads(env.qw("suspend", "demo", "--json").stdout)["state"] == "paused"
    assert env.status("demo")["state"] == "paused"
    assert json.loads(env.qw("resume", "demo", "--json").stdout)["state"] == "running"
    assert env.status("demo")["state"] == "running"
    res = env.qw("snapshot", "create", "demo", "s1", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"name": "demo", "snapshot": "s1", "genid": GENID}
    snaps = json.loads(env.qw("snapshot", "list", "demo", "--json").stdout)
    assert [s["name"] for s in snaps] == ["s1"] and snaps[0]["vm_state_size"] > 0
    assert env.status("demo")["state"] == "running"
    save = tmp_path / "demo.save"
    res = env.qw("save", "demo", str(save), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    checked = savefile.open_checked(str(save))  # whole, checksum verified
    checked.close()
    assert out["checksum"] == f"blake3:{checked.meta['checksum']}"
    assert gone(info["qemu_pid"])  # the guest stopped once its state was stored
    assert not (env.gdir("demo") / "state.json").exists()  # cleaned up as a supervisor
    res = env.qw("restore", str(save), "--xml", str(path), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["previous_genid"] == GENID
    assert env.qw("destroy", "demo").returncode == 0


# -- the save target, checked before the guest is paused (no QEMU needed) -------------
def test_target_is_a_directory_or_in_a_missing_one(tmp_path):
    with pytest.raises(QemuwrapError, match="is a directory; give the save file's name"):
        check_target(str(tmp_path), 1)
    with pytest.raises(QemuwrapError, match="the directory .*/missing does not exist"):
        check_target(str(tmp_path / "missing" / "x.save"), 1)


def test_target_that_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "fifo.save"
    os.mkfifo(fifo)
    with pytest.raises(QemuwrapError, match="fifo.save exists and is not a regular file"):
        check_target(str(fifo), 1)
    link = tmp_path / "dangling.save"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(QemuwrapError, match="exists and is not a regular file"):
        check_target(str(link), 1)
    assert check_target(str(tmp_path / "new.save"), 1) == str(tmp_path / "new.save")


def test_target_without_room_for_the_guests_ram(tmp_path):
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    with pytest.raises(QemuwrapError, match=r"MiB free, the guest has \d+ MiB of RAM"):
        check_target(str(tmp_path / "x.save"), free + (1 << 30))
    assert check_target(str(tmp_path / "x.save"), 1 << 20)


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory this user cannot write to: mode 0500 for a user, a read-only tmpfs
    for root (whom modes do not stop)."""
    d = tmp_path / "ro"
    d.mkdir()
    if os.geteuid() != 0:
        d.chmod(0o500)
        yield d
        d.chmod(0o700)
        return
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(d)],
                         capture_output=True, text=True)
    if res.returncode:
        pytest.skip(f"cannot mount a read-only tmpfs here: {res.stderr.strip()}")
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_target_in_an_unwritable_directory(read_only_dir):
    with pytest.raises(QemuwrapError, match="the directory is not writable"):
        check_target(str(read_only_dir / "x.save"), 1)
