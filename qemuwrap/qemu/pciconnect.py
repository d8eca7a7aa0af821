"""What kind of PCI connection each device needs (libvirt's
qemuDomainDeviceCalculatePCIConnectFlags): none (ISA, USB, built-in devices), a
conventional PCI slot, or a PCIe one.

This is the one place that decides, for every device kind, whether it takes a PCI
address.  On a machine with a PCIe root (q35) PCIe devices and modern virtio devices
need a PCIe slot, which in practice means a pcie-root-port of their own; transitional
virtio devices and conventional PCI cards need a conventional slot (a pci-bridge).
Values are compared by their XML spelling, so a model another area adds later needs no
change here unless libvirt treats it differently; devices are told apart by their
element (``TAG``), so no kind's model module is imported for a guest without that kind.
"""

from __future__ import annotations

from collections.abc import Callable

from qemuwrap.conf.devices.controller import Controller, ControllerType
from qemuwrap.hints import TYPE_CHECKING
from qemuwrap.qemu.pciaddr import CONTROLLER_CONNECT, NO_FLAGS, Conn

if TYPE_CHECKING:
    from typing import Any

PCI_FLAGS = Conn.PCI_DEVICE | Conn.AUTOASSIGN
PCIE_FLAGS = Conn.PCIE_DEVICE | Conn.AUTOASSIGN
TRANSITIONAL = "virtio-transitional"

#: Models that need a conventional PCI slot, a PCIe one, or none, per device kind.
USB_PCIE = frozenset({"nec-xhci", "qemu-xhci"})
USB_NONE = frozenset({"none", "qusb1", "qusb2"})
SCSI_VIRTIO = frozenset({"virtio-scsi", "virtio-non-transitional"})
SCSI_NONE = frozenset({"ncr53c90", "ibmvscsi"})  # built in; spapr-vio
NIC_PCIE = frozenset({"e1000e", "igb"})
NIC_VIRTIO = frozenset({"virtio", "virtio-non-transitional"})
SOUND_PCI = frozenset({"es1370", "ac97", "ich6", "ich9"})
VIDEO_PCI = frozenset({"vga", "cirrus", "vmvga", "xen", "vbox", "qxl", "parallels"})
MEMORY_VIRTIO = frozenset({"virtio-pmem", "virtio-mem"})


def _get(obj: Any, *path: str) -> str | None:
    """``obj.a.b`` spelled as text, or None where any step is missing (fields another
    area has not modelled yet read as absent)."""
    for name in path:
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return str(obj)


def _virtio(model: str | None, virtio: int) -> int:
    """A virtio device: transitional ones only work in conventional PCI slots."""
    return PCI_FLAGS if model == TRANSITIONAL else virtio


def connect_flags(dev: object, pcie: int, virtio: int) -> int:
    """The connection ``dev`` needs; ``pcie``/``virtio``: the flags a PCIe device and a
    modern virtio device get on this machine."""
    kind = _KINDS.get(getattr(dev, "TAG", ""))
    return NO_FLAGS if kind is None else kind(dev, pcie, virtio)


# Each kind's rule, by element; the device is typed Any: its class need not be loaded.
def _controller(ctrl: Controller, pcie: int, virtio: int) -> int:
    model = str(ctrl.model) if ctrl.model is not None else None
    kind = ctrl.type
    if kind == ControllerType.PCI:
        pci_model = ctrl.pci_model
        return CONTROLLER_CONNECT[pci_model] if pci_model is not None else NO_FLAGS
    if kind in (ControllerType.SATA, ControllerType.IDE):
        return PCI_FLAGS
    if kind == ControllerType.USB:
        if model in USB_NONE:
            return NO_FLAGS
        return pcie if model in USB_PCIE else PCI_FLAGS
    if kind == ControllerType.SCSI:
        if model is None or model in SCSI_NONE:
            return NO_FLAGS
        return virtio if model in SCSI_VIRTIO else PCI_FLAGS
    if kind == ControllerType.VIRTIO_SERIAL:
        return _virtio(model, virtio)
    return NO_FLAGS  # fdc, ccid, xenbus, isa


