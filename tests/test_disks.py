"""Disks without QEMU: libvirt's post-parse rules (bus by target name, drive addresses,
disk order), the node names, boot indexes and device properties the builder derives, and
the host checks.  tests/test_disks_qemu.py proves the same in a running QEMU."""

from __future__ import annotations

import os
import socket

import pytest

from qemuwrap.conf import guid
from qemuwrap.conf.devices.address import DriveAddress
from qemuwrap.conf.devices.controller import Controller, ControllerModel, ControllerType
from qemuwrap.conf.devices.disk import DiskBus
from qemuwrap.conf.domain import loads
from qemuwrap.errors import QemuwrapError, XMLError
from qemuwrap.qemu.argv import Command
from qemuwrap.qemu.build import BuildContext, Paths
from qemuwrap.qemu.build.disk import (
    NodeNames,
    build_disks,
    effective_boot_index,
    qemu_opts,
)
from qemuwrap.qemu.capabilities import Capabilities
from qemuwrap.qemu.command import build_command, complete_definition
from qemuwrap.qemu.validate import resolve_machine
from qemuwrap.qemu.validate.disk import check_host_storage
from qemuwrap.qemu.validate.host import drop_missing_optional

from conftest import DEFAULT_CAPS

CAPS = Capabilities.from_file(DEFAULT_CAPS)


def guest(devices: str, *, machine: str = "pc", os_extra: str = "") -> str:
    return (f"<domain type='qemu'><name>t</name><memory unit='MiB'>64</memory>"
            f"<os><type arch='x86_64' machine='{machine}'>hvm</type>{os_extra}</os>"
            f"<features><acpi/></features><devices>{devices}</devices></domain>")


def disk(target: str, *, attrs: str = "type='file' device='disk'", src: str | None = None,
         extra: str = "") -> str:
    name = target.split("'")[1]
    src = f"<source file='/images/{name}.img'/>" if src is None else src
    return f"<disk {attrs}>{src}<target {target}/>{extra}</disk>"


def read(devices: str, **kw):
    return loads(guest(devices, **kw), random=guid.counting_random)


def lines(cmd: Command, *options: str) -> list[str]:
    return [f"{a.option} {a.value}" for a in cmd.args if a.option in options]


# --------------------------------------------------------------------------- post-parse
@pytest.mark.parametrize(("target", "bus"), [
    ("dev='hda'", DiskBus.IDE), ("dev='sdb'", DiskBus.SCSI), ("dev='vdz'", DiskBus.VIRTIO),
    ("dev='xvda'", DiskBus.XEN), ("dev='ubda'", DiskBus.UML), ("dev='sda' bus='sata'",
                                                                DiskBus.SATA)])
def test_bus_follows_the_target_name(target, bus):
    """virDomainDiskDefParseXML: sd means SCSI (not SATA), xvd Xen, ubd UML."""
    assert read(disk(target)).devices.disks[0].bus == bus


def test_floppy_defaults_to_the_floppy_controller():
    dom = read(disk("dev='fdb'", attrs="type='file' device='floppy'"))
    assert dom.devices.disks[0].bus == DiskBus.FDC


@pytest.mark.parametrize(("target", "where"), [
    ("dev='hda'", (0, 0, 0, 0)), ("dev='hdd'", (0, 1, 0, 1)), ("dev='hde'", (1, 0, 0, 0)),
    ("dev='sda' bus='sata'", (0, 0, 0, 0)), ("dev='sdg' bus='sata'", (1, 0, 0, 0)),
    ("dev='sdg'", (0, 0, 0, 6)), ("dev='sdh'", (0, 0, 0, 8)),  # unit 7 is the HBA's
    ("dev='sdo'", (0, 0, 0, 15)), ("dev='sdp'", (1, 0, 0, 0)),
    ("dev='fdb'", (0, 0, 0, 1)),
])
def test_drive_address_from_the_target_name(target, where):
    """virDomainDiskDefAssignAddress, with the qemu driver's wide SCSI bus (15 ids)."""
    attrs = "type='file' device='floppy'" if "fd" in target else "type='file' device='disk'"
    addr = read(disk(target, attrs=attrs)).devices.disks[0].address
    assert isinstance(addr, DriveAddress)
    assert (addr.controller, addr.bus, addr.target, addr.unit) == where


