"""Network cards: the host side (-netdev) and the guest's NIC (-device)."""

from __future__ import annotations

from qemuwrap.conf.devices.net import NICModel
from qemuwrap.conf.xmlmodel import table
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext

NIC_DEVICES = table(NICModel, {NICModel.VIRTIO: "virtio-net-pci", NICModel.E1000: "e1000",
                               NICModel.RTL8139: "rtl8139"})


def build_interfaces(ctx: BuildContext) -> None:
    for n, nic in enumerate(ctx.dom.devices.interfaces):
        netdev = f"host{nic.alias_name}" if nic.alias_name else f"hostnet{n}"
        ctx.cmd.add("-netdev", optstr("user", id=netdev), nic.node)
        ctx.cmd.add("-device", optstr(NIC_DEVICES[nic.model], netdev=netdev,
                                      id=nic.alias_name, mac=nic.mac, **ctx.pci_props(nic)),
                    nic.node)
