"""What this QEMU binary and machine type can give a definition (libvirt's qemu_validate.c).

Every refusal is one line that names the element and the reason, raised before
QEMU runs: a guest never starts without something its XML asked for, and QEMU
never fails later on an option we could have judged here.
"""

from __future__ import annotations

import re

from qemuwrap.conf.domain import Domain
from qemuwrap.conf.xmlreader import Node
from qemuwrap.errors import UnsupportedError
from qemuwrap.qemu.capabilities import Capabilities
from qemuwrap.record import Record

X86_ARCHES = ("x86_64", "i686")
#: vmgenid needs DMA writes to fw_cfg and the etc/vmgenid_guid file: 2.6 and later.
VMGENID_MIN_MACHINE = (2, 6)
_MACHINE_RE = re.compile(r"pc-(?:(i440fx|q35)-)?(\d+)\.(\d+)(?:\.\d+)?")


class MachineType(Record):
    """A machine type resolved against the binary: canonical name, family, version."""

    name: str
    family: str  # "pc", "q35" or the name itself (isapc, microvm, ...)
    version: tuple[int, int] | None


def classify_machine(name: str) -> MachineType:
    m = _MACHINE_RE.fullmatch(name)
    if m is None:
        return MachineType(name, name, None)
    family = "q35" if m.group(1) == "q35" else "pc"
    return MachineType(name, family, (int(m.group(2)), int(m.group(3))))


def _fail(node: Node | None, message: str) -> UnsupportedError:
    where = f"{node.path} (line {node.line}): " if node is not None else ""
    return UnsupportedError(where + message)


def resolve_machine(dom: Domain, caps: Capabilities) -> MachineType:
    """The machine type the guest gets: the XML's (alias resolved) or QEMU's default."""
    wanted = dom.os.machine
    if wanted is None:
        default = next((m for m in caps.machines if m.is_default), None)
        if default is None:
            raise _fail(dom.os.node, f"{caps.emulator} has no default machine type")
        return classify_machine(default.name)
    machine = caps.resolve_machine(wanted)
    if machine is None:
        raise _fail(dom.os.node, f"machine type '{wanted}' is not supported by {caps.emulator}")
    return classify_machine(machine.name)


def validate_genid(dom: Domain, caps: Capabilities, machine: MachineType) -> None:
    """The guest sees a vmgenid device only on x86 pc/q35 (2.6+) with ACPI, on a QEMU
    that has the device. libvirt emits it anyway; we refuse with the reason."""
    if not dom.genid_requested:
        return
    node = dom.nodes.get("genid")
    if not caps.has_device("vmgenid"):
        raise _fail(node, "this QEMU does not support the 'genid' capability "
                          f"({caps.emulator} has no vmgenid device)")
    if dom.os.arch not in X86_ARCHES:
        raise _fail(node, f"genid needs an x86_64 or i686 guest, not '{dom.os.arch}'")
    if machine.family not in ("pc", "q35"):
        raise _fail(node, f"genid needs a pc or q35 machine type, not '{machine.name}'")
    if machine.version is not None and machine.version < VMGENID_MIN_MACHINE:
        raise _fail(node, f"genid needs machine type version 2.6 or later, "
                          f"'{machine.name}' lacks DMA writes to fw_cfg")
    if not dom.acpi:
        raise _fail(node, "genid needs ACPI: add <acpi/> to <features> "
                          "(without ACPI the guest cannot see the vmgenid device)")


def validate(dom: Domain, caps: Capabilities) -> MachineType:
    """Check ``dom`` against ``caps`` in document order; return the machine type."""
    if dom.devices.emulator and dom.devices.emulator != caps.emulator:
        raise _fail(dom.nodes.get("devices"),
                    f"capabilities are for {caps.emulator}, not {dom.devices.emulator}")
    machine = resolve_machine(dom, caps)
    validate_genid(dom, caps, machine)
    accel = "kvm" if dom.type == "kvm" else "tcg"
    if accel not in caps.accelerators:
        raise _fail(dom.nodes["domain"], f"domain type '{dom.type}' needs the {accel} "
                                         f"accelerator, which {caps.emulator} lacks")
    arches = {"x86_64": ("x86_64", "i686"), "i386": ("i686",)}.get(caps.arch, (caps.arch,))
    if dom.os.arch not in arches:
        raise _fail(dom.os.node, f"architecture '{dom.os.arch}' is not supported by "
                                 f"{caps.emulator}")
    if machine.family not in ("pc", "q35"):
        raise _fail(dom.os.node, f"machine type '{machine.name}' is not supported by "
                                 "qemuwrap (supported: pc and q35 families)")
    if (dom.current_memory_kib is not None and dom.current_memory_kib < dom.memory_kib
            and dom.devices.memballoon.model == "none"):
        raise _fail(dom.nodes.get("currentMemory"),
                    "currentMemory below memory needs <memballoon model='virtio'/>")
    return machine
