"""``<vsock>``: a virtio socket between the guest and the host (vhost-vsock)."""

from __future__ import annotations

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.devices.virtio import VirtioDriver
from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import YES_NO, Element, Int, ParseContext, attr, child


class VsockModel(ValueSet):
    VIRTIO = "virtio"
    VIRTIO_TRANSITIONAL = "virtio-transitional"
    VIRTIO_NON_TRANSITIONAL = "virtio-non-transitional"


class VsockCID(Element):
    """``<cid auto address>``: the guest's context id (3 and up; auto: a free one)."""

    TAG = "cid"
    auto: bool | None = attr(YES_NO)
    address: int | None = attr(Int(0, 2**32 - 1))

    def check(self, ctx: ParseContext) -> None:
        if self.address is not None and 0 < self.address <= 2:
            raise self.error("guest CIDs must be >= 3")


class VsockDriver(VirtioDriver):
    TAG = "driver"


class Vsock(PCIDevice):
    TAG = "vsock"
    model: VsockModel | None = attr(VsockModel)
    cid: VsockCID | None = child(VsockCID)
    driver: VsockDriver | None = child(VsockDriver)

    def check(self, ctx: ParseContext) -> None:
        if self.model is None:
            self.model = VsockModel.VIRTIO  # libvirt's default for QEMU

    @property
    def guest_cid(self) -> int | None:
        return self.cid.address if self.cid is not None and self.cid.address else None

    def address_types(self) -> tuple[str, ...]:
        return ("pci",)
