"""USB extras: hubs and redirected USB devices (libvirt's qemuBuildHubCommandLine and
qemuBuildRedirdevCommandLine), and the ``bus=,port=`` of any device on a USB port."""

from __future__ import annotations

from qemuwrap.conf.devices.address import Address, USBAddress
from qemuwrap.conf.devices.chardev import CharType
from qemuwrap.conf.devices.controller import ControllerType
from qemuwrap.conf.devices.redirdev import DBUS_USBREDIR, SPICEVMC_USBREDIR, Redirdev
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext
from qemuwrap.qemu.build.chardev import chardev


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


def redirdev_chardev(ctx: BuildContext, chr_id: str, dev: Redirdev) -> None:
    """The host end: a SPICE or D-Bus channel named for usbredir, or a socket."""
    if dev.type == CharType.SPICEVMC:
        ctx.cmd.add("-chardev", optstr("spicevmc", id=chr_id, name=SPICEVMC_USBREDIR),
                    dev.node)
    elif dev.type == CharType.DBUS:
        name = getattr(dev.source, "channel", None) or DBUS_USBREDIR
        ctx.cmd.add("-chardev", optstr("dbus", id=chr_id, name=name), dev.node)
    else:
        chardev(ctx, chr_id, dev, dev.node)


def build_redirdevs(ctx: BuildContext) -> None:
    devs = ctx.dom.devices
    usb_filter = devs.redirfilter.filter_string() if devs.redirfilter is not None else None
    for dev in devs.redirdevs:
        chr_id = f"char{dev.alias_name}"
        redirdev_chardev(ctx, chr_id, dev)
        bootindex = dev.boot.order if dev.boot is not None else None
        ctx.cmd.add("-device", optstr("usb-redir", chardev=chr_id, id=dev.alias_name,
                                      filter=usb_filter, bootindex=bootindex,
                                      **usb_props(ctx, dev.address)), dev.node)
