"""Identity is stable: a generated uuid and generated MACs are written back with the
genid, in one minimal atomic edit, so the second load is the same machine."""

from __future__ import annotations

import pytest

from qemuwrap.conf import guid
from qemuwrap.conf.domain import load
from qemuwrap.definition import DefinitionWriteError, identity_edits, save_identity

SRC = b"""<?xml version='1.0'?>
<!-- kept as written -->
<domain type='qemu'>
  <name>nic</name>
  <genid/>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><acpi/></features>
  <devices>
    <interface type='user'/>
    <interface type='user' >
      <model type='virtio'/>
    </interface>
    <interface type='user'><mac address='52:54:00:00:00:01'/></interface>
  </devices>
</domain>
"""


def test_uuid_macs_and_genid_are_written_back_once(tmp_path):
    path = tmp_path / "nic.xml"
    path.write_bytes(SRC)
    data, dom = load(str(path))
    assert dom.uuid_generated and dom.genid_generated
    assert save_identity(str(path), data, dom)
    new = path.read_bytes()
    macs = [nic.mac for nic in dom.devices.interfaces]
    assert new == SRC.replace(
        b"<name>nic</name>",
        f"<name>nic</name>\n  <uuid>{dom.uuid_str}</uuid>".encode()).replace(
        b"<genid/>", f"<genid>{dom.genid_str}</genid>".encode()).replace(
        b"<interface type='user'/>",
        f"<interface type='user'>\n      <mac address='{macs[0]}'/>\n    </interface>"
        .encode()).replace(
        b"<interface type='user' >\n",
        f"<interface type='user' >\n      <mac address='{macs[1]}'/>\n".encode())
    data2, again = load(str(path))
    assert (again.uuid, again.genid, [n.mac for n in again.devices.interfaces]) == \
        (dom.uuid, dom.genid, macs)
    assert not again.uuid_generated and not any(n.mac_generated
                                                for n in again.devices.interfaces)
    assert identity_edits(data2, again) == []  # the second start writes nothing
    assert not save_identity(str(path), data2, again)
    assert [p.name for p in tmp_path.iterdir()] == ["nic.xml"]


def test_a_changed_genid_is_written_and_an_unchanged_one_is_not(tmp_path):
    path = tmp_path / "g.xml"
    path.write_bytes(SRC.replace(b"<genid/>", b"<genid>E9392370-2917-565E-692B-"
                                             b"D057F46512D6</genid>"))
    data, dom = load(str(path))
    assert all(e[2].startswith(("\n", "<interface", "<mac")) or "<uuid>" in e[2]
               for e in identity_edits(data, dom))  # the genid as written stays
    dom.genid = guid.generate_v4()  # a restore's new one
    save_identity(str(path), data, dom)
    assert f"<genid>{dom.genid_str}</genid>".encode() in path.read_bytes()


def test_a_concurrent_edit_is_not_overwritten(tmp_path):
    path = tmp_path / "nic.xml"
    path.write_bytes(SRC)
    data, dom = load(str(path))
    path.write_bytes(SRC + b"<!-- edited -->\n")
    with pytest.raises(DefinitionWriteError, match="changed while it was being used"):
        save_identity(str(path), data, dom)
