"""``<memballoon>``: the virtio balloon (libvirt adds one unless told ``model='none'``)."""

from __future__ import annotations

import enum

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.xmlmodel import attr


class BalloonModel(enum.StrEnum):
    VIRTIO = "virtio"
    NONE = "none"


class MemBalloon(PCIDevice):
    TAG = "memballoon"
    model: BalloonModel = attr(BalloonModel, required=True)

    def address_types(self) -> tuple[str, ...]:
        return ("pci",)
