"""Controllers: PCI bridges and ports, USB, SCSI, SATA and virtio-serial host adapters,
and the CCID reader (libvirt's qemuBuildControllersCommandLine and
qemuBuildControllerDevProps).  The machine's own PCI root, IDE (pc) and SATA (q35)
controllers need no option; a 64-bit PCI hole is a ``-global`` of the root."""

from __future__ import annotations

from qemuwrap.conf.devices.controller import (
    Controller,
    ControllerType,
    PCIModel,
    PCIModelName,
    SCSIModel,
    USBModel,
    VirtioSerialModel,
)
from qemuwrap.conf.xmlmodel import table
from qemuwrap.qemu.build import BuildContext
from qemuwrap.qemu.build.props import exact_opts, on_off, virtio_props

#: The QEMU device of each ``<model name>`` (the names are QEMU's).
_PCI_NAMES: dict[PCIModelName, str] = {n: str(n) for n in PCIModelName
                                       if n != PCIModelName.SPAPR_PCI_HOST_BRIDGE}
PCI_DEVICES = table(PCIModelName, _PCI_NAMES,
                    not_mapped={PCIModelName.SPAPR_PCI_HOST_BRIDGE: "pSeries only, refused"})
USB_DEVICES = table(USBModel, {
    USBModel.PIIX3_UHCI: "piix3-usb-uhci", USBModel.PIIX4_UHCI: "piix4-usb-uhci",
    USBModel.EHCI: "usb-ehci", USBModel.ICH9_EHCI1: "ich9-usb-ehci1",
    USBModel.ICH9_UHCI1: "ich9-usb-uhci1", USBModel.ICH9_UHCI2: "ich9-usb-uhci2",
    USBModel.ICH9_UHCI3: "ich9-usb-uhci3", USBModel.VT82C686B_UHCI: "vt82c686b-usb-uhci",
    USBModel.PCI_OHCI: "pci-ohci", USBModel.NEC_XHCI: "nec-usb-xhci",
    USBModel.QEMU_XHCI: "qemu-xhci"},
    not_mapped={USBModel.NONE: "no USB controller at all",
                USBModel.QUSB1: "Xen's paravirtual USB, refused",
                USBModel.QUSB2: "Xen's paravirtual USB, refused"})
SCSI_DEVICES = table(SCSIModel, {
    SCSIModel.LSILOGIC: "lsi", SCSIModel.LSISAS1068: "mptsas1068",
    SCSIModel.LSISAS1078: "megasas", SCSIModel.VMPVSCSI: "pvscsi",
    SCSIModel.AM53C974: "am53c974", SCSIModel.DC390: "dc390",
    SCSIModel.VIRTIO_SCSI: "virtio-scsi-pci",
    SCSIModel.VIRTIO_TRANSITIONAL: "virtio-scsi-pci-transitional",
    SCSIModel.VIRTIO_NON_TRANSITIONAL: "virtio-scsi-pci-non-transitional"},
    not_mapped={SCSIModel.AUTO: "made lsilogic by the defaults",
                SCSIModel.BUSLOGIC: "QEMU has no BusLogic adapter, refused",
                SCSIModel.IBMVSCSI: "pSeries only, refused",
                SCSIModel.NCR53C90: "built into non-x86 boards, refused"})
VIRTIO_SERIAL_DEVICES = table(VirtioSerialModel, {
    VirtioSerialModel.VIRTIO: "virtio-serial-pci",
    VirtioSerialModel.VIRTIO_TRANSITIONAL: "virtio-serial-pci-transitional",
    VirtioSerialModel.VIRTIO_NON_TRANSITIONAL: "virtio-serial-pci-non-transitional"})
#: libvirt's order of controller types on the command line (CCID comes later, after
#: the USB hubs, because it plugs into a USB port).
TYPE_ORDER = (ControllerType.PCI, ControllerType.USB, ControllerType.SCSI,
              ControllerType.IDE, ControllerType.SATA, ControllerType.VIRTIO_SERIAL)
HOLE_HOSTS = {PCIModel.PCI_ROOT: "i440FX-pcihost", PCIModel.PCIE_ROOT: "q35-pcihost"}


def built_in(ctrl: Controller, q35: bool) -> bool:
    """Part of the machine: the PCI root, pc's IDE and q35's SATA controller 0
    (qemuBuildSkipController)."""
    if ctrl.is_pci_root:
        return True
    if ctrl.type == ControllerType.SATA and ctrl.index == 0 and q35:
        return True
    return ctrl.type == ControllerType.IDE and ctrl.index == 0 and not q35


