"""``<hostdev>``: host devices passed through to the guest (PCI, USB, SCSI, mdev)."""

from __future__ import annotations

import enum

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.xmlmodel import attr


class HostdevMode(enum.StrEnum):
    SUBSYSTEM = "subsystem"
    CAPABILITIES = "capabilities"


class HostdevType(enum.StrEnum):
    USB = "usb"
    PCI = "pci"
    SCSI = "scsi"
    SCSI_HOST = "scsi_host"
    MDEV = "mdev"


class Hostdev(PCIDevice):
    TAG = "hostdev"
    mode: HostdevMode = attr(HostdevMode, default=HostdevMode.SUBSYSTEM)
    type: HostdevType = attr(HostdevType, required=True)