def test_disks_are_kept_in_libvirts_order():
    """virDomainDiskInsertPreAlloced: within a bus by target index, a new bus last; the
    formatted definition and the command follow it."""
    dom = read(disk("dev='vdc'") + disk("dev='hdb'") + disk("dev='vda'") + disk("dev='hda'")
               + disk("dev='vdb'"))
    assert [d.target_dev for d in dom.devices.disks] == ["vda", "vdb", "vdc", "hda", "hdb"]


def test_qemu_driver_defaults_are_written_back():
    """qemuDomainDeviceDiskDefPostParse: driver 'qemu', format 'raw'; the address too."""
    dom = read(disk("dev='hdc'", attrs="type='file' device='cdrom'", src=""))
    d = dom.devices.disks[0]
    assert (d.driver.name, d.driver.type, d.readonly) == ("qemu", "raw", True)
    assert isinstance(d.address, DriveAddress) and (d.address.bus, d.address.unit) == (1, 0)


def test_mirror_is_read_and_dropped():
    dom = read(disk("dev='vda'", extra="<mirror type='file' file='/c.img' job='copy'>"
                                       "<format type='raw'/><source file='/c.img'/></mirror>"))
    assert dom.devices.disks[0].mirror is None


@pytest.mark.parametrize(("xml", "words"), [
    (disk("dev='vda'", attrs="type='file' device='cdrom'", src=""), "cannot be on bus"),
    (disk("dev='sda'", attrs="type='file' device='lun'"), "only valid for a block"),
    (disk("dev='hda'", attrs="type='file' device='floppy'"), "must be fdX"),
    (disk("dev='vda'", attrs="type='network' device='disk'",
          src="<source protocol='rbd' name='noslash'><host name='m'/></source>"),
     "cannot split name"),
    (disk("dev='vda'", attrs="type='network' device='disk'",
          src="<source protocol='iscsi' name='iqn.x/lun'><host name='m'/></source>"),
     "LUN of iSCSI name"),
    (disk("dev='vda'", extra="<iotune><total_bytes_sec>1</total_bytes_sec>"
                             "<read_bytes_sec>1</read_bytes_sec></iotune>"),
     "cannot be set at the same time"),
    (disk("dev='hda'", extra="<address type='drive' target='1'/>"), "must be 0 for a ide"),
])
def test_model_refusals(xml, words):
    with pytest.raises(XMLError, match=words) as exc:
        read(xml)
    assert "\n" not in str(exc.value)


# --------------------------------------------------------------------------- the builder
def built(devices: str, **kw) -> Command:
    return build_command(read(devices, **kw), CAPS, "/run/qemuwrap/t")


def test_node_names_count_from_the_last_disk():
    """libvirt prepares disks in reverse: the first disk's top image has the highest
    number, each chain counts top down, an empty cdrom counts too."""
    dom = read(disk("dev='vda'", extra="<driver name='qemu' type='qcow2'/><backingStore "
                                       "type='file'><format type='raw'/><source "
                                       "file='/b.img'/></backingStore>")
               + disk("dev='hdc'", attrs="type='file' device='cdrom'", src="")
               + disk("dev='vdb'"))
    disks = dom.devices.disks
    names = NodeNames(disks)
    assert [d.target_dev for d in disks] == ["vda", "vdb", "hdc"]  # a new bus last
    assert [names.of(d) for d in disks] == [[3, 4], [2], [1]]


