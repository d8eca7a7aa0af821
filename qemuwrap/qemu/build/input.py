"""Input devices: PS/2 ones are built into pc and q35; USB ones are -devices."""

from __future__ import annotations

from qemuwrap.conf.devices.address import USBAddress
from qemuwrap.conf.devices.input import InputBus, InputType
from qemuwrap.conf.xmlmodel import table
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext

USB_INPUT_DEVICES = table(InputType, {InputType.MOUSE: "usb-mouse",
                                      InputType.KEYBOARD: "usb-kbd",
                                      InputType.TABLET: "usb-tablet"})


def build_inputs(ctx: BuildContext) -> None:
    for inp in ctx.dom.devices.inputs:
        if inp.bus == InputBus.PS2:
            continue  # the i8042 of pc and q35: built in, no option
        addr = inp.address
        port = addr.port if isinstance(addr, USBAddress) else None
        ctx.cmd.add("-device", optstr(USB_INPUT_DEVICES[inp.type], id=inp.alias_name,
                                      bus="usb.0", port=port), inp.node)
