"""``<controller>``: PCI roots and bridges, USB, IDE, SATA, SCSI and virtio-serial
controllers."""

from __future__ import annotations

import enum

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.xmlmodel import Int, ParseContext, attr


class ControllerType(enum.StrEnum):
    USB = "usb"
    IDE = "ide"
    SATA = "sata"
    PCI = "pci"
    VIRTIO_SERIAL = "virtio-serial"


class ControllerModel(enum.StrEnum):
    """Every model of every controller type (libvirt keeps one enum per type; one set
    here, checked per type in ``Controller.check``)."""

    PIIX3_UHCI = "piix3-uhci"
    QEMU_XHCI = "qemu-xhci"
    NEC_XHCI = "nec-xhci"
    NONE = "none"
    PCI_ROOT = "pci-root"
    PCIE_ROOT = "pcie-root"
    PIIX3 = "piix3"
    PIIX4 = "piix4"
    AHCI = "ahci"


MODELS_BY_TYPE: dict[ControllerType, frozenset[ControllerModel]] = {
    ControllerType.USB: frozenset({ControllerModel.PIIX3_UHCI, ControllerModel.QEMU_XHCI,
                                   ControllerModel.NEC_XHCI, ControllerModel.NONE}),
    ControllerType.PCI: frozenset({ControllerModel.PCI_ROOT, ControllerModel.PCIE_ROOT}),
    ControllerType.IDE: frozenset({ControllerModel.PIIX3, ControllerModel.PIIX4}),
    ControllerType.SATA: frozenset({ControllerModel.AHCI}),
    ControllerType.VIRTIO_SERIAL: frozenset(),
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
