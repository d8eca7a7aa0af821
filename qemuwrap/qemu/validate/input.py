"""Checks of input devices (libvirt's qemuValidateDomainDeviceDefInput); the host device
a passthrough or evdev input grabs is a host check (``validate/uihost.py``)."""

from __future__ import annotations

from qemuwrap.conf.devices.input import InputBus, InputModel, InputType
from qemuwrap.hints import TYPE_CHECKING
from qemuwrap.qemu.build.input import input_device
from qemuwrap.qemu.validate import has_usb

if TYPE_CHECKING:
    from qemuwrap.qemu.validate import Validation


def check_inputs(v: Validation) -> None:
    for inp in v.dom.devices.inputs:
        if inp.type == InputType.EVDEV:  # the host device: validate/uihost.py
            continue
        if inp.bus in (InputBus.XEN, InputBus.PARALLELS, InputBus.NONE):
            v.refuse(inp, f"unsupported input bus {inp.bus}")
            continue
        if inp.type == InputType.PASSTHROUGH and inp.bus != InputBus.VIRTIO:
            v.refuse(inp, "a passthrough input needs bus='virtio'")
            continue
        if inp.model is not None and inp.bus != InputBus.VIRTIO:
            v.refuse(inp, f"input model '{inp.model}' is only for bus='virtio'")
            continue
        if inp.model in (InputModel.VIRTIO_TRANSITIONAL, InputModel.VIRTIO_NON_TRANSITIONAL):
            v.refuse(inp, "virtio (non-)transitional models are not supported for input "
                          f"type={inp.type}")
            continue
        if inp.bus == InputBus.USB and not has_usb(v):
            v.refuse(inp, "a USB device needs <controller type='usb'/> (not model 'none')")
            continue
        device = input_device(inp)
        if device is not None and not v.require_device(device, inp):
            continue
        if inp.type == InputType.PASSTHROUGH:
            if inp.evdev is None:
                v.refuse(inp, "a passthrough input needs <source evdev='/dev/input/...'/>")


CHECKS = [check_inputs]
