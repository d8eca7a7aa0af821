"""Writing definitions back: only the genid changes, atomically, never over a concurrent edit."""

from __future__ import annotations

import os

import pytest

from qemuwrap.conf import guid
from qemuwrap.conf.domain import load
from qemuwrap.definition import DefinitionWriteError, atomic_write, save_genid

from conftest import XML2ARGV

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
