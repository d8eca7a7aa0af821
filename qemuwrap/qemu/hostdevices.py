"""Host devices as this host's sysfs shows them: whether a PCI, USB, SCSI or mediated
device a definition passes through exists, and the node QEMU opens for it.

Read-only lookups (no device is detached or bound): validation refuses what is
absent, with the reason; the builders name what is present.  ``SYSFS`` and ``DEV``
are module constants so tests can point them at a fake tree.
"""

from __future__ import annotations

import os

SYSFS = "/sys"
DEV = "/dev"


def pci_path(addr: str) -> str:
    return os.path.join(SYSFS, "bus", "pci", "devices", addr)


def pci_driver(addr: str) -> str | None:
    """The host driver bound to PCI device ``addr`` (``vfio-pci`` for passthrough)."""
    try:
        return os.path.basename(os.readlink(os.path.join(pci_path(addr), "driver")))
    except OSError:
        return None


def pci_problem(addr: str) -> str | None:
    """Why PCI device ``addr`` cannot be passed through here (None: it can)."""
    if not os.path.exists(pci_path(addr)):
        return f"host PCI device {addr} does not exist"
    driver = pci_driver(addr)
    if driver != "vfio-pci":
        bound = f"bound to '{driver}'" if driver else "bound to no driver"
        return (f"host PCI device {addr} is {bound}, not vfio-pci (qemuwrap does not detach "
                "devices from host drivers: bind it to vfio-pci first)")
    if not os.path.exists(os.path.join(DEV, "vfio", "vfio")):
        return f"{DEV}/vfio/vfio does not exist (modprobe vfio-pci)"
    return None


def usb_node(bus: int, device: int) -> str:
    """``/dev/bus/usb/BBB/DDD``: QEMU's usb-host ``hostdevice``."""
    return os.path.join(DEV, "bus", "usb", f"{bus:03d}", f"{device:03d}")


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def usb_find(vendor: int, product: int) -> list[tuple[int, int]]:
    """(bus, device) of every host USB device with these ids (libvirt's
    virUSBDeviceFindByVendor)."""
    base = os.path.join(SYSFS, "bus", "usb", "devices")
    found = []
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    for name in names:
        d = os.path.join(base, name)
        vid, pid = _read(os.path.join(d, "idVendor")), _read(os.path.join(d, "idProduct"))
        if vid is None or pid is None:
            continue
        try:
            if int(vid, 16) == vendor and int(pid, 16) == product:
                bus, dev = _read(os.path.join(d, "busnum")), _read(os.path.join(d, "devnum"))
                if bus is not None and dev is not None:
                    found.append((int(bus), int(dev)))
        except ValueError:
            continue
    return found


def scsi_generic(adapter: str, bus: int, target: int, unit: int) -> str | None:
    """``/dev/sgN`` of SCSI device ``bus:target:unit`` on host adapter ``scsi_hostH``."""
    host = adapter.removeprefix("scsi_host")
    d = os.path.join(SYSFS, "bus", "scsi", "devices", f"{host}:{bus}:{target}:{unit}",
                     "scsi_generic")
    try:
        names = os.listdir(d)
    except OSError:
        return None
    return os.path.join(DEV, names[0]) if names else None


def mdev_path(uuid: str) -> str:
    """The sysfs node of a mediated device (QEMU's vfio-pci ``sysfsdev``)."""
    return os.path.join(SYSFS, "bus", "mdev", "devices", uuid)
