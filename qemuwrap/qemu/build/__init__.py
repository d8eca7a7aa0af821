"""The builders: one module per area of the definition (libvirt's qemuBuild*CommandLine),
each turning part of the model into QEMU options with the element each came from.

Builders only build. Everything they may assume (the device exists in this QEMU, an
address is free, a combination makes sense) was checked by ``qemu/validate``, and every
device already has its address and id (``qemu/address.py``).
"""

from __future__ import annotations

import os

from qemuwrap.conf.devices.address import (
    CCIDAddress,
    Device,
    PCIAddress,
    USBAddress,
    VirtioSerialAddress,
)
from qemuwrap.conf.devices.controller import Controller, ControllerType, find_controller
from qemuwrap.conf.domain import Domain
from qemuwrap.qemu.argv import Command
from qemuwrap.qemu.capabilities import Capabilities
from qemuwrap.qemu.validate import MachineType
from qemuwrap.record import Record

QMP_SOCKET = "qmp.sock"  # the supervisor's QMP monitor
CONTROL_SOCKET = "control.sock"  # a second QMP monitor for shutdown/destroy/status
PIDFILE = "qemu.pid"


class Paths(Record):
    """Where a running guest keeps its files (the launcher's state directory)."""

    state_dir: str

    @property
    def qmp_socket(self) -> str:
        return os.path.join(self.state_dir, QMP_SOCKET)

    @property
    def control_socket(self) -> str:
        return os.path.join(self.state_dir, CONTROL_SOCKET)

    @property
    def pidfile(self) -> str:
        return os.path.join(self.state_dir, PIDFILE)

    def serial_log(self, port: int) -> str:
        return os.path.join(self.state_dir, f"serial{port}.log")


class BuildContext:
    """What every builder reads (the definition, the binary, the machine, the paths) and
    the command it adds to."""

    def __init__(self, dom: Domain, caps: Capabilities, machine: MachineType, paths: Paths,
                 cmd: Command):
        self.dom = dom
        self.caps = caps
        self.machine = machine
        self.paths = paths
        self.cmd = cmd
        self._controllers: dict[tuple[ControllerType, int], Controller | None] = {}

    @property
    def q35(self) -> bool:
        return self.machine.family == "q35"

    # -- where a device plugs in (libvirt's qemuBuildDeviceAddressProps) --------------
    def address_props(self, device: Device) -> dict[str, str]:
        """``bus=`` and the rest of a device's address for whatever bus it sits on:
        PCI, USB, virtio-serial or CCID ({} for none of these)."""
        addr = device.address
        if isinstance(addr, PCIAddress):
            return self.pci_props(device)
        if isinstance(addr, USBAddress):
            return self.usb_props(device)
        if isinstance(addr, VirtioSerialAddress):
            return self.virtio_serial_props(device)
        if isinstance(addr, CCIDAddress):
            return {"bus": f"{self.controller_alias(ControllerType.CCID, addr.controller)}.0"}
        return {}

    def pci_props(self, device: Device) -> dict[str, str]:
        """``bus=...[,multifunction=on|off],addr=...[,acpi-index=N]`` for a device's PCI
        address (qemuBuildDeviceAddressProps: the ACPI index goes with the address)."""
        addr = device.address
        if not isinstance(addr, PCIAddress):
            return {}
        value = f"{addr.slot:#x}" if addr.function == 0 else \
            f"{addr.slot:#x}.{addr.function:#x}"
        props = {"bus": self.pci_bus_name(addr.bus)}
        if addr.multifunction is not None:
            props["multifunction"] = "on" if addr.multifunction else "off"
        props["addr"] = value
        acpi = getattr(device, "acpi", None)
        if acpi is not None and acpi.index:
            props["acpi-index"] = str(acpi.index)
        return props

    def usb_props(self, device: Device) -> dict[str, str]:
        """``bus=usb.0,port=1.2`` for a device on a USB port."""
        addr = device.address
        if not isinstance(addr, USBAddress):
            return {}
        props = {"bus": f"{self.controller_alias(ControllerType.USB, addr.bus)}.0"}
        if addr.port:
            props["port"] = addr.port
        return props

    def virtio_serial_props(self, device: Device) -> dict[str, str]:
        """``bus=virtio-serial0.0,nr=N`` for a port on a virtio-serial controller."""
        addr = device.address
        if not isinstance(addr, VirtioSerialAddress):
            return {}
        alias = self.controller_alias(ControllerType.VIRTIO_SERIAL, addr.controller)
        props = {"bus": f"{alias}.{addr.bus}"}
        if addr.port:
            props["nr"] = str(addr.port)
        return props

    def pci_bus_name(self, bus: int) -> str:
        """QEMU's id of PCI bus ``bus``: the alias of the PCI controller of that index
        (``pci.0``/``pcie.0`` for the root)."""
        ctrl = self.controller(ControllerType.PCI, bus)
        if ctrl is not None and ctrl.alias_name:
            return ctrl.alias_name
        if bus == 0:
            return "pcie.0" if self.q35 else "pci.0"
        return f"pci.{bus}"

    def controller(self, kind: ControllerType, index: int) -> Controller | None:
        """The controller of ``kind`` and ``index`` (a USB2 family's EHCI master); the
        list is complete once builders run, so each answer is kept."""
        key = (kind, index)
        if key not in self._controllers:
            self._controllers[key] = find_controller(self.dom.devices.controllers, kind,
                                                     index)
        return self._controllers[key]

    def controller_alias(self, kind: ControllerType, index: int) -> str:
        ctrl = self.controller(kind, index)
        if ctrl is not None and ctrl.alias_name:
            return ctrl.alias_name
        return f"{kind}{index}"
