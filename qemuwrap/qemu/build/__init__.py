"""The builders: one module per area of the definition (libvirt's qemuBuild*CommandLine),
each turning part of the model into QEMU options with the element each came from.

Builders only build. Everything they may assume (the device exists in this QEMU, an
address is free, a combination makes sense) was checked by ``qemu/validate``, and every
device already has its address and id (``qemu/address.py``).
"""

from __future__ import annotations

import os

from qemuwrap.conf.devices.address import Device, PCIAddress
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

    @property
    def q35(self) -> bool:
        return self.machine.family == "q35"

    def pci_props(self, device: Device) -> dict[str, str]:
        """``bus=...,addr=...[,multifunction=on]`` for a device's PCI address."""
        addr = device.address
        if not isinstance(addr, PCIAddress):
            return {}
        value = f"{addr.slot:#x}" if addr.function == 0 else \
            f"{addr.slot:#x}.{addr.function:#x}"
        props = {"bus": self.pci_bus_name(addr.bus), "addr": value}
        if addr.multifunction:
            props["multifunction"] = "on"
        return props

    def pci_bus_name(self, bus: int) -> str:
        """QEMU's id of PCI bus ``bus``: the root, or the controller of that index."""
        if bus == 0:
            return "pcie.0" if self.q35 else "pci.0"
        return f"pci.{bus}"