def controller_device(ctrl: Controller, q35: bool) -> str | None:
    """The QEMU device a controller is built as (None: built in, or no device)."""
    if built_in(ctrl, q35):
        return None
    kind = ctrl.type
    if kind == ControllerType.PCI:
        name = ctrl.model_name.name if ctrl.model_name is not None else None
        return PCI_DEVICES.get(name) if name is not None else None
    if kind == ControllerType.USB:
        return USB_DEVICES.get(ctrl.usb_model) if ctrl.usb_model is not None else None
    if kind == ControllerType.SCSI:
        return SCSI_DEVICES.get(ctrl.scsi_model) if ctrl.scsi_model is not None else None
    if kind == ControllerType.VIRTIO_SERIAL:
        return VIRTIO_SERIAL_DEVICES[ctrl.serial_model or VirtioSerialModel.VIRTIO]
    if kind == ControllerType.SATA:
        return "ahci"
    if kind == ControllerType.CCID:
        return "usb-ccid"
    return None  # fdc and ide beyond the machine's: refused by validation


def controller_props(ctx: BuildContext, ctrl: Controller, device: str) -> dict[str, object]:
    """The properties of one controller's -device, in libvirt's order."""
    kind, target = ctrl.type, ctrl.target
    props: dict[str, object] = {}
    if kind == ControllerType.PCI:
        model = ctrl.pci_model
        if model == PCIModel.PCI_BRIDGE:
            props = {"chassis_nr": target.chassisNr if target else None,
                     "id": ctrl.alias_name}
        elif model in (PCIModel.PCI_EXPANDER_BUS, PCIModel.PCIE_EXPANDER_BUS):
            props = {"bus_nr": target.busNr if target else None, "id": ctrl.alias_name,
                     "numa_node": ctrl.numa_node}
        elif model in (PCIModel.PCIE_ROOT_PORT, PCIModel.PCIE_SWITCH_DOWNSTREAM_PORT):
            props = {"port": target.port if target else None,
                     "chassis": target.chassis if target else None, "id": ctrl.alias_name,
                     "hotplug": on_off(target.hotplug) if target else None}
        else:
            props = {"id": ctrl.alias_name}
    elif kind == ControllerType.USB:
        if ctrl.ports is not None:
            props = {"p2": ctrl.ports, "p3": ctrl.ports}
        if ctrl.master is not None:
            master = ctx.controller_alias(ControllerType.USB, ctrl.index)
            props |= {"masterbus": f"{master}.0", "firstport": ctrl.master.startport}
        else:
            props["id"] = ctrl.alias_name
    elif kind in (ControllerType.SCSI, ControllerType.VIRTIO_SERIAL) and \
            device.startswith("virtio"):
        props = {**virtio_props(ctrl.driver), "id": ctrl.alias_name}
        d = ctrl.driver
        if kind == ControllerType.SCSI and d is not None:
            props |= {"iothread": f"iothread{d.iothread}" if d.iothread else None,
                      "num_queues": d.queues, "cmd_per_lun": d.cmd_per_lun,
                      "max_sectors": d.max_sectors, "ioeventfd": on_off(d.ioeventfd)}
        elif kind == ControllerType.VIRTIO_SERIAL:
            props |= {"max_ports": ctrl.ports, "vectors": ctrl.vectors}
    else:
        props = {"id": ctrl.alias_name}
    return props | ctx.address_props(ctrl)


def build_controller(ctx: BuildContext, ctrl: Controller) -> None:
    device = controller_device(ctrl, ctx.q35)
    if device is None:
        return
    why = ("added by address assignment, where libvirt adds it" if ctrl.type == "pci"
           else f"libvirt's implicit {ctrl.type} controller")
    ctx.cmd.add("-device", exact_opts(device, controller_props(ctx, ctrl, device).items()),
                ctrl.node, why=None if ctrl.node is not None else why)


def build_global_controllers(ctx: BuildContext) -> None:
    """``-global i440FX-pcihost.pci-hole64-size=NK`` (or q35-pcihost) for a root's
    ``<pcihole64>`` (qemuBuildGlobalControllerCommandLine)."""
    for ctrl in ctx.dom.devices.controllers:
        model = ctrl.pci_model
        if ctrl.pcihole64 is not None and model in HOLE_HOSTS:
            ctx.cmd.add("-global", f"{HOLE_HOSTS[model]}.pci-hole64-size="
                                   f"{ctrl.pcihole64.kib}K", ctrl.node_of("pcihole64"))


def build_controllers(ctx: BuildContext) -> None:
    """PCI, USB, SCSI, IDE, SATA and virtio-serial controllers, each type in the order
    of the definition (the model's order: by index)."""
    for kind in TYPE_ORDER:
        for ctrl in ctx.dom.devices.controllers:
            if ctrl.type == kind:
                build_controller(ctx, ctrl)


def build_ccid_controllers(ctx: BuildContext) -> None:
    """CCID readers, after the USB hubs (they plug into USB ports)."""
    for ctrl in ctx.dom.devices.controllers:
        if ctrl.type == ControllerType.CCID:
            build_controller(ctx, ctrl)
