"""``<memory>`` devices: hot-pluggable DIMMs, NVDIMMs, virtio-mem and friends."""

from __future__ import annotations

import enum

from qemuwrap.conf.devices.address import Device
from qemuwrap.conf.xmlmodel import attr


class MemoryModel(enum.StrEnum):
    DIMM = "dimm"
    NVDIMM = "nvdimm"
    VIRTIO_PMEM = "virtio-pmem"
    VIRTIO_MEM = "virtio-mem"
    SGX_EPC = "sgx-epc"


class MemoryDevice(Device):
    TAG = "memory"
    model: MemoryModel = attr(MemoryModel, required=True)