def test_backing_chain_links_and_terminator():
    cmd = built(disk("dev='vda'", extra="<driver name='qemu' type='qcow2'/><backingStore "
                                        "type='file'><format type='qcow2'/><source "
                                        "file='/b.qcow2'/><backingStore/></backingStore>")
                + disk("dev='vdb'", extra="<driver name='qemu' type='qcow2'/>"))
    blockdevs = lines(cmd, "-blockdev")
    assert "-blockdev node-name=libvirt-2-format,read-only=off,driver=qcow2,file=" \
           "libvirt-2-storage,backing=libvirt-3-format" in blockdevs
    # <backingStore/>: no probing; JSON, since QEMU's key=value syntax has no null
    assert '-blockdev {"node-name":"libvirt-3-format","read-only":true,"driver":"qcow2",' \
           '"file":"libvirt-3-storage","backing":null}' in blockdevs
    assert "-blockdev node-name=libvirt-1-format,read-only=off,driver=qcow2,file=" \
           "libvirt-1-storage" in blockdevs  # no <backingStore>: QEMU follows the header
    # bottom image first, as libvirt orders them
    assert blockdevs.index(next(b for b in blockdevs if "/b.qcow2" in b)) == 0


@pytest.mark.parametrize(("os_boot", "expect"), [
    ("", {"vda": 1}),  # no <boot> anywhere: 'hd'
    ("<boot dev='cdrom'/><boot dev='hd'/>", {"hdc": 1, "vda": 2}),
    ("<boot dev='network'/><boot dev='fd'/>", {"fda": 2}),
])
def test_boot_indexes_from_os_boot(os_boot, expect):
    """qemuProcessPrepareDeviceBootorder: the first disk, cdrom and floppy take the
    position of hd, cdrom and fd in <os>."""
    dom = read(disk("dev='vda'") + disk("dev='vdb'")
               + disk("dev='hdc'", attrs="type='file' device='cdrom'")
               + disk("dev='fda'", attrs="type='file' device='floppy'"), os_extra=os_boot)
    machine, _ = resolve_machine(dom, CAPS)
    ctx = BuildContext(dom, CAPS, machine, Paths("/s"), Command(binary="q"))
    got = {d.target_dev: n for d in dom.devices.disks
           if (n := effective_boot_index(ctx).get(id(d)))}
    assert got == expect


def test_floppy_boot_index_goes_to_the_controller():
    cmd = built(disk("dev='fdb'", attrs="type='file' device='floppy'"),
                os_extra="<boot dev='fd'/>")
    assert "-global isa-fdc.bootindexB=1" in lines(cmd, "-global")
    assert all("bootindex" not in d for d in lines(cmd, "-device") if "floppy" in d)
    q35 = built(disk("dev='fda'", attrs="type='file' device='floppy'"), machine="q35",
                os_extra="<boot dev='fd'/>")
    assert "-device isa-fdc,bootindexA=1" in lines(q35, "-device")


def test_per_device_boot_order_wins():
    cmd = built(disk("dev='vda'") + disk("dev='vdb'", extra="<boot order='1'/>"))
    devices = lines(cmd, "-device")
    assert any("id=virtio-disk1,bootindex=1" in d for d in devices)
    assert not any("id=virtio-disk0,bootindex" in d for d in devices)


def scsi_ctx(model: ControllerModel | None, devices: str):
    dom = read(devices)
    dom.devices.controllers.append(Controller(type=ControllerType.SCSI, index=0, model=model))
    machine = complete_definition(dom, CAPS)
    ctx = BuildContext(dom, CAPS, machine, Paths("/s"), Command(binary="q"))
    build_disks(ctx)
    return dom, lines(ctx.cmd, "-device")


