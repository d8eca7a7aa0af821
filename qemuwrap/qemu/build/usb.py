"""USB hubs (libvirt's qemuBuildHubCommandLine) and the ``bus=,port=`` of any device on
a USB port; redirected USB devices are ``build/redirdev.py``."""

from __future__ import annotations

from qemuwrap.conf.devices.address import Address, USBAddress
from qemuwrap.conf.devices.controller import ControllerType
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext


def usb_bus_name(ctx: BuildContext, bus: int) -> str:
    """``ALIAS.0`` of the USB controller with index ``bus`` (``usb.0`` for the first)."""
    for ctrl in ctx.dom.devices.controllers:
        if ctrl.type == ControllerType.USB and ctrl.index == bus and ctrl.alias_name:
            return f"{ctrl.alias_name}.0"
    return "usb.0" if bus == 0 else f"usb{bus}.0"


def usb_props(ctx: BuildContext, address: Address | None) -> dict[str, str]:
    """``bus=...,port=...`` for a USB address (qemuBuildDeviceAddressProps); a device
    without one goes on the first controller's bus, at the first free port."""
    if not isinstance(address, USBAddress):
        return {"bus": usb_bus_name(ctx, 0)}
    props = {"bus": usb_bus_name(ctx, address.bus)}
    if address.port is not None:
        props["port"] = address.port
    return props


def build_hubs(ctx: BuildContext) -> None:
    for hub in ctx.dom.devices.hubs:
        ctx.cmd.add("-device", optstr("usb-hub", id=hub.alias_name,
                                      **usb_props(ctx, hub.address)), hub.node)
