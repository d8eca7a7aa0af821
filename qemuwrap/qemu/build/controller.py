"""Controllers: USB and SATA host adapters (PCI roots and the built-in IDE need nothing)."""

from __future__ import annotations

from qemuwrap.conf.devices.controller import Controller, ControllerModel, ControllerType
from qemuwrap.conf.xmlmodel import table
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext

USB_DEVICES = table(ControllerModel, {ControllerModel.PIIX3_UHCI: "piix3-usb-uhci",
                                      ControllerModel.QEMU_XHCI: "qemu-xhci",
                                      ControllerModel.NEC_XHCI: "nec-usb-xhci"},
                    not_mapped={ControllerModel.NONE: "no USB controller at all",
                                ControllerModel.PCI_ROOT: "not a USB model",
                                ControllerModel.PCIE_ROOT: "not a USB model",
                                ControllerModel.PIIX3: "not a USB model",
                                ControllerModel.PIIX4: "not a USB model",
                                ControllerModel.AHCI: "not a USB model"})


def controller_device(ctrl: Controller, q35: bool) -> str | None:
    """The -device a controller needs, or None when the machine has it built in."""
    if ctrl.type == ControllerType.USB:
        model = ctrl.model or (ControllerModel.QEMU_XHCI if q35 else ControllerModel.PIIX3_UHCI)
        return USB_DEVICES.get(model)
    if ctrl.type == ControllerType.SATA:
        return None if q35 and ctrl.index == 0 else "ich9-ahci"
    if ctrl.type == ControllerType.VIRTIO_SERIAL:
        return "virtio-serial-pci"
    return None


def build_controllers(ctx: BuildContext) -> None:
    for ctrl in ctx.dom.devices.controllers:
        device = controller_device(ctrl, ctx.q35)
        if device is None:
            continue
        ctx.cmd.add("-device", optstr(device, id=ctrl.alias_name, **ctx.pci_props(ctrl)),
                    ctrl.node)
