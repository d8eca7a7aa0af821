"""Address and id assignment (libvirt's qemu_domain_address.c and qemu_alias.c).

Every device QEMU needs a place for gets one written into the model: PCI slots for PCI
devices, controller/bus/unit for disks (``conf/devices/disk.py``), and every device an
id (``alias.py``).  Explicit
addresses are honoured; the rest fill the free slots in libvirt's order, so a guest keeps
the same hardware on every start (and the live definition shows it).
"""

from __future__ import annotations

from qemuwrap.conf.devices.address import Device, PCIAddress
from qemuwrap.conf.devices.controller import Controller, ControllerModel, ControllerType
from qemuwrap.conf.devices.disk import DiskBus, assign_drive_addresses
from qemuwrap.conf.devices.memballoon import BalloonModel
from qemuwrap.conf.devices.video import VideoModel
from qemuwrap.conf.domain import Domain
from qemuwrap.errors import Problems, UnsupportedError
from qemuwrap.qemu.alias import assign_aliases
from qemuwrap.qemu.build.controller import controller_device
from qemuwrap.qemu.validate import MachineType, refusal


class _RootBus:
    """Slot allocation on the root bus: explicit addresses first, then the free slots."""

    def __init__(self, reserved: set[int]):
        self.reserved = reserved
        self.used: dict[tuple[int, int], Device | None] = {}
        self.errors: list[UnsupportedError] = []

    def claim(self, addr: PCIAddress, dev: Device) -> None:
        if addr.domain != 0 or addr.bus != 0:
            self.errors.append(refusal(dev, "only PCI domain 0, bus 0 (the root bus) is "
                                            "supported"))
            return
        key = (addr.slot, addr.function)
        if addr.slot in self.reserved or key in self.used:
            self.errors.append(refusal(dev, f"PCI address {addr.slot:#04x}.{addr.function} "
                                            "is already in use"))
            return
        self.used[key] = dev

    def check_functions(self) -> None:
        for (slot, fn), dev in self.used.items():
            if fn and (slot, 0) not in self.used and slot not in self.reserved:
                self.errors.append(refusal(dev, f"PCI slot {slot:#04x} has function {fn} "
                                                "but no function 0"))

    def allocate(self, dev: Device) -> PCIAddress | None:
        for slot in range(1, 32):
            if slot not in self.reserved and not any(s == slot for s, _ in self.used):
                self.used[(slot, 0)] = dev
                return PCIAddress(slot=slot)
        self.errors.append(refusal(dev, "no free PCI slot left on the root bus"))
        return None


def _pci_devices(dom: Domain, q35: bool) -> list[Device]:
    devs = dom.devices
    out: list[Device] = [v for v in devs.videos if v.model.type != VideoModel.NONE]
    out += [c for c in devs.controllers if controller_device(c, q35) is not None]
    out += devs.filesystems
    out += devs.interfaces
    out += [d for d in devs.disks if d.bus == DiskBus.VIRTIO]
    if devs.memballoon.model == BalloonModel.VIRTIO:
        out.append(devs.memballoon)
    return out


def assign_pci(dom: Domain, machine: MachineType) -> None:
    q35 = machine.family == "q35"
    # pc: 0 host bridge, 1 PIIX3 (ISA, IDE at .1, USB at .2, PM); q35: 0 host, 0x1f ICH9.
    bus = _RootBus({0, 0x1F} if q35 else {0, 1})
    devices = _pci_devices(dom, q35)
    for dev in devices:
        addr = dev.address
        piix_usb = (not q35 and isinstance(dev, Controller) and dev.type == ControllerType.USB
                    and dev.model in (None, ControllerModel.PIIX3_UHCI))
        if piix_usb and (addr is None or (isinstance(addr, PCIAddress)
                                          and (addr.slot, addr.function) == (1, 2))):
            dev.address = PCIAddress(slot=1, function=2)  # PIIX3's own USB function
        elif isinstance(addr, PCIAddress):
            bus.claim(addr, dev)
    bus.check_functions()
    for dev in devices:
        if dev.address is None:
            dev.address = bus.allocate(dev)
    if not q35:
        for ctrl in dom.devices.controllers:
            if ctrl.type == ControllerType.IDE and ctrl.address is None:
                ctrl.address = PCIAddress(slot=1, function=1)
    if bus.errors:
        raise Problems.of(bus.errors)


def assign_addresses(dom: Domain, machine: MachineType) -> None:
    """Addresses for every device (drive positions first: libvirt's post-parse), then
    libvirt's ids."""
    assign_drive_addresses(dom)
    assign_pci(dom, machine)
    assign_aliases(dom)
