"""``<vsock>``: a virtio socket to the host."""

from __future__ import annotations

import enum

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.xmlmodel import attr


class VsockModel(enum.StrEnum):
    VIRTIO = "virtio"
    VIRTIO_TRANSITIONAL = "virtio-transitional"
    VIRTIO_NON_TRANSITIONAL = "virtio-non-transitional"


class Vsock(PCIDevice):
    TAG = "vsock"
    model: VsockModel | None = attr(VsockModel)
