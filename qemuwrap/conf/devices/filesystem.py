"""``<filesystem>``: host directories shared with the guest (virtiofs, 9p)."""

from __future__ import annotations

import enum

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.xmlmodel import attr


class FilesystemType(enum.StrEnum):
    MOUNT = "mount"
    BLOCK = "block"
    FILE = "file"
    TEMPLATE = "template"
    RAM = "ram"
    BIND = "bind"
    VOLUME = "volume"


class Filesystem(PCIDevice):
    TAG = "filesystem"
    type: FilesystemType = attr(FilesystemType, default=FilesystemType.MOUNT)
