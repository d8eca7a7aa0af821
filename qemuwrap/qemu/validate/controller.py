"""Checks of the controllers against the machine and the binary (libvirt's
qemuValidateDomainDeviceDefController and the controller rules of its post-parse)."""

from __future__ import annotations

from qemuwrap.conf.devices.address import PCIAddress
from qemuwrap.conf.devices.controller import (
    Controller,
    ControllerModel,
    ControllerType,
    PCIModel,
    PCIModelName,
)
from qemuwrap.hints import TYPE_CHECKING
from qemuwrap.qemu.build.controller import controller_device

if TYPE_CHECKING:
    from qemuwrap.qemu.validate import Validation

M = ControllerModel
P = PCIModel
N = PCIModelName
#: QEMU's own name for a device libvirt asks for by its alias.
CANONICAL = {"lsi": "lsi53c895a", "ahci": "ich9-ahci"}
#: Which <model name>s each PCI controller model may be built as.
MODEL_NAMES = {P.PCI_BRIDGE: {N.PCI_BRIDGE}, P.DMI_TO_PCI_BRIDGE: {N.I82801B11_BRIDGE},
               P.PCIE_ROOT_PORT: {N.PCIE_ROOT_PORT, N.IOH3420},
               P.PCIE_SWITCH_UPSTREAM_PORT: {N.X3130_UPSTREAM},
               P.PCIE_SWITCH_DOWNSTREAM_PORT: {N.XIO3130_DOWNSTREAM},
               P.PCI_EXPANDER_BUS: {N.PXB}, P.PCIE_EXPANDER_BUS: {N.PXB_PCIE},
               P.PCIE_TO_PCI_BRIDGE: {N.PCIE_PCI_BRIDGE}}
#: Why some models never run here.
REFUSED_MODELS = {
    M.QUSB1: "is Xen's paravirtual USB controller",
    M.QUSB2: "is Xen's paravirtual USB controller",
    M.BUSLOGIC: "has no QEMU device (QEMU emulates no BusLogic adapter)",
    M.IBMVSCSI: "is pSeries' (POWER) virtual SCSI adapter",
    M.NCR53C90: "is built into SPARC and MIPS boards, not x86 machines",
}
REFUSED_TYPES = {
    ControllerType.XENBUS: "is Xen's bus for paravirtual devices",
    ControllerType.ISA: "is an ISA bus controller of non-x86 machines (x86 machines "
                        "have theirs built in)",
}
XHCI_MAX_PORTS = 15
PORT_ONLY = (P.PCIE_ROOT_PORT, P.PCIE_SWITCH_DOWNSTREAM_PORT)


def check_controllers(v: Validation) -> None:
    ctrls = v.dom.devices.controllers
    usb_models = [c.model for c in ctrls if c.type == ControllerType.USB]
    if M.NONE in usb_models and len(usb_models) > 1:
        ctrl = next(c for c in ctrls if c.type == ControllerType.USB and c.model != M.NONE)
        v.refuse(ctrl, "USB is disabled for this domain (a USB controller of model "
                       "'none'): no other USB controller can be added")
    for ctrl in ctrls:
        if ctrl.type in REFUSED_TYPES:
            v.refuse(ctrl, f"a type='{ctrl.type}' controller {REFUSED_TYPES[ctrl.type]}")
            continue
        if ctrl.model in REFUSED_MODELS:
            v.refuse(ctrl, f"controller model '{ctrl.model}' {REFUSED_MODELS[ctrl.model]}")
            continue
        kind = ctrl.type
        if kind == ControllerType.PCI:
            check_pci(v, ctrl)
        elif kind == ControllerType.IDE:
            if ctrl.node is None:
                continue  # implied by IDE disks, which are refused themselves
            if v.q35:
                v.refuse(ctrl, f"machine '{v.machine.name}' has no IDE controller (use "
                               "SATA)")
                continue
            if ctrl.index != 0:
                v.refuse(ctrl, f"machine '{v.machine.name}' has only one IDE controller "
                               "(index 0)")
                continue
        elif kind == ControllerType.FDC and ctrl.index != 0:
            v.refuse(ctrl, "a machine has only one floppy controller (index 0)")
            continue
        elif kind == ControllerType.USB:
            check_usb(v, ctrl)
        if ctrl.driver is not None and ctrl.driver.iothread is not None:
            check_iothread(v, ctrl)
        if str(ctrl.model).startswith("virtio") or kind == ControllerType.VIRTIO_SERIAL:
            from qemuwrap.qemu.validate.misc import check_virtio_iommu

            check_virtio_iommu(v, ctrl, ctrl.model)
        device = controller_device(ctrl, v.q35)
        if device is not None:
            v.require_device(CANONICAL.get(device, device), ctrl)


