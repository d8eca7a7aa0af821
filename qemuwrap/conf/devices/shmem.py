"""``<shmem>``: shared memory between guests (ivshmem)."""

from __future__ import annotations

import enum

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.xmlmodel import Str, attr


class ShmemModel(enum.StrEnum):
    IVSHMEM = "ivshmem"
    IVSHMEM_PLAIN = "ivshmem-plain"
    IVSHMEM_DOORBELL = "ivshmem-doorbell"


class Shmem(PCIDevice):
    TAG = "shmem"
    name: str = attr(Str(r"[A-Za-z0-9_.\-]+", what="name"), required=True)
