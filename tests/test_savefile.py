"""Save files prove what they hold: the checksum over header and stream, header field
types, truncation; each refusal one line, before any QEMU starts (no QEMU needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from qemuwrap import savefile
from qemuwrap.savefile import SaveFileError

from conftest import XML2ARGV

STREAM = b"QEVM" + os.urandom(300_000)


def write(path, stream: bytes = STREAM, **meta) -> str:
    """A save file written the way `qemuwrap save` writes one: the stream is written
    into the writer's descriptor (by QEMU, there) while it is hashed behind."""
    xml = (XML2ARGV / "genid.xml").read_text()
    fields = savefile.header_meta(name="QEMUGuest1", uuid="c7a5fdbd-edaf-9455-926a-"
                                  "d65c16db1809", xml=xml, genid=None, memory_bytes=1 << 20)
    fields.update(meta)
    writer = savefile.Writer(str(path), fields)
    half = len(stream) // 2
    os.write(writer.fd, stream[:half])
    assert writer.hash_written() == half
    os.write(writer.fd, stream[half:])
    return writer.finish()


def test_roundtrip(tmp_path):
    path = tmp_path / "g.save"
    checksum = write(path)
    save = savefile.open_checked(str(path))
    try:
        assert save.meta["checksum"] == checksum and save.name == "QEMUGuest1"
        assert os.read(save.fd, 4) == b"QEVM"  # the fd QEMU gets starts at the stream
    finally:
        save.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.save"]  # no temp file left


def test_flipped_byte_in_the_stream_is_refused(tmp_path):
    path = tmp_path / "g.save"
    write(path)
    data = bytearray(path.read_bytes())
    data[-1000] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(SaveFileError, match="checksum mismatch"):
        savefile.open_checked(str(path))


def test_edited_header_is_refused(tmp_path):
    path = tmp_path / "g.save"
    write(path)
    data = path.read_bytes().replace(b"<memory unit='KiB'>219136</memory>",
                                     b"<memory unit='KiB'>219137</memory>")
    path.write_bytes(data)
    with pytest.raises(SaveFileError, match="checksum mismatch"):
        savefile.open_checked(str(path))


@pytest.mark.parametrize("field, value", [("name", 5), ("xml", None), ("genid", 7),
                                          ("memory_bytes", "1"), ("saved", True),
                                          ("stream_size", 12), ("checksum", ["x"])])
def test_wrong_header_types_are_one_line(tmp_path, field, value):
    path = tmp_path / "g.save"
    write(path)
    data = path.read_bytes()
    end = data.index(b"\n", len(savefile.MAGIC))
    meta = json.loads(data[len(savefile.MAGIC):end])
    meta[field] = value
    head = savefile.MAGIC + json.dumps(meta).encode() + b"\n"
    path.write_bytes(head + b"\0" * (-len(head) % 4096) + data[data.index(b"QEVM"):])
    res = subprocess.run([sys.executable, "-m", "qemuwrap", "restore", str(path),
                          "--state-dir", str(tmp_path / "state")], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
    assert "damaged header" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "state" / "QEMUGuest1" / "qemu.log").exists()  # no QEMU ran


def test_truncated_and_foreign_files(tmp_path):
    path = tmp_path / "g.save"
    write(path)
    cut = tmp_path / "cut.save"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(SaveFileError, match="truncated"):
        savefile.open_checked(str(cut))
    other = tmp_path / "old.save"
    other.write_bytes(b"QEMUWRAP-SAVE 1\n{}\n")
    with pytest.raises(SaveFileError, match="another qemuwrap version"):
        savefile.open_checked(str(other))
    with pytest.raises(SaveFileError, match="not a regular file"):
        savefile.open_checked(str(tmp_path))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(SaveFileError, match="not a regular file"):
        savefile.open_checked(str(fifo))  # refused, never blocks


def test_a_stalled_stream_is_abandoned(tmp_path, monkeypatch):
    from qemuwrap.errors import QemuwrapError
    from qemuwrap.ops import save

    monkeypatch.setattr(save, "STALL_TIMEOUT", 0.2)
    xml = (XML2ARGV / "genid.xml").read_text()
    writer = savefile.Writer(str(tmp_path / "s.save"), savefile.header_meta(
        name="x", uuid="u", xml=xml, genid=None, memory_bytes=1))
    os.write(writer.fd, b"QEVM")
    try:
        with pytest.raises(QemuwrapError, match="QEMU wrote nothing for 0.2 s"):
            save._follow(writer, lambda timeout: None, progress=False)
    finally:
        writer.discard()
    assert list(tmp_path.iterdir()) == []


def test_restore_refuses_a_stored_qemu_commandline_without_xml(tmp_path):
    """A save file anyone could have written, whose stored definition passes QEMU an
    argument of its own (``-netdev tap,script=PROG`` would run PROG as root): refused in
    one line, saying how to restore it, before anything runs."""
    xml = (XML2ARGV / "genid.xml").read_text().replace(
        "<domain type='qemu' id='1'>",
        "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>")
    xml = xml.replace("</domain>", "  <qemu:commandline><qemu:arg value='-netdev'/>"
                      f"<qemu:arg value='tap,id=x,script={tmp_path}/prog'/>"
                      "</qemu:commandline>\n</domain>")
    path = tmp_path / "evil.save"
    write(path, xml=xml)
    prog = tmp_path / "prog"
    ran = tmp_path / "ran"
    prog.write_text(f"#!/bin/sh\ntouch {ran}\n")
    prog.chmod(0o755)
    res = subprocess.run([sys.executable, "-m", "qemuwrap", "restore", str(path),
                          "--state-dir", str(tmp_path / "state")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert res.stderr == (
        f"qemuwrap: {path}: the definition stored in this save file passes QEMU arguments "
        "or environment of its own, unchecked (<qemu:commandline>); restore it with --xml "
        "FILE.xml, your own definition of guest 'QEMUGuest1' (checked against the stored "
        "one)\n")
    assert not ran.exists() and not (tmp_path / "state" / "QEMUGuest1").exists()
    env_only = xml.replace("<qemu:arg value='-netdev'/>", "").replace(
        f"<qemu:arg value='tap,id=x,script={tmp_path}/prog'/>",
        "<qemu:env name='LD_PRELOAD' value='/tmp/evil.so'/>")
    write(path, xml=env_only)
    res = subprocess.run([sys.executable, "-m", "qemuwrap", "restore", str(path),
                          "--state-dir", str(tmp_path / "state")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "(<qemu:commandline>)" in res.stderr
