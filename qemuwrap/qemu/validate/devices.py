"""Checks of the devices against the machine and the binary."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qemuwrap.conf.devices.controller import ControllerModel, ControllerType
from qemuwrap.conf.devices.disk import DiskBus, DiskDevice
from qemuwrap.qemu.build.controller import controller_device
from qemuwrap.qemu.build.disk import disk_device

if TYPE_CHECKING:
    from qemuwrap.qemu.validate import Validation


def check_controllers(v: Validation) -> None:
    for ctrl in v.dom.devices.controllers:
        if ctrl.type == ControllerType.PCI:
            expected = ControllerModel.PCIE_ROOT if v.q35 else ControllerModel.PCI_ROOT
            if ctrl.index != 0 or ctrl.model != expected:
                v.refuse(ctrl, f"machine '{v.machine.name}' has only a '{expected}' PCI "
                               "controller with index 0")
            continue
        if ctrl.type == ControllerType.IDE:
            if v.q35 or ctrl.index != 0:
                what = "no IDE controller" if v.q35 else "one IDE controller (index 0)"
                v.refuse(ctrl, f"machine '{v.machine.name}' has {what}")
            continue
        if ctrl.type == ControllerType.USB and ctrl.index != 0:
            v.refuse(ctrl, "only one USB controller (index 0) is supported")
            continue
        device = controller_device(ctrl, v.q35)
        if device is not None:
            v.require_device(device, ctrl)


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


CHECKS = [check_controllers, check_disks]
