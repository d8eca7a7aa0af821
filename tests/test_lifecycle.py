"""The project's evidence that the guest sees what the XML says across its life:
save/restore and snapshot revert give a running guest (not rebooted) a new genid,
equal to the one in the definition and in query-vm-generation-id; a plain restart
keeps it. Real QEMU (TCG) with the demo guest, which prints the ID it reads from
its own memory.
"""

from __future__ import annotations

import hashlib
import re
import subprocess

import pytest

from qemuwrap.runtime import qmp

from test_launcher import GENID, Env

pytestmark = [pytest.mark.slow]


@pytest.fixture
def env(tmp_path, demo_image):
    e = Env(tmp_path, demo_image)
    yield e
    e.cleanup()


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def definition_genid(path) -> str:
    return re.search(r"<genid>([0-9a-f-]{36})</genid>", path.read_text()).group(1)


def qemu_genid(env: Env, name: str) -> str:
    return qmp.command(str(env.gdir(name) / "control.sock"), "query-vm-generation-id")["guid"]


def assert_running_guest_sees_a_new_genid(env: Env, path, res) -> str:
    """After a restore or revert: a new genid, the same in the command's output, the
    definition, QMP and the running guest, which continued (no new boot)."""
    assert res.returncode == 0, res.stderr
    new = definition_genid(path)
    assert new != GENID
    assert f"genid: {GENID} -> {new}" in res.stdout
    assert qemu_genid(env, "demo") == new
    text = env.wait_serial("demo", f"genid: {new}", timeout=15)
    assert "demo: up" not in text  # the same guest, continued, not rebooted
    return new


def qcow2_disk(env: Env) -> str:
    disk = env.tmp / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
    return f"""<disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    """


def test_save_restore_gives_the_running_guest_a_new_genid(env):
    path = env.xml(genid=GENID)
    assert env.qw("start", str(path)).returncode == 0
    env.wait_serial("demo", f"genid: {GENID}")
    save = env.tmp / "demo.save"
    res = env.qw("save", "demo", str(save))
    assert res.returncode == 0, res.stderr
    assert f"genid: {GENID}" in res.stdout
    assert env.status("demo")["state"] == "shut off"
    assert "guest saved to" in (env.gdir("demo") / "supervisor.log").read_text()
    saved_bytes = sha(save)

    res = env.qw("restore", str(save), "--xml", str(path))
    new = assert_running_guest_sees_a_new_genid(env, path, res)
    assert sha(save) == saved_bytes  # restore only reads the save file

    # A plain shutdown and start keeps the ID.
    assert env.qw("shutdown", "demo").returncode == 0
    assert env.qw("start", str(path)).returncode == 0
    env.wait_serial("demo", f"genid: {new}")
    assert definition_genid(path) == new == qemu_genid(env, "demo")
    assert env.qw("destroy", "demo").returncode == 0


def test_snapshot_revert_gives_a_new_genid(env):
    path = env.xml(genid=GENID, extra_devices=qcow2_disk(env))
    assert env.qw("start", str(path)).returncode == 0
    env.wait_serial("demo", f"genid: {GENID}")
    res = env.qw("snapshot", "create", "demo", "before")
    assert res.returncode == 0, res.stderr
    assert env.qw("snapshot", "list", "demo").stdout.split() == ["before"]
    res = env.qw("snapshot", "revert", "demo", "before")
    assert_running_guest_sees_a_new_genid(env, path, res)
    assert env.status("demo")["state"] == "running"
    res = env.qw("snapshot", "delete", "demo", "before")
    assert res.returncode == 0, res.stderr
    assert env.qw("snapshot", "list", "demo").stdout.split() == []
    assert env.qw("destroy", "demo").returncode == 0


def test_snapshot_refusals(env):
    path = env.xml(genid=GENID)  # no qcow2 disk
    assert env.qw("start", str(path)).returncode == 0
    res = env.qw("snapshot", "create", "demo", "x")
    assert res.returncode == 1 and "qcow2" in res.stderr
    assert env.qw("destroy", "demo").returncode == 0
    path = env.xml(name="d2", genid=GENID, extra_devices=qcow2_disk(env))
    assert env.qw("start", str(path)).returncode == 0
    res = env.qw("snapshot", "revert", "d2", "nope")
    assert res.returncode == 1 and "no snapshot 'nope'" in res.stderr
    assert env.status("d2")["state"] == "running"  # a bad revert stops nothing
    assert env.qw("destroy", "d2").returncode == 0


