"""Hostile names and a hostile /tmp: the state root and guest directories are checked
before use, and every refusal is one line without a traceback (no QEMU needed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from qemuwrap.errors import QemuwrapError, printable
from qemuwrap.runtime.guestdir import GuestDir
from qemuwrap.statedir import StateDirError, check_name, secure_root, verify_dir

from conftest import DEFAULT_CAPS, ROOT, XML2ARGV, unreachable_by_others

LONG = "€" * 90  # 270 bytes in UTF-8: over NAME_MAX


def qemuwrap(*args: str, env: dict | None = None, user: str | None = None):
    argv = [sys.executable, "-m", "qemuwrap", *args]
    if user is not None:
        argv = ["runuser", "-u", user, "--", "env", f"PYTHONPATH={ROOT}", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def one_line(res) -> str:
    assert res.returncode == 1, res
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    return res.stderr


def test_long_name_is_one_line_in_every_command(tmp_path):
    xml = tmp_path / "long.xml"
    xml.write_text((XML2ARGV / "genid.xml").read_text().replace(
        "<name>QEMUGuest1</name>", f"<name>{LONG}</name>"))
    root = str(tmp_path / "state")
    for args in (["start", str(xml)], ["status", LONG], ["destroy", LONG], ["adopt", LONG],
                 ["shutdown", LONG], ["save", LONG, str(tmp_path / "x.save")],
                 ["logs", LONG], ["console", LONG]):
        err = one_line(qemuwrap(*args, "--state-dir", root, "--caps", str(DEFAULT_CAPS)))
        assert "270 bytes long" in err and "at most 255" in err, err


def test_a_name_that_fits_a_directory_but_not_a_socket(tmp_path):
    xml = tmp_path / "n.xml"
    name = "n" * 120
    xml.write_text((XML2ARGV / "genid.xml").read_text().replace(
        "<name>QEMUGuest1</name>", f"<name>{name}</name>"))
    err = one_line(qemuwrap("start", str(xml), "--state-dir", str(tmp_path / "s")))
    assert "UNIX socket path holds at most 107" in err


def test_state_root_that_is_not_a_directory(tmp_path):
    root = tmp_path / "file"
    root.write_text("")
    for args in (["status", "demo"], ["list"], ["start", str(XML2ARGV / "genid.xml")]):
        err = one_line(qemuwrap(*args, "--state-dir", str(root)))
        assert "is not a directory" in err, err


def test_names_and_paths_are_printed_escaped(tmp_path):
    bad = tmp_path / "a\nb\x1b[31m.xml"
    res = qemuwrap("dry-run", str(bad), "--caps", str(DEFAULT_CAPS))
    err = one_line(res)
    assert "\x1b" not in err and "a\\nb\\x1b[31m.xml" in err
    res = qemuwrap("status", "x\x1b[2Jy", "--state-dir", str(tmp_path))
    assert "\x1b" not in res.stderr and res.stderr.count("\n") == 1
    assert printable("a\nb") == "a\\nb" and printable("plain €") == "plain €"


def test_check_name():
    assert check_name("ok-name") == "ok-name"
    for bad in ("", ".", "..", "a/b", "a\nb", "x..y", LONG):
        with pytest.raises(QemuwrapError):
            check_name(bad)


def test_directories_are_made_private(tmp_path):
    root = tmp_path / "root"
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    guest = root / "demo"
    guest.mkdir()
    os.chmod(guest, 0o755)  # pre-created with a mode that shows the serial log to everyone
    gdir = GuestDir("demo", str(root))
    gdir.prepare()
    assert os.stat(root).st_mode & 0o777 == 0o700
    assert os.stat(guest).st_mode & 0o777 == 0o700
    gdir.close()


def test_symlinks_are_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(StateDirError, match="symbolic link"):
        secure_root(str(link))
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    (root / "demo").symlink_to(real)
    with pytest.raises(StateDirError, match="symbolic link"):
        GuestDir("demo", str(root)).prepare()
    # A file in a guest directory that became a symlink is not followed.
    (root / "other").mkdir(mode=0o700)
    (root / "other" / "state.json").symlink_to(tmp_path / "elsewhere.json")
    (tmp_path / "elsewhere.json").write_text("{}")
    with pytest.raises(StateDirError, match="symbolic link"):
        GuestDir("other", str(root)).read_record()


def test_foreign_owner_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to make a directory another user owns")
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    os.chown(root, 12345, 12345)
    with pytest.raises(StateDirError, match="belongs to uid 12345"):
        verify_dir(str(root), create=False)


def test_hand_edited_record_is_one_line(tmp_path):
    gdir = tmp_path / "state" / "demo"
    gdir.mkdir(parents=True, mode=0o700)
    os.chmod(gdir.parent, 0o700)
    (gdir / "state.json").write_text(json.dumps({"version": 1, "name": "demo", "uuid": "u",
                                                 "state_dir": str(gdir), "started": 1.0,
                                                 "qemu": {"pid": "12", "create_time": 1}}))
    definition = tmp_path / "demo.xml"
    definition.write_text((XML2ARGV / "genid.xml").read_text().replace("QEMUGuest1", "demo"))
    for args in (["status", "demo"], ["destroy", "demo"], ["start", str(definition)]):
        err = one_line(qemuwrap(*args, "--state-dir", str(tmp_path / "state")))
        assert "damaged guest record: 'qemu.pid' is not an integer" in err, err
    (gdir / "state.json").write_text("{not json")
    err = one_line(qemuwrap("status", "demo", "--state-dir", str(tmp_path / "state")))
    assert "not a guest record (damaged JSON)" in err


def test_status_of_an_unknown_guest_exits_1(tmp_path):
    err = one_line(qemuwrap("status", "nosuch", "--state-dir", str(tmp_path)))
    assert "no guest 'nosuch' here" in err


@pytest.fixture
def two_users():
    """A victim and an attacker, local users made for this test and removed after."""
    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("runuser"):
        pytest.skip("needs root, useradd and runuser to make two local users")
    why = unreachable_by_others()
    if why:
        pytest.skip(why)
    names = ["qwvictim", "qwattacker"]
    for name in names:
        subprocess.run(["userdel", "-r", name], capture_output=True)
        subprocess.run(["useradd", "-M", "-s", "/bin/sh", name], check=True)
    try:
        yield names
    finally:
        for name in names:
            subprocess.run(["userdel", "-r", name], capture_output=True)


def test_tmp_takeover_by_another_user_fails(two_users):
    """Without XDG_RUNTIME_DIR the victim's root is /tmp/qemuwrap-UID. The attacker makes
    it first, with a guest directory whose log is a symlink to the victim's file and a
    state.json of their own: the victim's qemuwrap refuses the root, in one line, and
    touches nothing of the attacker's."""
    victim, attacker = two_users
    uid = int(subprocess.run(["id", "-u", victim], capture_output=True, text=True,
                             check=True).stdout)
    root = Path(f"/tmp/qemuwrap-{uid}")
    shutil.rmtree(root, ignore_errors=True)
    tmp_path = Path(tempfile.mkdtemp(prefix="qemuwrap-takeover-"))  # readable by the victim
    os.chmod(tmp_path, 0o755)
    precious = tmp_path / "precious.txt"
    precious.write_text("the victim's data\n")
    os.chown(precious, uid, uid)
    plant = (f"import os, json; os.makedirs('{root}/demo', 0o777); "
             f"os.chmod('{root}', 0o777); os.chmod('{root}/demo', 0o777); "
             f"os.symlink('{precious}', '{root}/demo/supervisor.log'); "
             f"open('{root}/demo/state.json', 'w').write('{{}}')")
    subprocess.run(["runuser", "-u", attacker, "--", sys.executable, "-c", plant], check=True)
    definition = tmp_path / "demo.xml"
    definition.write_text((XML2ARGV / "genid.xml").read_text().replace("QEMUGuest1", "demo"))
    os.chmod(definition, 0o644)
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR",
                                                            "QEMUWRAP_STATE_DIR")}
    try:
        for args in (["status", "demo"], ["list"], ["destroy", "demo"],
                     ["start", str(definition), "--caps", str(DEFAULT_CAPS)]):
            res = subprocess.run(["runuser", "-u", victim, "--", "env", "-u",
                                  "XDG_RUNTIME_DIR", f"PYTHONPATH={ROOT}", sys.executable,
                                  "-m", "qemuwrap", *args], capture_output=True, text=True,
                                 timeout=60, env=env)
            err = one_line(res)
            assert f"{root} belongs to uid" in err and "refusing to use it" in err, err
        assert precious.read_text() == "the victim's data\n"
        assert sorted(os.listdir(root / "demo")) == ["state.json", "supervisor.log"]
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(tmp_path, ignore_errors=True)
