"""``<panic>``: how the guest tells the host it crashed."""

from __future__ import annotations

import enum

from qemuwrap.conf.devices.address import Device
from qemuwrap.conf.xmlmodel import attr


class PanicModel(enum.StrEnum):
    ISA = "isa"
    PSERIES = "pseries"
    HYPERV = "hyperv"
    S390 = "s390"
    PVPANIC = "pvpanic"


class Panic(Device):
    TAG = "panic"
    model: PanicModel | None = attr(PanicModel)
