"""Redirected USB devices (libvirt's qemuBuildRedirdevCommandLine): a usb-redir device
on a USB port, fed by a SPICE or D-Bus channel or a character device."""

from __future__ import annotations

from qemuwrap.conf.devices.chardev import CharType
from qemuwrap.conf.devices.redirdev import DBUS_USBREDIR, SPICEVMC_USBREDIR, Redirdev
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext
from qemuwrap.qemu.build.chardev import chardev
from qemuwrap.qemu.build.usb import usb_props


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
