"""Writing definitions back: only the genid changes, atomically, in the file's own encoding,
never over a concurrent edit, keeping what the file is (owner, mode, xattrs, links)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from qemuwrap.conf import guid
from qemuwrap.conf.domain import load
from qemuwrap.definition import DefinitionWriteError, atomic_write, save_genid, splice

from conftest import XML2ARGV, unreachable_by_others

ODD = b"""<?xml version='1.0'?>
<!-- a comment qemuwrap must keep -->
<domain type="qemu">  <name>odd</name>
    <uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid><genid
    /><memory unit="MiB">64</memory>
  <os><type arch="x86_64" machine="pc">hvm</type></os>
  <features><acpi/></features>
</domain>
"""


def test_save_genid_changes_only_the_element(tmp_path):
    path = tmp_path / "odd.xml"
    path.write_bytes(ODD)
    os.chmod(path, 0o640)
    data, dom = load(str(path), random=guid.counting_random)
    save_genid(str(path), data, dom)
    new = path.read_bytes()
    assert new == ODD.replace(b"<genid\n    />",
                              b"<genid>00010203-0405-4607-8809-0a0b0c0d0e0f</genid>")
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["odd.xml"]  # no temp file left
    _data, again = load(str(path))
    assert again.genid_str == "00010203-0405-4607-8809-0a0b0c0d0e0f"
    assert not again.genid_generated


def test_save_genid_replaces_an_existing_value(tmp_path):
    path = tmp_path / "g.xml"
    path.write_bytes((XML2ARGV / "genid.xml").read_bytes())
    data, dom = load(str(path))
    new = guid.generate_v4()
    save_genid(str(path), data, dom, new)
    assert path.read_bytes() == data.replace(b"e9392370-2917-565e-692b-d057f46512d6",
                                             guid.format(new).encode())


def test_concurrent_edit_is_not_overwritten(tmp_path):
    path = tmp_path / "odd.xml"
    path.write_bytes(ODD)
    data, dom = load(str(path))
    path.write_bytes(ODD + b"<!-- edited meanwhile -->\n")
    with pytest.raises(DefinitionWriteError, match="changed while it was being used"):
        save_genid(str(path), data, dom)
    assert path.read_bytes().endswith(b"<!-- edited meanwhile -->\n")


def test_unwritable_directory_is_a_clean_error(tmp_path):
    path = tmp_path / "missing-dir" / "x.xml"
    with pytest.raises(DefinitionWriteError, match="No such file or directory"):
        atomic_write(path, b"x")
    data = ODD
    src = tmp_path / "odd.xml"
    src.write_bytes(data)
    _data, dom = load(str(src))
    with pytest.raises(DefinitionWriteError, match="cannot save the genid"):
        save_genid(str(path), data, dom)


# --------------------------------------------------------------------------- encodings


GENID_AUTO = (XML2ARGV / "genid.xml").read_text().replace(
    "<genid>e9392370-2917-565e-692b-d057f46512d6</genid>",
    "<genid/><title>caf\u00e9</title>")
NEW = "00010203-0405-4607-8809-0a0b0c0d0e0f"


@pytest.mark.parametrize("codec, bom, declared", [
    ("utf-16-le", b"\xff\xfe", "UTF-16"),
    ("utf-16-be", b"", "UTF-16"),
    ("utf-32-le", b"\xff\xfe\x00\x00", "UTF-32"),
    ("iso8859-1", b"", "ISO-8859-1"),
    ("shift_jis", b"", "Shift_JIS"),
    ("utf-8", b"\xef\xbb\xbf", "UTF-8"),
])
def test_save_genid_writes_the_files_own_encoding(tmp_path, codec, bom, declared):
    """issue 9: a UTF-16 definition was corrupted (UTF-8 bytes at a UTF-8 offset)."""
    text = f"<?xml version='1.0' encoding='{declared}'?>\n" + GENID_AUTO
    if codec == "shift_jis":
        text = text.replace("\u00e9", "\u65e5")
    path = tmp_path / "enc.xml"
    path.write_bytes(bom + text.encode(codec))
    data, dom = load(str(path), random=guid.counting_random)
    save_genid(str(path), data, dom)
    after = path.read_bytes()
    assert after == bom + text.replace("<genid/>", f"<genid>{NEW}</genid>").encode(codec)
    _data, again = load(str(path))
    assert again.genid_str == NEW and not again.genid_generated


def test_stateful_encoding_is_refused_in_one_line(tmp_path):
    path = tmp_path / "jis.xml"
    original = ("<?xml version='1.0' encoding='ISO-2022-JP'?>\n"
                + GENID_AUTO.replace("\u00e9", "\u65e5")).encode("iso2022_jp")
    path.write_bytes(original)
    data, dom = load(str(path))
    with pytest.raises(DefinitionWriteError, match="cannot edit a ISO-2022-JP file in place") \
            as exc:
        save_genid(str(path), data, dom)
    assert "\n" not in str(exc.value)
    assert path.read_bytes() == original


def test_empty_genid_right_before_an_end_tag(tmp_path):
    """An empty element's end offset must not swallow its parent's end tag."""
    xml = GENID_AUTO.replace("<genid/><title>caf\u00e9</title>", "").replace(
        "    <memballoon model='none'/>\n  </devices>",
        "    <memballoon model='none'/></devices>").replace(
        "<uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid>",
        "<uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid><genid/>")
    path = tmp_path / "tight.xml"
    path.write_text(xml)
    data, dom = load(str(path), random=guid.counting_random)
    assert data[dom.nodes["genid"].start:dom.nodes["genid"].end] == b"<genid/>"
    save_genid(str(path), data, dom)
    assert path.read_text() == xml.replace("<genid/>", f"<genid>{NEW}</genid>")


def test_splice_refuses_overlaps_and_split_characters():
    data = "<a>\u00e9</a>".encode()
    with pytest.raises(DefinitionWriteError, match="overlaps"):
        splice(data, [(0, 3, "<b>"), (2, 4, "x")])
    with pytest.raises(DefinitionWriteError, match="in place"):
        splice(data, [(4, 5, "x")])  # the middle of "é"
    assert splice(data, [(3, 5, "\u00e8")]) == "<a>\u00e8</a>".encode()
    latin = "<?xml version='1.0' encoding='ISO-8859-1'?><a>x</a>".encode("latin-1")
    start = latin.index(b">x<") + 1
    # a character Latin-1 cannot hold becomes a character reference
    assert splice(latin, [(start, start + 1, "\u20ac")]).endswith(b"<a>&#8364;</a>")


# --------------------------------------------------------------------------- the file itself


def posix_acl(owner: int, user: tuple[int, int], group: int, mask: int, other: int) -> bytes:
    """The value of a ``system.posix_acl_access`` attribute (no setfacl needed): the
    owner's, one user's (uid, permissions), the group's, mask and others' permissions."""
    everyone = 0xFFFFFFFF
    entries = [(0x01, owner, everyone), (0x02, user[1], user[0]), (0x04, group, everyone),
               (0x10, mask, everyone), (0x20, other, everyone)]
    return (2).to_bytes(4, "little") + b"".join(
        tag.to_bytes(2, "little") + perm.to_bytes(2, "little") + ident.to_bytes(4, "little")
        for tag, perm, ident in entries)


@pytest.fixture
def definition(tmp_path):
    """A definition with <genid/>, loaded: (path, data, dom)."""
    path = tmp_path / "def.xml"
    path.write_text(GENID_AUTO)

    def reload():
        data, dom = load(str(path), random=guid.counting_random)
        return data, dom

    return path, reload


def test_owner_group_mode_and_xattrs_are_kept(definition):
    """issue 9: root starting a user's file made it root:root."""
    path, reload = definition
    if os.geteuid() != 0:
        pytest.skip("giving the file to another owner needs root")
    os.chown(path, 65534, 65534)
    os.chmod(path, 0o640)
    os.setxattr(path, "user.origin", b"downloaded")
    try:  # owner rw, uid 65533 r, group r, mask r, other -
        os.setxattr(path, "system.posix_acl_access", posix_acl(6, (65533, 4), 4, 4, 0))
    except OSError:
        pass  # a file system without ACLs: the user xattr still proves the copy
    before = {n: os.getxattr(path, n) for n in os.listxattr(path)}
    data, dom = reload()
    save_genid(str(path), data, dom)
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (65534, 65534, 0o640)
    assert {n: os.getxattr(path, n) for n in os.listxattr(path)} == before
    assert NEW in path.read_text()


