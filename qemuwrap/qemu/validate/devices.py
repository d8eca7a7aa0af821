"""Checks of the devices against the machine and the binary."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qemuwrap.conf.devices.chardev import ConsoleTargetType
from qemuwrap.conf.devices.controller import ControllerType
from qemuwrap.conf.devices.disk import DiskBus, DiskDevice
from qemuwrap.conf.devices.memballoon import BalloonModel
from qemuwrap.qemu.build.disk import disk_device
from qemuwrap.qemu.build.net import NIC_DEVICES

if TYPE_CHECKING:
    from qemuwrap.qemu.validate import Validation


def check_disks(v: Validation) -> None:
    sata = {c.index for c in v.dom.devices.controllers if c.type == ControllerType.SATA}
    for disk in v.dom.devices.disks:
        if disk.readonly and disk.device == DiskDevice.DISK and disk.bus != DiskBus.VIRTIO:
            # QEMU's ide-hd refuses a read-only drive; libvirt says the same up front.
            v.refuse(disk, f"readonly {disk.bus} disks are not supported")
            continue
        if disk.bus == DiskBus.IDE:
            if v.q35:
                v.refuse(disk, f"machine '{v.machine.name}' has no IDE bus; use bus='sata'")
                continue
            if disk.index > 3:
                v.refuse(disk, f"IDE disk '{disk.target_dev}' is beyond the 4 IDE positions "
                               "(hda..hdd)")
                continue
        if disk.bus == DiskBus.SATA:
            controller = disk.index // 6
            addr = disk.address
            if addr is not None and getattr(addr, "controller", None) is not None:
                controller = addr.controller  # type: ignore[attr-defined]
                if addr.unit > 5:  # type: ignore[attr-defined]
                    v.refuse(disk, f"SATA unit {addr.unit} is beyond the 6 ports of a "  # type: ignore[attr-defined]
                                   "controller")
                    continue
            if not (v.q35 and controller == 0) and controller not in sata:
                v.refuse(disk, f"disk '{disk.target_dev}' needs <controller type='sata' "
                               f"index='{controller}'/>")
                continue
        device = disk_device(disk)
        if device is not None:
            v.require_device(device, disk)


def check_interfaces(v: Validation) -> None:
    for nic in v.dom.devices.interfaces:
        device = NIC_DEVICES.get(nic.model)
        if device is not None:
            v.require_device(device, nic)


def check_chardevs(v: Validation) -> None:
    devs = v.dom.devices
    serials = {s.port: s for s in devs.serials}
    seen: set[int] = set()
    for console in devs.consoles:
        if console.target_type == ConsoleTargetType.SERIAL:
            serial = serials.get(console.port)
            if serial is not None and (serial.type, serial.path) != (console.type,
                                                                     console.path):
                v.refuse(console, f"console and serial port {console.port} are the same "
                                  "device but differ in type or path")
        else:
            if console.port in seen:
                v.refuse(console, f"virtio console port {console.port} is defined twice")
            seen.add(console.port)


def check_memballoon(v: Validation) -> None:
    balloon = v.dom.devices.memballoon
    if balloon.model == BalloonModel.VIRTIO:
        v.require_device("virtio-balloon-pci", balloon)


CHECKS = [check_disks, check_interfaces, check_chardevs, check_memballoon]
