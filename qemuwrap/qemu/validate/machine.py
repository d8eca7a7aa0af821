"""Checks of the machine as a whole: emulator, machine type, accelerator, architecture,
memory, and the generation ID (which only a pc or q35 machine with ACPI shows a guest)."""

from __future__ import annotations

import re

from qemuwrap.conf.domain import Domain, VirtType
from qemuwrap.errors import UnsupportedError
from qemuwrap.hints import TYPE_CHECKING
from qemuwrap.qemu.capabilities import Capabilities
from qemuwrap.record import Record

if TYPE_CHECKING:
    from qemuwrap.qemu.validate import Validation

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


def resolve_machine(dom: Domain, caps: Capabilities) \
        -> tuple[MachineType, list[UnsupportedError]]:
    """The machine type the guest gets (the XML's, alias resolved, or QEMU's default),
    and the refusal when there is none."""
    from qemuwrap.qemu.validate import refusal

    where = dom.os.node_of("type") if dom.os is not None else None
    wanted = dom.os.machine
    if wanted is None:
        default = next((m for m in caps.machines if m.is_default), None)
        if default is None:
            return MachineType("none", "none", None), [
                refusal(where, f"{caps.emulator} has no default machine type")]
        return classify_machine(default.name), []
    machine = caps.resolve_machine(wanted)
    if machine is None:
        return MachineType(wanted, wanted, None), [
            refusal(where, f"machine type '{wanted}' is not supported by {caps.emulator}")]
    return classify_machine(machine.name), []


def check_emulator(v: Validation) -> None:
    emulator = v.dom.devices.emulator
    if emulator and emulator != v.caps.emulator:
        v.refuse(v.dom.devices.node_of("emulator"),
                 f"capabilities are for {v.caps.emulator}, not {emulator}")


def check_machine(v: Validation) -> None:
    dom, caps, machine = v.dom, v.caps, v.machine
    os_type = dom.os.node_of("type")
    accel = "kvm" if dom.type == "kvm" else "tcg"
    if accel not in caps.accelerators:
        v.refuse(dom, f"domain type '{dom.type}' needs the {accel} accelerator, which "
                      f"{caps.emulator} lacks")
    arches = {"x86_64": ("x86_64", "i686"), "i386": ("i686",)}.get(caps.arch, (caps.arch,))
    if dom.os.arch not in arches:
        v.refuse(os_type, f"architecture '{dom.os.arch}' is not supported by {caps.emulator}")
    if machine.family not in ("pc", "q35"):
        v.refuse(os_type, f"machine type '{machine.name}' is not supported by qemuwrap "
                          "(supported: pc and q35 families)")
    if caps.version < (6, 0, 0):
        v.refuse(dom, f"{caps.emulator} is older than QEMU 6.0 and lacks -action")


def check_genid(v: Validation) -> None:
    """The guest sees a vmgenid device only on x86 pc/q35 (2.6+) with ACPI, on a QEMU
    that has the device. libvirt emits it anyway; we refuse with the reason."""
    dom, caps, machine = v.dom, v.caps, v.machine
    if not dom.genid_requested:
        return
    node = dom.nodes.get("genid")
    if not caps.has_device("vmgenid"):
        v.refuse(node, "this QEMU does not support the 'genid' capability "
                       f"({caps.emulator} has no vmgenid device)")
    elif dom.os.arch not in X86_ARCHES:
        v.refuse(node, f"genid needs an x86_64 or i686 guest, not '{dom.os.arch}'")
    elif machine.family not in ("pc", "q35"):
        v.refuse(node, f"genid needs a pc or q35 machine type, not '{machine.name}'")
    elif machine.version is not None and machine.version < VMGENID_MIN_MACHINE:
        v.refuse(node, f"genid needs machine type version 2.6 or later, "
                       f"'{machine.name}' lacks DMA writes to fw_cfg")
    elif not dom.acpi:
        v.refuse(node, "genid needs ACPI: add <acpi/> to <features> "
                       "(without ACPI the guest cannot see the vmgenid device)")


#: More vCPUs than this need x2APIC with KVM's kernel irqchip (QEMU: "current -smp
#: configuration requires kernel irqchip and X2APIC API support").
TCG_MAX_APIC_VCPUS = 255
#: QEMU 7.2's vCPU limits per machine family (MachineClass max_cpus).
MAX_VCPUS = {"pc": 255, "q35": 288}


def check_vcpu_count(v: Validation) -> None:
    dom = v.dom
    limit = MAX_VCPUS.get(v.machine.family)
    if limit is not None and dom.vcpus > limit:
        v.refuse(dom.vcpu, f"{dom.vcpus} vCPUs are not supported by machine type "
                           f"'{v.machine.name}' (at most {limit})")
    elif dom.vcpus > TCG_MAX_APIC_VCPUS and dom.type != VirtType.KVM:
        # x2APIC ids above 254 need KVM's kernel irqchip; QEMU refuses at start
        v.refuse(dom.vcpu, f"{dom.vcpus} vCPUs need KVM (x2APIC with a kernel irqchip): "
                           f"under TCG QEMU 7.2 runs at most {TCG_MAX_APIC_VCPUS}")


CHECKS = [check_emulator, check_genid, check_machine, check_vcpu_count]
