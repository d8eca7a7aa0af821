"""Disks, cdroms: the block backend (-blockdev) and the guest's device (-device)."""

from __future__ import annotations

from qemuwrap.conf.devices.address import DriveAddress
from qemuwrap.conf.devices.disk import Disk, DiskBus, DiskDevice, DiskType
from qemuwrap.conf.xmlmodel import table
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext

#: The guest-visible device of a disk on each bus (a cdrom is ide-cd on IDE and SATA).
DISK_DEVICES = table(DiskBus, {DiskBus.IDE: "ide-hd", DiskBus.SATA: "ide-hd",
                               DiskBus.VIRTIO: "virtio-blk-pci"})


def disk_device(disk: Disk) -> str | None:
    if disk.device == DiskDevice.CDROM:
        return "ide-cd"
    return DISK_DEVICES.get(disk.bus)


def node_name(disk: Disk) -> str:
    return f"drive-{disk.target_dev}"


def build_disks(ctx: BuildContext) -> None:
    for disk in ctx.dom.devices.disks:
        build_disk(ctx, disk)


def build_disk(ctx: BuildContext, disk: Disk) -> None:
    drive = node_name(disk)
    if disk.source is not None:
        proto = "file" if disk.type == DiskType.FILE else \
            ("host_cdrom" if disk.device == DiskDevice.CDROM else "host_device")
        ctx.cmd.add("-blockdev", optstr(**{
            "driver": disk.driver_type or "raw", "node-name": drive,
            "read-only": "on" if disk.readonly else "off",
            "file.driver": proto, "file.filename": disk.source}), disk.node)
    props: dict[str, str] = {}
    addr = disk.address
    if disk.bus == DiskBus.VIRTIO:
        props = {"id": disk.alias_name or "", **ctx.pci_props(disk)}
    elif isinstance(addr, DriveAddress):
        if disk.bus == DiskBus.IDE:
            props = {"bus": f"ide.{addr.bus}", "unit": str(addr.unit)}
        elif ctx.q35 and addr.controller == 0:
            props = {"bus": f"ide.{addr.unit}"}  # ICH9's AHCI names its ports ide.0..5
        else:
            props = {"bus": f"sata{addr.controller}.{addr.unit}"}
        props["id"] = disk.alias_name or ""
    if disk.source is not None:
        props["drive"] = drive
    ctx.cmd.add("-device", optstr(disk_device(disk) or "", **props), disk.node)
