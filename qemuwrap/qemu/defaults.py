"""The devices and values libvirt 9.0 adds to a definition that does not name them (its
post-parse for QEMU on x86): written into the model, so the live definition shows the
whole machine and address assignment places the same devices libvirt places.

In libvirt's order: the machine's default devices (qemuDomainDefAddDefaultDevices:
PS/2 mouse and keyboard, the default USB controller, q35's SATA controller, the PCI
root), then each controller's default model (qemuDomainControllerDefPostParse), then
the controllers that devices imply (virDomainDefAddImplicitControllers: disk buses,
virtio-serial for virtio consoles and channels, CCID for smartcards) and a video card
for graphics without one.  (The default ``<audio>`` is the audio model's own,
``add_default_audio``.)
"""

from __future__ import annotations

from qemuwrap.conf.devices.address import (
    CCIDAddress,
    Device,
    DriveAddress,
    VirtioSerialAddress,
)
from qemuwrap.conf.devices.controller import (
    Controller,
    ControllerModel,
    ControllerType,
    Master,
    find_controller,
)
from qemuwrap.conf.devices.input import Input, InputBus, InputType
from qemuwrap.conf.devices.memballoon import BalloonModel, MemBalloon
from qemuwrap.conf.domain import Domain
from qemuwrap.qemu.capabilities import Capabilities
from qemuwrap.qemu.validate import MachineType

M = ControllerModel
#: q35's default USB controller: the first of these this QEMU has (USB3, then USB2).
Q35_USB_MODELS = ((M.QEMU_XHCI, "qemu-xhci"), (M.NEC_XHCI, "nec-usb-xhci"),
                  (M.ICH9_EHCI1, "ich9-usb-ehci1"))
#: Controllers a disk bus implies (virDomainDefAddDiskControllersForType), in order;
#: the bus by its spelling (the disk model is loaded only for a guest with disks).
DISK_CONTROLLERS = ((ControllerType.SCSI, "scsi"), (ControllerType.FDC, "fdc"),
                    (ControllerType.IDE, "ide"), (ControllerType.SATA, "sata"))


def add_implicit_devices(dom: Domain, machine: MachineType, caps: Capabilities) -> None:
    """Complete ``dom`` in place, as libvirt's post-parse does."""
    add_default_devices(dom, machine, caps)
    set_controller_models(dom)
    if dom.devices.disks:  # libvirt places drives before it adds their controllers
        from qemuwrap.conf.devices.disk import assign_drive_addresses

        assign_drive_addresses(dom)
    add_implicit_controllers(dom)
    set_controller_models(dom)  # implicit SCSI controllers get their model too
    add_implicit_video(dom)


def add_controller(dom: Domain, kind: ControllerType, index: int,
                   model: ControllerModel | None = None) -> Controller | None:
    """virDomainDefMaybeAddController: a controller of ``kind`` and ``index`` unless
    one is there, appended to the list (only the parser sorts it); the new one, or
    None."""
    if find_controller(dom.devices.controllers, kind, index) is not None:
        return None
    ctrl = Controller(type=kind, index=index, model=model)
    dom.devices.controllers.append(ctrl)
    return ctrl


def add_default_devices(dom: Domain, machine: MachineType, caps: Capabilities) -> None:
    """qemuDomainDefAddDefaultDevices for pc and q35."""
    devs = dom.devices
    if dom.os.arch in ("x86_64", "i686"):
        for kind in (InputType.MOUSE, InputType.KEYBOARD):
            if not any(i.type == kind and i.bus == InputBus.PS2 for i in devs.inputs):
                devs.inputs.append(Input(type=kind, bus=InputBus.PS2))
    q35 = machine.family == "q35"
    if devs.memballoon_el is None:
        devs.memballoon_el = MemBalloon(model=BalloonModel.VIRTIO)
    if machine.family in ("pc", "q35"):
        if find_controller(devs.controllers, ControllerType.USB, 0) is None:
            add_default_usb(dom, q35, caps)
        if q35:
            add_controller(dom, ControllerType.SATA, 0)
        root = M.PCIE_ROOT if q35 else M.PCI_ROOT
        # A root of the other model is refused by validation (one line, its element).
        add_controller(dom, ControllerType.PCI, 0, root)