def test_read_only_file_is_refused_even_for_root(definition):
    """issue 9: a 0444 definition was rewritten."""
    path, reload = definition
    os.chmod(path, 0o444)
    data, dom = reload()
    with pytest.raises(DefinitionWriteError, match=r"it is read-only \(mode 0444\)$") as exc:
        save_genid(str(path), data, dom)
    assert str(exc.value) == f"cannot save the genid into {path}: it is read-only (mode 0444)"
    assert path.read_text() == GENID_AUTO
    assert os.listdir(path.parent) == ["def.xml"]


def test_immutable_file_is_refused(definition):
    path, reload = definition
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        pytest.skip("chattr +i is not possible here (needs root and a file system with "
                    "inode flags)")
    try:
        data, dom = reload()
        with pytest.raises(DefinitionWriteError, match=r"immutable \(chattr \+i\)"):
            save_genid(str(path), data, dom)
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    assert path.read_text() == GENID_AUTO


def test_read_only_mount_is_refused(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN)")
    try:
        path = mnt / "def.xml"
        path.write_text(GENID_AUTO)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        data, dom = load(str(path), random=guid.counting_random)
        with pytest.raises(DefinitionWriteError, match="read-only file system"):
            save_genid(str(path), data, dom)
        assert path.read_text() == GENID_AUTO
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_symlink_is_written_through_and_said(definition, tmp_path):
    """issue 9: the link was replaced by a regular file; the real target kept <genid/>."""
    path, reload = definition
    link = tmp_path / "link.xml"
    link.symlink_to(path)
    data, dom = load(str(link), random=guid.counting_random)
    note = save_genid(str(link), data, dom)
    assert os.path.islink(link) and os.readlink(link) == str(path)
    assert NEW in path.read_text()
    assert note == f"{link} is a symbolic link: wrote its target {path}"
    assert sorted(os.listdir(tmp_path)) == ["def.xml", "link.xml"]


