"""USB hubs: the ``<hub>``s of the definition and the ones libvirt adds when the USB
devices outnumber the ports (qemuBuildHubCommandLine)."""

from __future__ import annotations

from qemuwrap.conf.devices.hub import HubType
from qemuwrap.conf.xmlmodel import table
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext

HUB_DEVICES = table(HubType, {HubType.USB: "usb-hub"})


def build_hubs(ctx: BuildContext) -> None:
    for hub in ctx.dom.devices.hubs:
        ctx.cmd.add("-device", optstr(HUB_DEVICES[hub.type], id=hub.alias_name,
                                      **ctx.usb_props(hub)),
                    hub.node, why="libvirt adds a hub when USB devices outnumber the ports")
