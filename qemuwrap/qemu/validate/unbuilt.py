"""Refusals for what the model reads but no builder builds yet: a guest never starts
without a device its XML asked for.  Each area removes its entries as it builds them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qemuwrap.conf.devices.chardev import CharType
from qemuwrap.conf.devices.net import InterfaceType, NICModel

if TYPE_CHECKING:
    from qemuwrap.qemu.validate import Validation

#: Device lists no builder handles yet.
UNBUILT_LISTS = ("parallels", "channels", "hostdevs", "watchdogs", "rngs", "panics",
                 "shmems")
UNBUILT_ONE = ("iommu", "vsock")

BUILT: dict[str, set] = {
    "interface type": {InterfaceType.USER},
    "interface model": {NICModel.VIRTIO, NICModel.E1000, NICModel.RTL8139},
    "character device type": {CharType.PTY, CharType.FILE, CharType.UNIX},
}


def _refuse(v: Validation, where, what: str, value) -> None:
    if value is not None and value not in BUILT[what]:
        v.refuse(where, f"{what} '{value}' is not supported by qemuwrap yet")


def check_unbuilt(v: Validation) -> None:
    devs = v.dom.devices
    for name in UNBUILT_LISTS:
        for dev in getattr(devs, name):
            v.refuse(dev, f"<{dev.TAG}> is not supported by qemuwrap yet")
    for name in UNBUILT_ONE:
        dev = getattr(devs, name)
        if dev is not None:
            v.refuse(dev, f"<{dev.TAG}> is not supported by qemuwrap yet")
    for n in devs.interfaces:
        _refuse(v, n, "interface type", n.type)
        _refuse(v, n, "interface model", n.model)
    for ch in (*devs.serials, *devs.consoles):
        _refuse(v, ch, "character device type", ch.type)


CHECKS = [check_unbuilt]
