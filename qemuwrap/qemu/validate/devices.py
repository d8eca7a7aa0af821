"""Checks of the devices against the machine and the binary."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qemuwrap.conf.devices.chardev import ConsoleTargetType
from qemuwrap.conf.devices.controller import ControllerModel, ControllerType
from qemuwrap.conf.devices.memballoon import BalloonModel
from qemuwrap.qemu.build.controller import controller_device
from qemuwrap.qemu.build.net import NIC_DEVICES

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


CHECKS = [check_controllers, check_interfaces, check_chardevs, check_memballoon]