@pytest.fixture
def saved(env):
    """A guest saved to a file, its definition, and both files' checksums."""
    path = env.xml(genid=GENID)
    assert env.qw("start", str(path)).returncode == 0
    env.wait_serial("demo", f"genid: {GENID}")
    save = env.tmp / "demo.save"
    assert env.qw("save", "demo", str(save)).returncode == 0
    return path, save, sha(path), sha(save)


def assert_untouched(path, save, path_sha, save_sha):
    assert sha(path) == path_sha and sha(save) == save_sha


def test_restore_refuses_an_abi_change_and_can_be_retried(env, saved):
    path, save, path_sha, save_sha = saved
    original = path.read_text()
    path.write_text(original.replace("<memory unit='MiB'>256</memory>",
                                     "<memory unit='MiB'>512</memory>"))
    res = env.qw("restore", str(save), "--xml", str(path))
    assert res.returncode == 1
    assert res.stderr == f"qemuwrap: {save}: Target domain memory 524288 does not match " \
                         "source 262144\n"
    assert sha(save) == save_sha and env.qemus() == []
    path.write_text(original)
    assert env.qw("restore", str(save), "--xml", str(path)).returncode == 0  # the retry works
    assert env.qw("destroy", "demo").returncode == 0


def test_restore_refuses_a_definition_without_genid(env, saved):
    """The genid is expected to change; whether the guest has one at all is ABI."""
    path, save, _path_sha, save_sha = saved
    path.write_text(re.sub(r"<genid>[^<]*</genid>", "", path.read_text()))
    res = env.qw("restore", str(save), "--xml", str(path))
    assert res.returncode == 1
    assert "Target domain requested genid does not match source" in res.stderr
    assert sha(save) == save_sha and env.qemus() == []


def test_a_stored_qemu_commandline_restores_only_with_the_users_own_definition(env):
    """A guest with <qemu:commandline>: its save file restores only with --xml, a
    definition of the user's, whose verbatim QEMU arguments and environment must be
    the stored ones."""
    path = env.xml(genid=GENID)
    text = path.read_text().replace(
        "<domain type='qemu'>",
        "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>")
    path.write_text(text.replace("</domain>", "<qemu:commandline><qemu:arg value='-msg'/>"
                                 "<qemu:arg value='timestamp=on'/><qemu:env "
                                 "name='QEMUWRAP_TEST' value='1'/></qemu:commandline>\n"
                                 "</domain>"))
    assert env.qw("start", str(path)).returncode == 0, path.read_text()
    env.wait_serial("demo", f"genid: {GENID}")
    save = env.tmp / "demo.save"
    assert env.qw("save", "demo", str(save)).returncode == 0
    res = env.qw("restore", str(save))
    assert res.returncode == 1 and res.stderr.count("\n") == 1
    assert "(<qemu:commandline>); restore it with --xml FILE.xml" in res.stderr
    original = path.read_text()
    for old, new, what in (("timestamp=on", "timestamp=off", "arguments"),
                           ("value='1'", "value='2'", "environment")):
        path.write_text(original.replace(old, new))
        res = env.qw("restore", str(save), "--xml", str(path))
        assert res.returncode == 1, res.stderr
        assert f"Target domain qemu:commandline {what}" in res.stderr
    assert env.qemus() == []
    path.write_text(original)
    res = env.qw("restore", str(save), "--xml", str(path))
    assert_running_guest_sees_a_new_genid(env, path, res)
    qemu = env.record("demo")["qemu_pid"]
    with open(f"/proc/{qemu}/environ", "rb") as f:  # QEMU runs with what was stored
        assert b"QEMUWRAP_TEST=1" in f.read().split(b"\0")
    assert env.record("demo")["argv"][-2:] == ["-msg", "timestamp=on"]
    assert env.qw("destroy", "demo").returncode == 0