def test_hard_linked_file_is_refused(definition, tmp_path):
    """issue 9: hard links were broken (the other name kept the old content)."""
    path, reload = definition
    os.link(path, tmp_path / "other.xml")
    data, dom = reload()
    with pytest.raises(DefinitionWriteError, match="2 hard links"):
        save_genid(str(path), data, dom)
    assert os.stat(path).st_ino == os.stat(tmp_path / "other.xml").st_ino
    assert path.read_text() == GENID_AUTO


@pytest.fixture
def open_dir():
    """A directory another user can work in (pytest's tmp_path is root's alone)."""
    import shutil
    import tempfile

    directory = tempfile.mkdtemp(prefix="qemuwrap-test-")
    os.chmod(directory, 0o777)
    yield directory
    shutil.rmtree(directory)


def as_nobody(code: str) -> subprocess.CompletedProcess:
    if os.geteuid() != 0:
        pytest.skip("running as another user needs root")
    why = unreachable_by_others()
    if why:
        pytest.skip(why)

    def drop():
        os.setgid(65534)
        os.setgroups([])
        os.setuid(65534)

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          preexec_fn=drop, timeout=60, cwd="/")


WRITE = """
from qemuwrap.definition import atomic_write, DefinitionWriteError
try:
    atomic_write({path!r}, b"<domain/>")
except DefinitionWriteError as exc:
    print(exc)
else:
    print("written")
"""


def test_acl_that_denies_the_user_is_refused(open_dir):
    """Mode 0666 says anyone may write; the ACL says uid 65534 may only read."""
    path = os.path.join(open_dir, "def.xml")
    with open(path, "w") as f:
        f.write(GENID_AUTO)
    os.chmod(path, 0o666)
    try:
        os.setxattr(path, "system.posix_acl_access", posix_acl(6, (65534, 4), 6, 6, 6))
    except OSError:
        pytest.skip("this file system has no POSIX ACLs")
    res = as_nobody(WRITE.format(path=path))
    assert res.stdout.strip().endswith("you may not write it (mode 0666, owner uid 0, or its "
                                       "ACL)"), res.stderr
    assert open(path).read() == GENID_AUTO


def test_someone_elses_writable_file_is_not_taken_over(open_dir):
    path = os.path.join(open_dir, "def.xml")
    with open(path, "w") as f:
        f.write(GENID_AUTO)
    os.chmod(path, 0o666)
    res = as_nobody(WRITE.format(path=path))
    assert "it belongs to uid 0: replacing it as uid 65534 would change its owner" \
        in res.stdout, res.stderr
    assert os.stat(path).st_uid == 0 and open(path).read() == GENID_AUTO


def test_own_file_in_an_open_directory_is_written_as_nobody(open_dir):
    path = os.path.join(open_dir, "def.xml")
    res = as_nobody(WRITE.format(path=path) + "\n" + WRITE.format(path=path))
    assert res.stdout.split() == ["written", "written"], res.stderr
    assert os.stat(path).st_uid == 65534


KILLED = """
import os, signal
from qemuwrap import definition
real = getattr(os, {patch!r})
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
setattr(os, {patch!r}, die)
definition.atomic_write({path!r}, b"new")
"""


@pytest.mark.parametrize("patch", ["fsync", "rename"])
def test_no_temp_file_survives_a_kill(definition, patch):
    """issue 9: a killed start left .NAME.*.tmp files behind.  Killed while writing,
    the O_TMPFILE file has no name at all; killed between its linking and the rename,
    the name it got is removed by the next write."""
    path, _reload = definition
    res = subprocess.run([sys.executable, "-c", KILLED.format(patch=patch, path=str(path))],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == -9, res.stderr
    left = sorted(os.listdir(path.parent))
    assert path.read_text() == GENID_AUTO  # never torn
    if patch == "fsync":
        assert left == ["def.xml"]
        return
    assert len(left) == 2 and left[0].startswith(".def.xml.qemuwrap-"), left
    atomic_write(path, b"next")
    assert os.listdir(path.parent) == ["def.xml"] and path.read_bytes() == b"next"


def test_old_style_temp_files_are_removed_once_old(definition):
    path, _reload = definition
    old = path.parent / ".def.xml.0123456789ab.tmp"
    fresh = path.parent / ".def.xml.ba9876543210.tmp"
    for p in (old, fresh):
        p.write_text("x")
    os.utime(old, (0, 0))
    atomic_write(path, b"next")
    assert sorted(os.listdir(path.parent)) == [fresh.name, "def.xml"]
