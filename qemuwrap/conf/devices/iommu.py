"""``<iommu>``: the guest's IOMMU (Intel VT-d on q35, virtio-iommu)."""

from __future__ import annotations

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import ON_OFF, Element, Int, ParseContext, attr, child


class IOMMUModel(ValueSet):
    INTEL = "intel"
    SMMUV3 = "smmuv3"
    VIRTIO = "virtio"


class IOMMUDriver(Element):
    """``<driver intremap caching_mode eim iotlb aw_bits>``: Intel IOMMU settings."""

    TAG = "driver"
    intremap: bool | None = attr(ON_OFF)
    caching_mode: bool | None = attr(ON_OFF)
    eim: bool | None = attr(ON_OFF)
    iotlb: bool | None = attr(ON_OFF)
    aw_bits: int | None = attr(Int(0, 255))


class IOMMU(PCIDevice):
    TAG = "iommu"
    model: IOMMUModel = attr(IOMMUModel, required=True)
    driver: IOMMUDriver | None = child(IOMMUDriver)

    def check(self, ctx: ParseContext) -> None:
        drv = self.driver
        if self.model != IOMMUModel.INTEL and drv is not None and any(
                v is not None for _, v in drv.values()):
            raise drv.error(f"iommu model '{self.model}' doesn't support additional "
                            "attributes")
        if self.model != IOMMUModel.VIRTIO and self.address is not None:
            raise self.address.error(f"iommu model '{self.model}' can't have an address")
        if drv is not None and drv.eim and not drv.intremap:
            raise drv.error("IOMMU eim requires interrupt remapping to be enabled")

    def address_types(self) -> tuple[str, ...]:
        return ("pci",)
