"""Checks of the devices against the machine and the binary."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qemuwrap.conf.devices.chardev import ConsoleTargetType
from qemuwrap.conf.devices.memballoon import BalloonModel
from qemuwrap.qemu.build.net import NIC_DEVICES

if TYPE_CHECKING:
    from qemuwrap.qemu.validate import Validation




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


CHECKS = [check_interfaces, check_chardevs, check_memballoon]
