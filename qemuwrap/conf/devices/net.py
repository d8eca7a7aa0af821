"""``<interface>``: the guest's network cards and what they are plugged into."""

from __future__ import annotations

import enum

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.xmlmodel import Element, ParseContext, Str, attr, child, internal


class InterfaceType(enum.StrEnum):
    USER = "user"
    ETHERNET = "ethernet"
    VHOSTUSER = "vhostuser"
    SERVER = "server"
    CLIENT = "client"
    MCAST = "mcast"
    NETWORK = "network"
    BRIDGE = "bridge"
    INTERNAL = "internal"
    DIRECT = "direct"
    HOSTDEV = "hostdev"
    UDP = "udp"
    VDPA = "vdpa"
    NULL = "null"
    VDS = "vds"


class NICModel(enum.StrEnum):
    VIRTIO = "virtio"
    VIRTIO_TRANSITIONAL = "virtio-transitional"
    VIRTIO_NON_TRANSITIONAL = "virtio-non-transitional"
    E1000 = "e1000"
    E1000E = "e1000e"
    IGB = "igb"
    RTL8139 = "rtl8139"
    VMXNET3 = "vmxnet3"
    NE2K_PCI = "ne2k_pci"
    PCNET = "pcnet"
    I82551 = "i82551"
    I82557B = "i82557b"
    I82559ER = "i82559er"
    USB_NET = "usb-net"
    SPAPR_VLAN = "spapr-vlan"
    LAN9118 = "lan9118"
    SMC91C111 = "smc91c111"


class MAC(Element):
    TAG = "mac"
    address: str = attr(Str(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}", what="MAC address"),
                        required=True)

    def check(self, ctx: ParseContext) -> None:
        self.address = self.address.lower()
        if int(self.address[:2], 16) & 1:
            raise self.error(f"MAC address '{self.address}' is a multicast address")


class Model(Element):
    TAG = "model"
    type: NICModel = attr(NICModel, required=True)


class Interface(PCIDevice):
    TAG = "interface"
    type: InterfaceType = attr(InterfaceType, required=True)
    mac_el: MAC | None = child(MAC)
    model_el: Model | None = child(Model)
    #: no <mac> in the XML: made up at this load (libvirt's 52:54:00 and 3 random bytes)
    mac_generated: bool = internal(False)

    def check(self, ctx: ParseContext) -> None:
        if self.mac_el is None:
            self.mac_el = MAC(address="52:54:00:" + ":".join(f"{b:02x}"
                                                            for b in ctx.random(3)))
            self.mac_generated = True
        if self.model_el is None:
            self.model_el = Model(type=NICModel.VIRTIO)

    @property
    def mac(self) -> str:
        assert self.mac_el is not None
        return self.mac_el.address

    @mac.setter
    def mac(self, value: str) -> None:
        self.mac_el = MAC(address=value)

    @property
    def model(self) -> NICModel:
        return self.model_el.type if self.model_el is not None else NICModel.VIRTIO

    def address_types(self) -> tuple[str, ...]:
        return ("pci",)
