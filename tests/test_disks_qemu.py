"""Disks in a real QEMU 7.2 (TCG, paused at -S): what the guest would see, read back
over QMP (``query-block``, ``info qtree``, ``qom-get``) — where each disk sits on its
bus, its device properties, its backing chain, its throttling — and data read through
an NBD disk served by ``qemu-nbd``."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from qemuwrap.conf import guid
from qemuwrap.conf.devices.controller import Controller, ControllerModel, ControllerType
from qemuwrap.conf.domain import loads
from qemuwrap.qemu.argv import Command
from qemuwrap.qemu.build import BuildContext, Paths
from qemuwrap.qemu.build.disk import build_disks
from qemuwrap.qemu.capabilities import Capabilities
from qemuwrap.qemu.command import build_command, complete_definition

from conftest import DEFAULT_CAPS, QEMU, needs_qemu, qmp_at

pytestmark = needs_qemu
CAPS = Capabilities.from_file(DEFAULT_CAPS)
QEMU_IMG = shutil.which("qemu-img")
QEMU_NBD = shutil.which("qemu-nbd")


def guest(devices: str, *, machine: str = "pc", os_extra: str = "") -> str:
    return (f"<domain type='qemu'><name>disks</name><memory unit='MiB'>64</memory>"
            f"<os><type arch='x86_64' machine='{machine}'>hvm</type>{os_extra}</os>"
            f"<features><acpi/></features><devices>"
            f"<emulator>{QEMU}</emulator>{devices}<memballoon model='none'/>"
            "</devices></domain>")


def image(path: Path, fmt: str = "raw", size: str = "16M", backing: Path | None = None,
          backing_fmt: str = "raw") -> Path:
    if QEMU_IMG is None:
        pytest.skip("qemu-img is not installed (Debian package qemu-utils)")
    argv = [QEMU_IMG, "create", "-q", "-f", fmt]
    if backing is not None:
        argv += ["-b", str(backing), "-F", backing_fmt]
    subprocess.run([*argv, str(path), size], check=True)
    return path


async def _session(sock: str, commands: list[tuple[str, dict]]) -> list:
    async with qmp_at(sock, "disks", timeout=10) as qmp:
        out = [await qmp.execute(cmd, args) if args else await qmp.execute(cmd)
               for cmd, args in commands]
    return out


def run(cmd: Command, state: Path, commands: list[tuple[str, dict]]) -> list:
    """Start ``cmd`` paused, run QMP ``commands``, quit; QEMU must not complain.  The
    replies, then what QEMU wrote on its stdout (HMP qemu-io prints there)."""
    proc = subprocess.Popen(cmd.argv, env=cmd.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        try:
            out = asyncio.run(_session(str(state / "qmp.sock"), commands))
        except AssertionError:
            proc.wait(timeout=10)
            raise AssertionError(proc.stderr.read().decode(errors="replace")) from None
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read().decode(errors="replace")
    assert proc.returncode == 0 and "warning" not in stderr, stderr
    return [*out, proc.stdout.read().decode(errors="replace")]


def start(xml: str, tmp_path: Path, commands: list[tuple[str, dict]], **kw) -> list:
    dom = loads(guest(xml, **kw), random=guid.counting_random)
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    return run(build_command(dom, CAPS, state), state, commands)


QTREE = ("human-monitor-command", {"command-line": "info qtree"})


def qtree_device(tree: str, dev_id: str) -> dict[str, str]:
    """The properties of device ``dev_id`` in ``info qtree``, and ``bus``: the bus it
    hangs on."""
    lines = tree.splitlines()
    for n, line in enumerate(lines):
        if re.search(rf'dev: [\w-]+, id "{re.escape(dev_id)}"$', line):
            indent = len(line) - len(line.lstrip())
            props = {"type": line.split("dev: ")[1].split(",")[0]}
            for prop in lines[n + 1:]:
                if len(prop) - len(prop.lstrip()) <= indent:
                    break
                key, sep, value = prop.strip().partition(" = ")
                if sep and key not in props:  # '16 (0x10)': the number as written
                    props[key] = re.sub(r" \(.*\)$", "", value).strip('"')
            for up in range(n - 1, -1, -1):  # the nearest "bus:" line above, less indented
                if lines[up].strip().startswith("bus: ") and \
                        len(lines[up]) - len(lines[up].lstrip()) < indent:
                    props["bus"] = lines[up].strip()[5:]
                    break
            return props
    raise AssertionError(f"no device {dev_id} in info qtree:\n{tree}")


def by_device(blocks: list[dict]) -> dict[str, dict]:
    return {b.get("qdev", b.get("device")).split("/")[3] if b.get("qdev", "").startswith(
        "/machine/peripheral/") else b.get("qdev") or b.get("device"): b for b in blocks}


# --------------------------------------------------------------------------- placement
def test_pc_disks_sit_where_libvirt_puts_them(tmp_path):
    """vdb written first still gets the second slot; IDE disk and cdroms on their
    bus/unit by target name; an empty tray; a floppy; a USB stick; boot indexes."""
    a, b, c = (image(tmp_path / f"{n}.img") for n in "abc")
    iso, flp = image(tmp_path / "cd.iso", size="1M"), image(tmp_path / "f.img", size="1440K")
    usb = image(tmp_path / "usb.img")
    xml = (f"<disk type='file' device='disk'><source file='{b}'/><target dev='vdb'/></disk>"
           f"<disk type='file' device='disk'><source file='{a}'/><target dev='vda'/></disk>"
           f"<disk type='file' device='disk'><source file='{c}'/><target dev='hda'/></disk>"
           f"<disk type='file' device='cdrom'><source file='{iso}'/><target dev='hdc'/>"
           "</disk><disk type='file' device='cdrom'><target dev='hdd'/></disk>"
           f"<disk type='file' device='floppy'><source file='{flp}'/><target dev='fdb'/>"
           f"</disk><disk type='file' device='disk'><source file='{usb}'/><target "
           "dev='sda' bus='usb' removable='on'/></disk><controller type='usb' "
           "model='qemu-xhci'/>")
    blocks, tree, boot0, boot1, _out = start(xml, tmp_path, [
        ("query-block", {}), QTREE,
        ("qom-get", {"path": "/machine/peripheral/virtio-disk0", "property": "bootindex"}),
        ("qom-get", {"path": "/machine/peripheral/ide0-1-0", "property": "bootindex"})],
        os_extra="<boot dev='cdrom'/><boot dev='hd'/>")
    tree = tree.replace("\r", "")
    vda, vdb = qtree_device(tree, "virtio-disk0"), qtree_device(tree, "virtio-disk1")
    slot = {d: int(v["addr"].split(".")[0], 16) for d, v in (("vda", vda), ("vdb", vdb))}
    assert slot["vdb"] == slot["vda"] + 1  # by target name, not document order
    assert vda["drive"] == "libvirt-7-format" and vda["bus"] == "pci.0"  # 7 disks, first
    hda, hdc, hdd = (qtree_device(tree, i) for i in ("ide0-0-0", "ide0-1-0", "ide0-1-1"))
    assert (hda["type"], hda["bus"], hda["unit"]) == ("ide-hd", "ide.0", "0")
    assert (hdc["type"], hdc["bus"], hdc["unit"]) == ("ide-cd", "ide.1", "0")
    assert (hdd["type"], hdd["bus"], hdd["unit"], hdd["drive"]) == ("ide-cd", "ide.1", "1",
                                                                    "")
    fdb = qtree_device(tree, "fdc0-0-1")
    assert (fdb["type"], fdb["unit"], fdb["bus"]) == ("floppy", "1", "floppy-bus.0")
    stick = qtree_device(tree, "usb-disk0")
    assert (stick["type"], stick["bus"], stick["removable"]) == ("usb-storage", "usb.0",
                                                                 "true")
    assert (boot0, boot1) == (2, 1)  # <os> boots cdrom, then hd
    inserted = {b["qdev"]: b.get("inserted") for b in blocks}
    assert inserted["ide0-1-1"] is None  # the empty tray
    assert inserted["ide0-1-0"]["ro"] and inserted["ide0-1-0"]["file"] == str(iso)
    assert not inserted["/machine/peripheral/virtio-disk1/virtio-backend"]["ro"]


def test_q35_sata_ports_and_explicit_floppy_controller(tmp_path):
    a, b = image(tmp_path / "a.img"), image(tmp_path / "b.img")
    flp = image(tmp_path / "f.img", size="1440K")
    xml = (f"<disk type='file' device='disk'><source file='{a}'/><target dev='sda' "
           "bus='sata'/></disk>"
           f"<disk type='file' device='disk'><source file='{b}'/><target dev='sdh' "
           "bus='sata' rotation_rate='1'/></disk><controller type='sata' index='1'/>"
           f"<disk type='file' device='floppy'><source file='{flp}'/><target dev='fda'/>"
           "</disk>")
    tree, qom, _out = start(xml, tmp_path, [QTREE, ("human-monitor-command", {
        "command-line": "info qom-tree /machine/peripheral-anon"})], machine="q35",
        os_extra="<boot dev='fd'/><boot dev='hd'/>")
    tree = tree.replace("\r", "")
    sda, sdh = qtree_device(tree, "sata0-0-0"), qtree_device(tree, "sata1-0-1")
    assert sda["bus"] == "ide.0"  # the ICH9's own AHCI, port 0
    assert (sdh["bus"], sdh["rotation_rate"]) == ("sata1.1", "1")  # the second AHCI, port 1
    assert qtree_device(tree, "fdc0-0-0")["type"] == "floppy"
    fdc = re.search(r"(/device\[\d+\]) \(isa-fdc\)", qom)
    assert fdc, qom  # q35 has no floppy controller of its own: the one qemuwrap added
    (bootindex, _out) = start(xml, tmp_path, [("qom-get", {
        "path": f"/machine/peripheral-anon{fdc[1]}", "property": "bootindexA"})], machine="q35",
        os_extra="<boot dev='fd'/><boot dev='hd'/>")
    assert bootindex == 1


def test_ide_frontend_properties_reach_the_device(tmp_path):
    a = image(tmp_path / "a.img")
    xml = (f"<disk type='file' device='disk'><source file='{a}'/><geometry cyls='1024' "
           "heads='16' secs='63' trans='lba'/><blockio logical_block_size='512' "
           "physical_block_size='4096'/><target dev='hda' rotation_rate='7200'/><serial>"
           "WD-123</serial><wwn>5000c50015ea71ad</wwn><shareable/></disk>")
    tree, _out = start(xml, tmp_path, [QTREE])
    hda = qtree_device(tree.replace("\r", ""), "ide0-0-0")
    assert (hda["cyls"], hda["heads"], hda["secs"], hda["bios-chs-trans"]) == \
        ("1024", "16", "63", "lba")
    assert (hda["logical_block_size"], hda["physical_block_size"]) == ("512", "4096")
    assert (hda["serial"], hda["rotation_rate"], hda["share-rw"]) == ("WD-123", "7200",
                                                                      "true")
    assert hda["wwn"] == str(0x5000c50015ea71ad)


def test_scsi_disks_on_virtio_scsi_and_lsi(tmp_path):
    """The disk side of SCSI (the HBAs are area B's: added here by hand): virtio-scsi
    addresses channel, target and LUN; LSI a SCSI id."""
    a, b, c = (image(tmp_path / f"{n}.img") for n in "abc")
    dom = loads(guest(
        f"<disk type='file' device='disk'><source file='{a}'/><target dev='sda'/><address "
        "type='drive' controller='0' bus='0' target='3' unit='2'/><vendor>ACME</vendor>"
        "<product>Disk</product></disk>"
        f"<disk type='file' device='cdrom'><source file='{b}'/><target dev='sdb'/><address "
        "type='drive' controller='0' bus='0' target='4' unit='0'/></disk>"
        f"<disk type='file' device='disk'><source file='{c}'/><target dev='sdc'/><address "
        "type='drive' controller='1' bus='0' target='0' unit='5'/></disk>"),
        random=guid.counting_random)
    devs = dom.devices
    devs.controllers += [Controller(type=ControllerType.SCSI, index=0,
                                    model=ControllerModel.VIRTIO_SCSI),
                         Controller(type=ControllerType.SCSI, index=1,
                                    model=ControllerModel.LSILOGIC)]
    machine = complete_definition(dom, CAPS)
    for disk, alias in zip(devs.disks, ("scsi0-0-3-2", "scsi0-0-4-0", "scsi1-0-5"),
                           strict=True):
        disk.alias.name = alias  # libvirt's names (area B's alias pass decides them)
    state = tmp_path / "state"
    state.mkdir()
    ctx = BuildContext(dom, CAPS, machine, Paths(str(state)), Command(binary=QEMU or ""))
    cmd = ctx.cmd
    cmd.add("-machine", "pc,accel=tcg")
    cmd.add("-S")
    cmd.add("-nodefaults")
    cmd.add("-display", "none")
    cmd.add("-qmp", f"unix:{state}/qmp.sock,server=on,wait=off")
    cmd.add("-device", "virtio-scsi-pci,id=scsi0")
    cmd.add("-device", "lsi,id=scsi1")
    build_disks(ctx)
    tree, _out = run(cmd, state, [QTREE])
    tree = tree.replace("\r", "")
    sda = qtree_device(tree, "scsi0-0-3-2")
    assert (sda["type"], sda["bus"], sda["channel"], sda["scsi-id"], sda["lun"]) == \
        ("scsi-hd", "scsi0.0", "0", "3", "2")
    assert (sda["vendor"], sda["product"], sda["device_id"]) == ("ACME", "Disk",
                                                                 "drive-scsi0-0-3-2")
    assert qtree_device(tree, "scsi0-0-4-0")["type"] == "scsi-cd"
    sdc = qtree_device(tree, "scsi1-0-5")
    assert (sdc["bus"], sdc["scsi-id"], sdc["lun"]) == ("scsi1.0", "5", "0")


# --------------------------------------------------------------------------- storage
def test_backing_chains_as_the_xml_says(tmp_path):
    """A chain named in the XML is opened as named; an empty <backingStore/> means no
    backing even when the image's header names one; no <backingStore> lets QEMU follow
    the header."""
    base = image(tmp_path / "base.raw")
    mid = image(tmp_path / "mid.qcow2", "qcow2", backing=base)
    top = image(tmp_path / "top.qcow2", "qcow2", backing=mid, backing_fmt="qcow2")
    cut = image(tmp_path / "cut.qcow2", "qcow2", backing=base)
    follow = image(tmp_path / "follow.qcow2", "qcow2", backing=base)
    xml = (f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source "
           f"file='{top}'/><backingStore type='file'><format type='qcow2'/><source "
           f"file='{mid}'/><backingStore type='file'><format type='raw'/><source "
           f"file='{base}'/><backingStore/></backingStore></backingStore><target dev='vda'/>"
           f"</disk><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
           f"<source file='{cut}'/><backingStore/><target dev='vdb'/></disk>"
           f"<disk type='file' device='disk'><driver name='qemu' type='qcow2' "
           f"copy_on_read='on'/><source file='{follow}'/><target dev='vdc'/></disk>")
    blocks, _out = start(xml, tmp_path, [("query-block", {})])
    got = {b["qdev"].split("/")[3]: b["inserted"] for b in blocks}
    assert got["virtio-disk0"]["backing_file_depth"] == 2
    chain = got["virtio-disk0"]["image"]
    assert chain["backing-image"]["filename"] == str(mid)
    assert chain["backing-image"]["backing-image"]["filename"] == str(base)
    assert got["virtio-disk1"]["backing_file_depth"] == 0  # <backingStore/>: cut off
    assert got["virtio-disk2"]["drv"] == "copy-on-read"
    # QEMU followed the header: copy-on-read filter, follow.qcow2, then base.raw
    assert got["virtio-disk2"]["image"]["backing-image"]["backing-image"]["filename"] == \
        str(base)


def test_transient_disk_writes_vanish(tmp_path):
    """<transient>: the guest writes to a temporary overlay over the image, opened
    read-only (shareable); the image is unchanged after QEMU quits, nothing is left."""
    img = image(tmp_path / "golden.qcow2", "qcow2")
    before = img.read_bytes()
    xml = (f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source "
           f"file='{img}'/><target dev='vda'/><transient shareBacking='yes'/></disk>")
    write = "qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend \"write -P 0x5a 0 64k\""
    blocks, _w, out = start(xml, tmp_path, [
        ("query-block", {}), ("human-monitor-command", {"command-line": write})])
    assert "wrote 65536/65536 bytes at offset 0" in out, out
    inserted = blocks[0]["inserted"]
    assert inserted["backing_file_depth"] == 1 and not inserted["ro"]
    assert inserted["image"]["backing-image"]["filename"] == str(img)
    assert img.read_bytes() == before


def test_iotune_is_a_throttle_group(tmp_path):
    a, b = image(tmp_path / "a.img"), image(tmp_path / "b.img")
    tune = ("<iotune><total_bytes_sec>1048576</total_bytes_sec><read_iops_sec>50"
            "</read_iops_sec><group_name>pair</group_name></iotune>")
    xml = (f"<disk type='file' device='disk'><source file='{a}'/><target dev='vda'/>{tune}"
           f"</disk><disk type='file' device='disk'><source file='{b}'/><target dev='vdb'/>"
           f"{tune}</disk>")
    limits, nodes, _out = start(xml, tmp_path, [
        ("qom-get", {"path": "/objects/throttle-group0", "property": "limits"}),
        ("query-named-block-nodes", {})])
    assert (limits["bps-total"], limits["iops-read"], limits["iops-total"]) == (1048576, 50, 0)
    throttles = [n for n in nodes if n["drv"] == "throttle"]
    assert {n["node-name"] for n in throttles} == {"libvirt-throttle-vda",
                                                   "libvirt-throttle-vdb"}


def test_cache_modes_reach_the_nodes(tmp_path):
    a, b = image(tmp_path / "a.img"), image(tmp_path / "b.img")
    xml = (f"<disk type='file' device='disk'><driver name='qemu' type='raw' cache='none' "
           f"io='native' discard='unmap' detect_zeroes='unmap'/><source file='{a}'/>"
           "<target dev='vda'/></disk>"
           f"<disk type='file' device='disk'><driver name='qemu' type='raw' cache='unsafe'/>"
           f"<source file='{b}'/><target dev='vdb'/></disk>")
    blocks, _out = start(xml, tmp_path, [("query-block", {})])
    got = {b["qdev"].split("/")[3]: b["inserted"] for b in blocks}
    assert got["virtio-disk0"]["cache"] == {"writeback": True, "direct": True,
                                            "no-flush": False}
    assert got["virtio-disk0"]["detect_zeroes"] == "unmap"
    assert got["virtio-disk1"]["cache"] == {"writeback": True, "direct": False,
                                            "no-flush": True}


@pytest.fixture
def nbd_server(tmp_path):
    """qemu-nbd exporting a raw image whose first 4 KiB are 0xab, on a UNIX socket and
    on a TCP port of 127.0.0.1; killed afterwards."""
    if QEMU_NBD is None:
        pytest.skip("qemu-nbd is not installed (Debian package qemu-utils)")
    data = tmp_path / "export.raw"
    data.write_bytes(b"\xab" * 4096 + b"\0" * (4 * 1024 * 1024 - 4096))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sock = tmp_path / "nbd.sock"
    procs = [subprocess.Popen([QEMU_NBD, "-f", "raw", "-x", "data", "-t", "-k", str(sock),
                               str(data)], stderr=subprocess.PIPE),
             subprocess.Popen([QEMU_NBD, "-f", "raw", "-x", "data", "-t", "-b", "127.0.0.1",
                               "-p", str(port), "-r", str(data)], stderr=subprocess.PIPE)]
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() or _refused(port):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                pytest.fail("qemu-nbd did not come up: " + b" ".join(
                    p.stderr.read() for p in procs if p.poll() is not None).decode())
            time.sleep(0.02)
        yield sock, port
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_nbd_disks_read_what_qemu_nbd_serves(tmp_path, nbd_server):
    """Network disks over NBD (a UNIX socket and TCP): QEMU attaches both and the
    guest's disk returns the served bytes."""
    sock, port = nbd_server
    xml = (f"<disk type='network' device='disk'><source protocol='nbd' name='data'><host "
           f"transport='unix' socket='{sock}'/></source><target dev='vda'/></disk>"
           f"<disk type='network' device='disk'><source protocol='nbd' name='data'><host "
           f"name='127.0.0.1' port='{port}'/></source><target dev='vdb'/><readonly/></disk>")
    io = "qemu-io -d /machine/peripheral/{} \"read -P 0x{:x} 0 4k\""
    blocks, _good, _bad, _tcp, out = start(xml, tmp_path, [
        ("query-block", {}),
        ("human-monitor-command", {"command-line": io.format("virtio-disk0/virtio-backend",
                                                             0xab)}),
        ("human-monitor-command", {"command-line": io.format("virtio-disk0/virtio-backend",
                                                             0xcd)}),
        ("human-monitor-command", {"command-line": io.format("virtio-disk1/virtio-backend",
                                                             0xab)})])
    got = {b["qdev"].split("/")[3]: b["inserted"] for b in blocks}
    assert got["virtio-disk0"]["image"]["virtual-size"] == 4 * 1024 * 1024
    assert got["virtio-disk1"]["ro"]
    # qemu-io prints on QEMU's stdout: three reads, the second (expecting 0xcd) wrong
    reads = out.split("read 4096/4096 bytes at offset 0")
    assert len(reads) == 4, out
    assert ["Pattern verification failed" in r for r in reads] == [False, True, False,
                                                                  False], out


def test_unreachable_nbd_server_fails_in_qemu_with_its_reason(tmp_path):
    """No server: QEMU (not qemuwrap, which cannot know) refuses to start, naming it."""
    state = tmp_path / "state"
    state.mkdir()
    dom = loads(guest(f"<disk type='network' device='disk'><source protocol='nbd'><host "
                      f"transport='unix' socket='{tmp_path}/nobody.sock'/></source><target "
                      "dev='vda'/></disk>"), random=guid.counting_random)
    cmd = build_command(dom, CAPS, state)
    res = subprocess.run(cmd.argv, env=cmd.env, capture_output=True, text=True, timeout=20)
    assert res.returncode == 1
    assert "nobody.sock" in res.stderr and "Failed to connect" in res.stderr


def test_every_protocol_qemu_lacks_is_named_before_start(tmp_path):
    """Protocols in QEMU modules this host does not have are refused by the host
    check, with the package to install (QEMU would only say 'Unknown driver')."""
    from qemuwrap.qemu.validate.disk import (
        PROTOCOL_MODULES,
        QEMU_MODULE_DIRS,
        check_host_storage,
    )

    missing = [p for p, m in PROTOCOL_MODULES.items()
               if not any(os.path.exists(f"{d}/{m}.so") for d in QEMU_MODULE_DIRS)]
    if not missing:
        pytest.skip("qemu-block-extra is installed: every protocol's module is here")
    proto = missing[0]
    name = {"rbd": "pool/img", "gluster": "vol/img", "iscsi": "iqn.2024-01.org.x:t/0"}.get(
        str(proto), "/x")
    dom = loads(guest(f"<disk type='network' device='disk'><source protocol='{proto}' "
                      f"name='{name}'><host name='127.0.0.1'/></source><target dev='vda'/>"
                      "</disk>"), random=guid.counting_random)
    problems = check_host_storage(dom)
    assert len(problems) == 1 and "qemu-block-extra" in str(problems[0])
    state = tmp_path / "state"
    state.mkdir()
    cmd = build_command(dom, CAPS, state)
    res = subprocess.run(cmd.argv, env=cmd.env, capture_output=True, text=True, timeout=20)
    assert res.returncode == 1 and "Unknown driver" in res.stderr