@pytest.mark.parametrize(("model", "device"), [
    (ControllerModel.VIRTIO_SCSI,
     "scsi-hd,bus=scsi0.0,channel=0,scsi-id=3,lun=2,device_id=drive-ua-disk-a"),
    (ControllerModel.LSILOGIC, "scsi-hd,bus=scsi0.0,scsi-id=2,device_id=drive-ua-disk-a"),
    (None, "scsi-hd,bus=scsi0.0,scsi-id=2,device_id=drive-ua-disk-a"),  # x86's default: lsi
])
def test_scsi_address_by_controller_model(model, device):
    """qemuBuildDeviceAddressDriveProps: virtio-scsi addresses channel/target/lun, LSI
    only an id (the unit); the VPD device id is libvirt's drive name."""
    target = 3 if model == ControllerModel.VIRTIO_SCSI else 0
    _dom, devices = scsi_ctx(model, disk(
        "dev='sda'", extra=f"<alias name='ua-disk-a'/><address type='drive' controller='0' "
                           f"bus='0' target='{target}' unit='2'/>"))
    assert devices[0].startswith(f"-device {device},drive=libvirt-1-format,id=ua-disk-a")


def test_scsi_cdrom_lun_serial():
    _dom, devices = scsi_ctx(ControllerModel.VIRTIO_SCSI, disk(
        "dev='sda'", attrs="type='file' device='cdrom'", extra="<serial>S1</serial>"
        "<vendor>ACME</vendor><product>Widget</product>") + disk(
        "dev='sdb'", attrs="type='block' device='lun'", src="<source dev='/dev/sdx'/>"))
    assert "scsi-cd,bus=scsi0.0,channel=0,scsi-id=0,lun=0,device_id=S1," in devices[0]
    assert "vendor=ACME,product=Widget" in devices[0] and "serial=S1" in devices[0]
    assert devices[1].startswith("-device scsi-block,bus=scsi0.0,channel=0,scsi-id=0,lun=1,"
                                 "drive=libvirt-1-format")


def test_values_are_escaped_and_keys_keep_their_underscores():
    """QEMU spells block properties with '_' (optstr would write '-'); every value is
    still escaped (a ',' doubled)."""
    assert qemu_opts("ide-hd", {"logical_block_size": 512, "serial": "a,b", "rw": False}) \
        == "ide-hd,logical_block_size=512,serial=a,,b,rw=off"
    cmd = built(disk("dev='vda'", src="<source file='/img/a,id=x.img'/>"))
    assert any("filename=/img/a,,id=x.img," in b for b in lines(cmd, "-blockdev"))


def test_cache_modes_and_zero_detection():
    cmd = built(disk("dev='vda'", extra="<driver name='qemu' cache='directsync' "
                                        "detect_zeroes='unmap'/>"))
    fmt = next(b for b in lines(cmd, "-blockdev") if "format" in b)
    assert "detect-zeroes=on" in fmt  # 'unmap' needs discard='unmap'
    assert "cache.direct=on,cache.no-flush=off" in fmt
    assert any("write-cache=off" in d for d in lines(cmd, "-device"))


def test_iotune_group_is_shared():
    tune = ("<iotune><total_iops_sec>100</total_iops_sec><group_name>g</group_name>"
            "</iotune>")
    cmd = built(disk("dev='vda'", extra=tune) + disk("dev='vdb'", extra=tune))
    objects = [o for o in lines(cmd, "-object") if "throttle-group" in o]
    assert objects == ["-object throttle-group,id=throttle-group0,x-iops-total=100"]
    assert sum("throttle-group=throttle-group0" in b for b in lines(cmd, "-blockdev")) == 2


def test_every_refusal_at_once():
    with pytest.raises(QemuwrapError) as exc:
        built(disk("dev='vda'", extra="<driver name='qemu' io='native'/>")
              + disk("dev='hda'", extra="<wwn>5000c50015ea71ad</wwn><vendor>X</vendor>")
              + disk("dev='vdb'", attrs="type='volume' device='disk'",
                     src="<source pool='p' volume='v'/>"))
    message = str(exc.value).split("\n")
    assert len(message) == 3, message
    assert "io='native'" in message[0] and "<vendor>" in message[1] and "pools" in message[2]


