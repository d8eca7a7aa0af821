"""``<input>``: mice, keyboards and tablets."""

from __future__ import annotations

import enum

from qemuwrap.conf.devices.address import Device
from qemuwrap.conf.xmlmodel import ParseContext, attr


class InputType(enum.StrEnum):
    MOUSE = "mouse"
    TABLET = "tablet"
    KEYBOARD = "keyboard"
    PASSTHROUGH = "passthrough"
    EVDEV = "evdev"


class InputBus(enum.StrEnum):
    PS2 = "ps2"
    USB = "usb"
    VIRTIO = "virtio"
    XEN = "xen"
    NONE = "none"


class Input(Device):
    TAG = "input"
    type: InputType = attr(InputType, required=True)
    bus: InputBus | None = attr(InputBus)

    def address_types(self) -> tuple[str, ...]:
        return ("usb",) if self.bus == InputBus.USB else ()

    def check(self, ctx: ParseContext) -> None:
        if self.bus is None:
            self.bus = InputBus.USB if self.type == InputType.TABLET else InputBus.PS2
        if self.type == InputType.TABLET and self.bus != InputBus.USB:
            raise self.error("a tablet can only be on bus 'usb'")