def test_restore_refuses_truncated_and_foreign_files(env, saved):
    path, save, path_sha, save_sha = saved
    cut = env.tmp / "cut.save"
    cut.write_bytes(save.read_bytes()[: save.stat().st_size // 2])
    res = env.qw("restore", str(cut))
    assert res.returncode == 1 and "truncated" in res.stderr and res.stderr.count("\n") == 1
    foreign = env.tmp / "foreign.save"
    foreign.write_bytes(b"\0" * 8192)
    res = env.qw("restore", str(foreign))
    assert res.returncode == 1 and "not a qemuwrap save file" in res.stderr
    assert_untouched(path, save, path_sha, save_sha)
    assert env.qemus() == []


def test_restore_with_a_missing_disk_fails_cleanly(env, tmp_path):
    """A missing disk is refused before QEMU runs; a disk only QEMU finds unusable (an
    empty file where the qcow2 image was) fails the launch: one line each, the save
    file and the definition untouched, nothing left running, and the state restores
    once the disk is back."""
    path = env.xml(genid=GENID, extra_devices=qcow2_disk(env))
    assert env.qw("start", str(path)).returncode == 0
    env.wait_serial("demo", f"genid: {GENID}")
    save = env.tmp / "demo.save"
    assert env.qw("save", "demo", str(save)).returncode == 0
    path_sha, save_sha = sha(path), sha(save)
    disk = env.tmp / "disk.qcow2"
    disk.rename(env.tmp / "moved.qcow2")
    qemu_log = env.gdir("demo") / "qemu.log"
    starts = qemu_log.read_text().count(" start ----")
    res = env.qw("restore", str(save), "--xml", str(path))
    assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
    assert f"disk source {disk} cannot be used: No such file or directory" in res.stderr
    assert qemu_log.read_text().count(" start ----") == starts  # QEMU never spawned
    disk.write_bytes(b"")  # there, but not a qcow2 image: only QEMU sees it
    res = env.qw("restore", str(save), "--xml", str(path))
    assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
    assert "QEMU failed to start" in res.stderr
    assert "Image is not in qcow2 format" in res.stderr
    assert_untouched(path, save, path_sha, save_sha)
    assert not env.gdir("demo").joinpath("state.json").exists()
    assert env.qemus() == []
    (env.tmp / "moved.qcow2").rename(disk)
    res = env.qw("restore", str(save), "--xml", str(path))  # the saved state was not lost
    assert res.returncode == 0, res.stderr
    assert env.qw("destroy", "demo").returncode == 0


def test_failed_save_keeps_the_old_file(env):
    path = env.xml(genid=GENID, cmdline="qemuwrap.poweroff=1",
                   lifecycle={"on_poweroff": "preserve"})
    save = env.tmp / "demo.save"
    save.write_bytes(b"an older save")
    assert env.qw("start", str(path)).returncode == 0
    env.wait_serial("demo", "demo: powering off")
    import time

    deadline = time.monotonic() + 20
    while env.status("demo")["state"] != "shutdown" and time.monotonic() < deadline:
        time.sleep(0.1)
    res = env.qw("save", "demo", str(save))
    assert res.returncode == 1 and "only a running or paused guest" in res.stderr
    assert save.read_bytes() == b"an older save"
    assert sorted(p.name for p in env.tmp.iterdir() if p.name.startswith("demo.save")) == \
        ["demo.save"]
    assert env.qw("destroy", "demo").returncode == 0


def test_restored_guest_can_be_adopted(env):
    """A restored QEMU's command line has -incoming; adoption must still recognise it."""
    import os
    import signal
    import time

    path = env.xml(genid=GENID)
    assert env.qw("start", str(path)).returncode == 0
    env.wait_serial("demo", f"genid: {GENID}")
    save = env.tmp / "demo.save"
    assert env.qw("save", "demo", str(save)).returncode == 0
    res = env.qw("restore", str(save), "--xml", str(path))
    new = assert_running_guest_sees_a_new_genid(env, path, res)
    rec = env.record("demo")
    assert "-incoming" in rec["argv"]
    os.kill(rec["supervisor_pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while env.status("demo")["supervised"] and time.monotonic() < deadline:
        time.sleep(0.05)
    adopter = env.popen("adopt", "demo")
    deadline = time.monotonic() + 20
    while not env.status("demo")["supervised"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert env.status("demo")["supervisor_pid"] == adopter.pid
    assert env.status("demo")["genid"] == new
    assert env.qw("destroy", "demo").returncode == 0
    adopter.communicate(timeout=30)


def test_restore_keeps_what_the_definition_leaves_to_chance(env):
    """No <uuid>, a NIC without <mac>: each load makes them up; the restored guest gets
    the ones it was saved with, so the ABI check passes."""
    path = env.xml(genid=GENID, extra_devices="<interface type='user'/>\n    ")
    path.write_text(re.sub(r"\s*<uuid>[^<]*</uuid>", "", path.read_text()))
    assert env.qw("start", str(path)).returncode == 0
    env.wait_serial("demo", f"genid: {GENID}")
    uuid = env.record("demo")["uuid"]
    save = env.tmp / "demo.save"
    assert env.qw("save", "demo", str(save)).returncode == 0
    res = env.qw("restore", str(save), "--xml", str(path))
    assert_running_guest_sees_a_new_genid(env, path, res)
    assert env.record("demo")["uuid"] == uuid
    assert env.qw("destroy", "demo").returncode == 0
