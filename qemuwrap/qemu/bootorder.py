"""Which device the firmware boots from, as libvirt 9.0 tells QEMU: a ``bootindex``
per device, never ``-boot order=`` (qemuProcessPrepareDeviceBootorder).

``<os><boot dev='...'/>`` entries give the first disk, cdrom, floppy and the first
network interface the position of their entry (1-based); without them, each device's
own ``<boot order='N'/>`` is its index.  Device builders ask :func:`boot_index`.
"""

from __future__ import annotations

from qemuwrap.conf.domain import Domain
from qemuwrap.conf.os import BootDev
from qemuwrap.conf.xmlmodel import Element

#: <disk device=...> -> the <os><boot dev=...> entry that boots it.
_DISK_BOOT = {"cdrom": BootDev.CDROM, "disk": BootDev.HD, "lun": BootDev.HD,
              "floppy": BootDev.FD}


def assign_boot_order(dom: Domain) -> None:
    """Fill ``dom.boot_indexes`` (device id() -> bootindex) for the devices that boot."""
    out: dict[int, int] = {}
    boots = dom.os.boot
    if not boots:
        for dev in dom.devices.all():
            boot = getattr(dev, "boot", None)
            if boot is not None:
                out[id(dev)] = boot.order
        dom.boot_indexes = out
        return
    position = {dev: i + 1 for i, dev in enumerate(boots)}
    for disk in dom.devices.disks:
        kind = _DISK_BOOT.get(str(disk.device))
        if kind is not None and kind in position:
            out[id(disk)] = position.pop(kind)
    if BootDev.NETWORK in position and dom.devices.interfaces:
        out[id(dom.devices.interfaces[0])] = position[BootDev.NETWORK]
    dom.boot_indexes = out


def boot_index(dom: Domain, dev: Element) -> int | None:
    """The ``bootindex`` of ``dev`` (None: not a boot device)."""
    return dom.boot_indexes.get(id(dev))
