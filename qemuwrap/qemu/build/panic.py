"""Panic notifiers (libvirt's qemuBuildPanicCommandLine): the ISA pvpanic port and the
PCI pvpanic device; Hyper-V's crash MSRs are a CPU flag (:func:`panic_cpu_flags`)."""

from __future__ import annotations

from qemuwrap.conf.devices.panic import PanicModel
from qemuwrap.conf.domain import Domain
from qemuwrap.conf.xmlmodel import table
from qemuwrap.qemu.build import BuildContext
from qemuwrap.qemu.build.props import exact_opts

PANIC_DEVICES = table(PanicModel, {PanicModel.ISA: "pvpanic", PanicModel.PVPANIC: "pvpanic-pci"},
                      not_mapped={PanicModel.HYPERV: "a -cpu flag (panic_cpu_flags)",
                                  PanicModel.PSERIES: "pSeries only: refused",
                                  PanicModel.S390: "s390 only: refused"})


def panic_cpu_flags(dom: Domain) -> list[str]:
    """``-cpu`` flags the panic devices need: ``hv-crash`` for model 'hyperv' (libvirt
    adds it in qemuBuildCpuCommandLine)."""
    return ["hv-crash"] if any(p.model == PanicModel.HYPERV for p in dom.devices.panics) \
        else []


def build_panics(ctx: BuildContext) -> None:
    for panic in ctx.dom.devices.panics:
        if panic.model == PanicModel.ISA:
            iobase = panic.iobase
            ctx.cmd.add("-device", exact_opts("pvpanic", [
                ("ioport", f"{iobase:#x}" if iobase is not None else None)]), panic.node)
        elif panic.model == PanicModel.PVPANIC:
            ctx.cmd.add("-device", exact_opts("pvpanic-pci", [
                ("id", panic.alias_name), *ctx.pci_props(panic).items()]), panic.node)