def check_iothread(v: Validation, ctrl: Controller) -> None:
    """``<driver iothread='N'>`` names one of the domain's I/O threads (virtio-scsi)."""
    assert ctrl.driver is not None and ctrl.driver.iothread is not None
    if not (ctrl.type == ControllerType.SCSI and str(ctrl.model).startswith("virtio")):
        v.refuse(ctrl.driver, "iothread is only for virtio-scsi controllers")
        return
    ids = getattr(v.dom, "iothreadids", None)  # the domain's <iothreads> (area C's model)
    if not ids or ctrl.driver.iothread not in ids:
        v.refuse(ctrl.driver, f"iothread {ctrl.driver.iothread} is not one of the domain's "
                              "I/O threads (<iothreads>, <iothreadids>)")


def check_usb(v: Validation, ctrl: Controller) -> None:
    if ctrl.ports is not None:
        if ctrl.model not in (M.NEC_XHCI, M.QEMU_XHCI):
            v.refuse(ctrl, f"a '{ctrl.model}' USB controller has a fixed number of ports "
                           "(attribute 'ports' is for nec-xhci and qemu-xhci)")
        elif ctrl.ports > XHCI_MAX_PORTS:
            v.refuse(ctrl, f"a '{ctrl.model}' USB controller has at most {XHCI_MAX_PORTS} "
                           "ports")
    if ctrl.master is not None:
        masters = [c for c in v.dom.devices.controllers
                   if c.type == ControllerType.USB and c.index == ctrl.index
                   and c.master is None]
        if not masters:
            v.refuse(ctrl, f"USB companion controller (index {ctrl.index}) has no master "
                           f"controller with that index (an ich9-ehci1)")


def check_pci(v: Validation, ctrl: Controller) -> None:
    model = ctrl.pci_model
    assert model is not None
    root = P.PCIE_ROOT if v.q35 else P.PCI_ROOT
    if model in (P.PCI_ROOT, P.PCIE_ROOT):
        if model != root:
            v.refuse(ctrl, f"the PCI controller with index 0 of machine "
                           f"'{v.machine.name}' is model '{root}', not '{model}'")
        if ctrl.address is not None:
            v.refuse(ctrl.address, f"a '{model}' controller is the machine's own bus and "
                                   "takes no address")
        return
    if ctrl.index == 0:
        v.refuse(ctrl, f"PCI controller index 0 is the machine's root bus ('{root}'), "
                       f"not a '{model}'")
        return
    if ctrl.pcihole64 is not None:
        v.refuse(ctrl.pcihole64, "a 64-bit PCI hole is set on the root bus (pci-root or "
                                 "pcie-root) only")
    if model == P.PCI_EXPANDER_BUS and not v.machine.family == "pc":
        v.refuse(ctrl, "pci-expander-bus controllers are only for pc (i440fx) machines")
    if model == P.PCIE_EXPANDER_BUS and not v.q35:
        v.refuse(ctrl, "pcie-expander-bus controllers are only for q35 machines")
    name = ctrl.model_name.name if ctrl.model_name is not None else None
    if name is not None and name not in MODEL_NAMES.get(model, ()):
        v.refuse(ctrl.model_name, f"model name '{name}' is not a '{model}' controller")
    target = ctrl.target
    if target is not None:
        if target.index is not None:
            v.refuse(target, "<target index> numbers pSeries PCI host bridges; an x86 "
                             "machine has one PCI root")
        if target.memReserve is not None:
            v.refuse(target, "<target memReserve> is bhyve's: QEMU's PCI controllers "
                             "take no memory reservation from libvirt")
        if target.hotplug is not None and model not in PORT_ONLY:
            v.refuse(target, f"attribute 'hotplug' is for pcie-root-port and "
                             f"pcie-switch-downstream-port controllers, not '{model}'")
        node = target.numa.value if target.numa is not None else None
        if node is not None:
            if model not in (P.PCI_EXPANDER_BUS, P.PCIE_EXPANDER_BUS):
                v.refuse(target.numa, "a NUMA node is for expander buses only")
            elif node >= numa_cells(v):
                v.refuse(target.numa, f"NUMA node {node} is not in the domain's "
                                      f"<cpu><numa> ({numa_cells(v)} cells)")
    addr = ctrl.address
    if isinstance(addr, PCIAddress) and model == P.PCI_BRIDGE and addr.bus >= ctrl.index \
            and (addr.domain or addr.bus or addr.slot):
        v.refuse(ctrl, f"a pci-bridge at index {ctrl.index} sits on bus {addr.bus}: its "
                       "index must be larger than its bus")


def numa_cells(v: Validation) -> int:
    """The guest's NUMA cells (the <cpu><numa> model is another area's; none without)."""
    numa = getattr(v.dom.cpu, "numa", None) if v.dom.cpu is not None else None
    cells = getattr(numa, "cells", None)
    return len(cells) if cells is not None else 0


CHECKS = [check_controllers]