def add_default_usb(dom: Domain, q35: bool, caps: Capabilities) -> None:
    """The machine's USB controller: pc's PIIX3 UHCI (its model is filled in with the
    other model-less ones), q35's best USB controller this QEMU has; an ich9-ehci1
    comes with its three UHCI companions (virDomainDefAddUSBController)."""
    model: ControllerModel | None = None
    if q35:
        found = next((m for m, device in Q35_USB_MODELS if caps.has_device(device)), None)
        if found is None:
            return  # libvirt adds none either
        model = found
    add_controller(dom, ControllerType.USB, 0, model)
    if model == M.ICH9_EHCI1:
        for companion, port in ((M.ICH9_UHCI1, 0), (M.ICH9_UHCI2, 2), (M.ICH9_UHCI3, 4)):
            dom.devices.controllers.append(
                Controller(type=ControllerType.USB, index=0, model=companion,
                           master=Master(startport=port)))


def set_controller_models(dom: Domain) -> None:
    """qemuDomainControllerDefPostParse: a model-less USB controller is PIIX3's UHCI on
    x86; a SCSI controller without a model (or 'auto') is an LSI 53C895A."""
    for ctrl in dom.devices.controllers:
        if ctrl.type == ControllerType.USB and ctrl.model is None:
            ctrl.model = M.PIIX3_UHCI
        elif ctrl.type == ControllerType.SCSI and ctrl.model in (None, M.AUTO):
            ctrl.model = M.LSILOGIC


def add_implicit_controllers(dom: Domain) -> None:
    """virDomainDefAddImplicitControllers: every controller index a disk's address
    names (and all below it), a virtio-serial controller for each one a virtio console
    or channel uses, a CCID controller for smartcards, SCSI controllers for SCSI host
    devices."""
    devs = dom.devices
    for kind, bus in DISK_CONTROLLERS:
        indexes = [d.address.controller for d in devs.disks
                   if d.bus == bus and isinstance(d.address, DriveAddress)]
        for index in range(max(indexes, default=-1) + 1):
            add_controller(dom, kind, index)
    for chan in devs.channels:
        if chan.target.type == "virtio":
            add_controller(dom, ControllerType.VIRTIO_SERIAL, _serial_controller(chan))
    for console in devs.consoles:
        if console.target_type == "virtio":
            add_controller(dom, ControllerType.VIRTIO_SERIAL, _serial_controller(console))
    for card in devs.smartcards:
        if card.address is None:
            # The next slot of CCID controller 0 (virDomainDefMaybeAddSmartcardController).
            slots = [c.address.slot for c in devs.smartcards
                     if isinstance(c.address, CCIDAddress) and c.address.controller == 0]
            card.address = CCIDAddress(controller=0, slot=max(slots, default=-1) + 1)
        index = card.address.controller if isinstance(card.address, CCIDAddress) else 0
        add_controller(dom, ControllerType.CCID, index)
    scsi_hostdevs = [h.address.controller for h in devs.hostdevs
                     if str(h.type) == "scsi" and isinstance(h.address, DriveAddress)]
    for index in range(max(scsi_hostdevs, default=-1) + 1):
        add_controller(dom, ControllerType.SCSI, index)


def _serial_controller(dev: Device) -> int:
    address = dev.address
    return address.controller if isinstance(address, VirtioSerialAddress) else 0


def add_implicit_video(dom: Domain) -> None:
    """virDomainDefAddImplicitVideo: graphics without a <video> get the default card,
    which for QEMU on x86 is a Cirrus VGA (qemuDomainDefaultVideoDevice)."""
    devs = dom.devices
    if devs.graphics and not devs.videos:
        from qemuwrap.conf.devices.video import Video

        devs.videos.append(Video.implicit())