def _interface(nic: Any, pcie: int, virtio: int) -> int:
    if str(nic.type) == "hostdev" or str(nic.model) == "usb-net":
        return NO_FLAGS
    model = str(nic.model)
    if model in NIC_VIRTIO:
        return virtio
    if model == TRANSITIONAL:
        return PCI_FLAGS
    return pcie if model in NIC_PCIE else PCI_FLAGS


def _disk(disk: Any, pcie: int, virtio: int) -> int:
    return _virtio(_get(disk, "model"), virtio) if str(disk.bus) == "virtio" else NO_FLAGS


def _memballoon(balloon: Any, pcie: int, virtio: int) -> int:
    model = str(balloon.model)
    return NO_FLAGS if model in ("none", "xen") else _virtio(model, virtio)


def _video(video: Any, pcie: int, virtio: int) -> int:
    model = str(video.model.type)
    if model == "virtio":
        return virtio
    if model == "bochs":
        return pcie
    return PCI_FLAGS if model in VIDEO_PCI else NO_FLAGS


def _sound(sound: Any, pcie: int, virtio: int) -> int:
    return PCI_FLAGS if str(sound.model) in SOUND_PCI else NO_FLAGS


def _input(inp: Any, pcie: int, virtio: int) -> int:
    return _virtio(_get(inp, "model"), virtio) if str(inp.bus) == "virtio" else NO_FLAGS


def _rng(rng: Any, pcie: int, virtio: int) -> int:
    return _virtio(str(rng.model), virtio)


def _watchdog(dog: Any, pcie: int, virtio: int) -> int:
    return PCI_FLAGS if str(dog.model) == "i6300esb" else NO_FLAGS


def _shmem(shmem: Any, pcie: int, virtio: int) -> int:
    return PCI_FLAGS


def _filesystem(fs: Any, pcie: int, virtio: int) -> int:
    driver = _get(fs, "driver", "type")
    if driver == "virtiofs":
        return virtio
    if driver in ("loop", "nbd", "ploop"):
        return NO_FLAGS
    return _virtio(_get(fs, "model"), virtio)  # virtio-9p-pci


def _hostdev(dev: Any, pcie: int, virtio: int) -> int:
    kind = str(dev.type)
    if str(dev.mode) != "subsystem" or kind not in ("pci", "scsi_host", "mdev"):
        return NO_FLAGS
    if kind == "scsi_host":  # vhost-scsi: a virtio-scsi device to the guest
        return _virtio(_get(dev, "source", "model") or _get(dev, "model"), virtio)
    # A host PCI device libvirt cannot look at, an mdev, or one the XML placed: PCIe
    # (as almost every assignable device is).
    return pcie


def _serial(serial: Any, pcie: int, virtio: int) -> int:
    return PCI_FLAGS if _get(serial, "target", "type") == "pci-serial" else NO_FLAGS


def _iommu(iommu: Any, pcie: int, virtio: int) -> int:
    return virtio | Conn.INTEGRATED if str(iommu.model) == "virtio" else NO_FLAGS


def _vsock(vsock: Any, pcie: int, virtio: int) -> int:
    return _virtio(_get(vsock, "model"), virtio)  # no model: virtio (post-parse)


def _memory(mem: Any, pcie: int, virtio: int) -> int:
    return virtio if str(mem.model) in MEMORY_VIRTIO else NO_FLAGS


def _panic(panic: Any, pcie: int, virtio: int) -> int:
    return PCI_FLAGS | Conn.INTEGRATED if str(panic.model) == "pvpanic" else NO_FLAGS


#: Every kind that may take a PCI slot, by element; any other kind takes none.
_KINDS: dict[str, Callable[[Any, int, int], int]] = {
    "controller": _controller, "interface": _interface, "disk": _disk,
    "memballoon": _memballoon, "video": _video, "sound": _sound, "input": _input,
    "rng": _rng, "watchdog": _watchdog, "shmem": _shmem, "filesystem": _filesystem,
    "hostdev": _hostdev, "serial": _serial, "iommu": _iommu, "vsock": _vsock,
    "memory": _memory, "panic": _panic}
