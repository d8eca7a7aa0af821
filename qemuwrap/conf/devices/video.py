"""``<video>``: the guest's display adapter."""

from __future__ import annotations

import enum

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.xmlmodel import YES_NO, Element, Int, attr, child


class VideoModel(enum.StrEnum):
    VGA = "vga"
    CIRRUS = "cirrus"
    VMVGA = "vmvga"
    XEN = "xen"
    VBOX = "vbox"
    QXL = "qxl"
    PARALLELS = "parallels"
    VIRTIO = "virtio"
    GOP = "gop"
    NONE = "none"
    BOCHS = "bochs"
    RAMFB = "ramfb"


class VideoModelEl(Element):
    TAG = "model"
    type: VideoModel = attr(VideoModel, required=True)
    vram: int | None = attr(Int(0, 2**32 - 1))
    heads: int | None = attr(Int(1, 16))
    primary: bool | None = attr(YES_NO)


class Video(PCIDevice):
    TAG = "video"
    model: VideoModelEl = child(VideoModelEl, required=True)

    def address_types(self) -> tuple[str, ...]:
        return ("pci",)
