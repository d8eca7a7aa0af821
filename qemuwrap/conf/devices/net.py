"""``<interface>``: the guest's network cards and what they are plugged into."""

from __future__ import annotations

import enum

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.xmlmodel import Element, ParseContext, Str, attr, child, internal


class InterfaceType(enum.StrEnum):
    USER = "user"


class NICModel(enum.StrEnum):
    VIRTIO = "virtio"
    E1000 = "e1000"
    RTL8139 = "rtl8139"


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