# --------------------------------------------------------------------------- the host
def test_host_check_names_what_is_missing(tmp_path):
    image = tmp_path / "a.img"
    image.write_bytes(b"\0" * 512)
    sock = tmp_path / "vu.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock))
    try:
        dom = read(disk("dev='vda'", src=f"<source file='{image}'/>")
                   + disk("dev='vdb'", src=f"<source file='{tmp_path}/missing.img'/>")
                   + disk("dev='vdc'", attrs="type='block' device='disk'",
                          src=f"<source dev='{image}'/>")
                   + disk("dev='vdd'", attrs="type='network' device='disk'",
                          src="<source protocol='iscsi' name='iqn.x'><host name='h'/>"
                              "</source>")
                   + disk("dev='vde'", attrs="type='nvme' device='disk'",
                          src="<source type='pci' managed='no' namespace='1'><address "
                              "domain='0x0000' bus='0xfe' slot='0x1f' function='0x7'/>"
                              "</source>")
                   + disk("dev='vdf'", attrs="type='vhostuser' device='disk'",
                          src=f"<source type='unix' path='{sock}'/>")
                   + disk("dev='vdg'", attrs="type='vhostuser' device='disk'",
                          src=f"<source type='unix' path='{tmp_path}/none.sock'/>"))
        problems = [str(p) for p in check_host_storage(dom, module_dirs=(str(tmp_path),))]
    finally:
        listener.close()
    assert len(problems) == 5, problems
    assert "missing.img cannot be used: No such file or directory" in problems[0]
    assert "is not a block device" in problems[1]
    assert "block-iscsi module (Debian package qemu-block-extra)" in problems[2]
    assert "host PCI device 0000:fe:1f.7 does not exist" in problems[3]
    assert "none.sock does not exist" in problems[4]
    (tmp_path / "block-iscsi.so").write_bytes(b"")
    assert len(check_host_storage(dom, module_dirs=(str(tmp_path),))) == 4


def test_startup_policy_drops_missing_images(tmp_path):
    present = tmp_path / "here.iso"
    present.write_bytes(b"")
    dom = read(disk("dev='hdc'", attrs="type='file' device='cdrom'",
                    src=f"<source file='{tmp_path}/gone.iso' startupPolicy='optional'/>")
               + disk("dev='hdd'", attrs="type='file' device='cdrom'",
                      src=f"<source file='{present}' startupPolicy='optional'/>")
               + disk("dev='vda'", src=f"<source file='{tmp_path}/gone.img' "
                                       "startupPolicy='optional'/>")
               + disk("dev='fda'", attrs="type='file' device='floppy'",
                      src=f"<source file='{tmp_path}/gone.flp' startupPolicy='requisite'/>"))
    assert len(drop_missing_optional(dom, cold_boot=True)) == 2
    assert [d.target_dev for d in dom.devices.disks] == ["hdc", "hdd", "fda"]
    assert dom.devices.disks[0].source is None and dom.devices.disks[1].source == str(present)
    assert check_host_storage(dom)  # the requisite floppy fails a cold start
    assert len(drop_missing_optional(dom, cold_boot=False)) == 1  # and is dropped on restore
    assert not check_host_storage(dom)


def test_stand_in_makes_any_disk_a_local_file(tmp_path):
    dom = read(disk("dev='vda'", attrs="type='network' device='disk'",
                    src="<source protocol='nbd'><host name='h'/></source>",
                    extra="<driver name='qemu' type='qcow2'/>"))
    d = dom.devices.disks[0]
    d.stand_in(os.fspath(tmp_path / "x.raw"), "raw")
    assert (d.type, d.source, d.driver_type, d.backing) == ("file", str(tmp_path / "x.raw"),
                                                            "raw", None)
