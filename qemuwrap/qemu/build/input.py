"""Input devices (libvirt's qemuBuildInputCommandLine): PS/2 ones are the i8042 built
into pc and q35 (no option); USB and virtio ones are ``-device``s; an ``evdev`` input is
QEMU's ``input-linux`` object grabbing a host device."""

from __future__ import annotations

from qemuwrap.conf.devices.input import Input, InputBus, InputType
from qemuwrap.conf.xmlmodel import table
from qemuwrap.qemu.build import BuildContext
from qemuwrap.qemu.build.props import exact_opts, on_off, virtio_props
from qemuwrap.qemu.build.usb import usb_props

USB_INPUT_DEVICES = table(InputType, {InputType.MOUSE: "usb-mouse",
                                      InputType.KEYBOARD: "usb-kbd",
                                      InputType.TABLET: "usb-tablet"},
                          not_mapped={InputType.PASSTHROUGH: "virtio only (refused on USB)",
                                      InputType.EVDEV: "an -object, on no bus"})
VIRTIO_INPUT_DEVICES = table(InputType, {InputType.MOUSE: "virtio-mouse-pci",
                                         InputType.KEYBOARD: "virtio-keyboard-pci",
                                         InputType.TABLET: "virtio-tablet-pci",
                                         InputType.PASSTHROUGH: "virtio-input-host-pci"},
                             not_mapped={InputType.EVDEV: "an -object, on no bus"})


def input_device(inp: Input) -> str | None:
    """The ``-device`` of an input, None for the built-in PS/2 ones and evdev."""
    if inp.type == InputType.EVDEV:
        return None
    if inp.bus == InputBus.USB:
        return USB_INPUT_DEVICES.get(inp.type)
    if inp.bus == InputBus.VIRTIO:
        return VIRTIO_INPUT_DEVICES.get(inp.type)
    return None



def build_inputs(ctx: BuildContext) -> None:
    for inp in ctx.dom.devices.inputs:
        if inp.type == InputType.EVDEV:
            src = inp.source
            grab_toggle = src.grab_toggle if src is not None else None
            ctx.cmd.add("-object", exact_opts("input-linux", [
                ("id", inp.alias_name), ("evdev", inp.evdev),
                ("repeat", on_off(src.repeat if src is not None else None)),
                ("grab_all", "on" if src is not None and src.grab else None),
                ("grab-toggle", grab_toggle)]), inp.node)
            continue
        device = input_device(inp)
        if device is None:
            continue  # the i8042's PS/2 mouse and keyboard
        if inp.bus == InputBus.USB:
            props = [("id", inp.alias_name), *usb_props(ctx, inp.address).items()]
        else:
            props = [*virtio_props(inp.driver).items(), ("id", inp.alias_name),
                     ("evdev", inp.evdev if inp.type == InputType.PASSTHROUGH else None),
                     *ctx.pci_props(inp).items()]
        ctx.cmd.add("-device", exact_opts(device, props), inp.node)
