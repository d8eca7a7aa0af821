"""``<rng>``: a virtio random number generator and its host source."""

from __future__ import annotations

import enum

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.xmlmodel import attr


class RNGModel(enum.StrEnum):
    VIRTIO = "virtio"
    VIRTIO_TRANSITIONAL = "virtio-transitional"
    VIRTIO_NON_TRANSITIONAL = "virtio-non-transitional"


class RNG(PCIDevice):
    TAG = "rng"
    model: RNGModel = attr(RNGModel, required=True)
