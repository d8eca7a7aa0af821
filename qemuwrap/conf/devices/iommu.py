"""``<iommu>``: the guest's IOMMU."""

from __future__ import annotations

import enum

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.xmlmodel import attr


class IOMMUModel(enum.StrEnum):
    INTEL = "intel"
    SMMUV3 = "smmuv3"
    VIRTIO = "virtio"


class IOMMU(PCIDevice):
    TAG = "iommu"
    model: IOMMUModel = attr(IOMMUModel, required=True)
