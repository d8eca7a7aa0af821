"""``<controller>``: PCI roots and bridges, USB, IDE, SATA, SCSI and virtio-serial
controllers."""

from __future__ import annotations

import enum

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.xmlmodel import Int, ParseContext, attr


class ControllerType(enum.StrEnum):
    IDE = "ide"
    FDC = "fdc"
    SCSI = "scsi"
    SATA = "sata"
    VIRTIO_SERIAL = "virtio-serial"
    CCID = "ccid"
    USB = "usb"
    PCI = "pci"
    XENBUS = "xenbus"
    ISA = "isa"


class ControllerModel(enum.StrEnum):
    """Every model of every controller type (libvirt keeps one enum per type; one set
    here, checked per type in ``Controller.check``)."""

    PCI_ROOT = "pci-root"
    PCIE_ROOT = "pcie-root"
    PCI_BRIDGE = "pci-bridge"
    DMI_TO_PCI_BRIDGE = "dmi-to-pci-bridge"
    PCIE_ROOT_PORT = "pcie-root-port"
    PCIE_SWITCH_UPSTREAM_PORT = "pcie-switch-upstream-port"
    PCIE_SWITCH_DOWNSTREAM_PORT = "pcie-switch-downstream-port"
    PCI_EXPANDER_BUS = "pci-expander-bus"
    PCIE_EXPANDER_BUS = "pcie-expander-bus"
    PCIE_TO_PCI_BRIDGE = "pcie-to-pci-bridge"
    PIIX3_UHCI = "piix3-uhci"
    PIIX4_UHCI = "piix4-uhci"
    EHCI = "ehci"
    ICH9_EHCI1 = "ich9-ehci1"
    ICH9_UHCI1 = "ich9-uhci1"
    ICH9_UHCI2 = "ich9-uhci2"
    ICH9_UHCI3 = "ich9-uhci3"
    VT82C686B_UHCI = "vt82c686b-uhci"
    PCI_OHCI = "pci-ohci"
    NEC_XHCI = "nec-xhci"
    QUSB1 = "qusb1"
    QUSB2 = "qusb2"
    QEMU_XHCI = "qemu-xhci"
    NONE = "none"
    AUTO = "auto"
    BUSLOGIC = "buslogic"
    LSILOGIC = "lsilogic"
    LSISAS1068 = "lsisas1068"
    VMPVSCSI = "vmpvscsi"
    IBMVSCSI = "ibmvscsi"
    VIRTIO_SCSI = "virtio-scsi"
    LSISAS1078 = "lsisas1078"
    VIRTIO_TRANSITIONAL = "virtio-transitional"
    VIRTIO_NON_TRANSITIONAL = "virtio-non-transitional"
    NCR53C90 = "ncr53c90"
    AM53C974 = "am53c974"
    DC390 = "dc390"
    PIIX3 = "piix3"
    PIIX4 = "piix4"
    ICH6 = "ich6"
    AHCI = "ahci"


M = ControllerModel
#: The models libvirt knows for each controller type.
MODELS_BY_TYPE: dict[ControllerType, frozenset[ControllerModel]] = {
    ControllerType.PCI: frozenset({M.PCI_ROOT, M.PCIE_ROOT, M.PCI_BRIDGE, M.DMI_TO_PCI_BRIDGE,
                                   M.PCIE_ROOT_PORT, M.PCIE_SWITCH_UPSTREAM_PORT,
                                   M.PCIE_SWITCH_DOWNSTREAM_PORT, M.PCI_EXPANDER_BUS,
                                   M.PCIE_EXPANDER_BUS, M.PCIE_TO_PCI_BRIDGE}),
    ControllerType.USB: frozenset({M.PIIX3_UHCI, M.PIIX4_UHCI, M.EHCI, M.ICH9_EHCI1,
                                   M.ICH9_UHCI1, M.ICH9_UHCI2, M.ICH9_UHCI3, M.VT82C686B_UHCI,
                                   M.PCI_OHCI, M.NEC_XHCI, M.QUSB1, M.QUSB2, M.QEMU_XHCI,
                                   M.NONE}),
    ControllerType.SCSI: frozenset({M.AUTO, M.BUSLOGIC, M.LSILOGIC, M.LSISAS1068, M.VMPVSCSI,
                                    M.IBMVSCSI, M.VIRTIO_SCSI, M.LSISAS1078,
                                    M.VIRTIO_TRANSITIONAL, M.VIRTIO_NON_TRANSITIONAL,
                                    M.NCR53C90, M.AM53C974, M.DC390}),
    ControllerType.IDE: frozenset({M.PIIX3, M.PIIX4, M.ICH6}),
    ControllerType.SATA: frozenset({M.AHCI}),
    ControllerType.VIRTIO_SERIAL: frozenset({M.VIRTIO_TRANSITIONAL, M.VIRTIO_NON_TRANSITIONAL}),
    ControllerType.FDC: frozenset(),
    ControllerType.CCID: frozenset(),
    ControllerType.XENBUS: frozenset(),
    ControllerType.ISA: frozenset(),
}


class Controller(PCIDevice):
    TAG = "controller"
    type: ControllerType = attr(ControllerType, required=True)
    index: int = attr(Int(0, 255), default=0)
    model: ControllerModel | None = attr(ControllerModel)

    def address_types(self) -> tuple[str, ...]:
        return () if self.type == ControllerType.PCI else ("pci",)

    def check(self, ctx: ParseContext) -> None:
        allowed = MODELS_BY_TYPE[self.type]
        if self.model is not None and self.model not in allowed:
            names = ", ".join(f"'{m}'" for m in sorted(allowed))
            raise self.error(f"unsupported model='{self.model}' for a type='{self.type}' "
                             f"controller (supported: {names})")
        if self.type == ControllerType.PCI and self.model is None:
            raise self.error("missing attribute 'model'")
