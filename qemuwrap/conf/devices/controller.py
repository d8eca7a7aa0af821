"""``<controller>``: PCI roots, bridges and ports, USB, IDE, SATA, SCSI, FDC, CCID and
virtio-serial controllers (libvirt's virDomainControllerDef).

The model keeps one set of model names for every controller type (the ``model``
attribute), checks per type which are valid, and offers the per-type view the builders
and the address code use (``usb_model``, ``scsi_model``, ...).  Indexes left out of the
XML are filled in here as libvirt fills them in (``assign_indexes``): the first unused
index of the type, except that a USB2 companion joins the controller before it.
"""

from __future__ import annotations

import enum

from qemuwrap.conf.devices.address import PCIAddress, PCIDevice, USBAddress
from qemuwrap.conf.devices.virtio import VirtioDriver
from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import (
    ON_OFF,
    Element,
    Int,
    ParseContext,
    Token,
    attr,
    child,
    text,
)
from qemuwrap.errors import XMLError


class ControllerType(ValueSet):
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


class ControllerModel(ValueSet):
    """Every model of every controller type (libvirt keeps one enum per type; one set
    here, checked per type in ``Controller.check``, with the per-type enums below)."""

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
    VIRTIO = "virtio"
    VIRTIO_TRANSITIONAL = "virtio-transitional"
    VIRTIO_NON_TRANSITIONAL = "virtio-non-transitional"
    NCR53C90 = "ncr53c90"
    AM53C974 = "am53c974"
    DC390 = "dc390"
    PIIX3 = "piix3"
    PIIX4 = "piix4"
    ICH6 = "ich6"
    AHCI = "ahci"


# The per-type value sets (libvirt's virDomainControllerModel{PCI,USB,SCSI,...}): the
# builders' tables are keyed by these, so each table covers exactly one type's models.
class PCIModel(ValueSet):
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


class USBModel(ValueSet):
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


class SCSIModel(ValueSet):
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


class VirtioSerialModel(ValueSet):
    VIRTIO = "virtio"
    VIRTIO_TRANSITIONAL = "virtio-transitional"
    VIRTIO_NON_TRANSITIONAL = "virtio-non-transitional"


class IDEModel(ValueSet):
    PIIX3 = "piix3"
    PIIX4 = "piix4"
    ICH6 = "ich6"


class SATAModel(ValueSet):
    AHCI = "ahci"


#: The per-type enum of each controller type (types without models have none).
MODEL_ENUMS: dict[ControllerType, type[enum.StrEnum]] = {
    ControllerType.PCI: PCIModel, ControllerType.USB: USBModel,
    ControllerType.SCSI: SCSIModel, ControllerType.VIRTIO_SERIAL: VirtioSerialModel,
    ControllerType.IDE: IDEModel, ControllerType.SATA: SATAModel,
}


class PCIModelName(ValueSet):
    """``<model name>``: the QEMU device behind a PCI controller model."""

    PCI_BRIDGE = "pci-bridge"
    I82801B11_BRIDGE = "i82801b11-bridge"
    IOH3420 = "ioh3420"
    X3130_UPSTREAM = "x3130-upstream"
    XIO3130_DOWNSTREAM = "xio3130-downstream"
    PXB = "pxb"
    PXB_PCIE = "pxb-pcie"
    PCIE_ROOT_PORT = "pcie-root-port"
    SPAPR_PCI_HOST_BRIDGE = "spapr-pci-host-bridge"
    PCIE_PCI_BRIDGE = "pcie-pci-bridge"


# ControllerModel -> the per-type member of the same spelling (the views below).
_AS_PCI: dict[ControllerModel | None, PCIModel] = {
    ControllerModel(m.value): m for m in PCIModel}
_AS_USB: dict[ControllerModel | None, USBModel] = {
    ControllerModel(m.value): m for m in USBModel}
_AS_SCSI: dict[ControllerModel | None, SCSIModel] = {
    ControllerModel(m.value): m for m in SCSIModel}
_AS_SERIAL: dict[ControllerModel | None, VirtioSerialModel] = {
    ControllerModel(m.value): m for m in VirtioSerialModel}

#: The USB2 companion family: an EHCI with up to three UHCIs on one slot, one index.
USB2_MODELS = frozenset({ControllerModel.ICH9_EHCI1, ControllerModel.ICH9_UHCI1,
                         ControllerModel.ICH9_UHCI2, ControllerModel.ICH9_UHCI3})
USB2_COMPANIONS = {ControllerModel.ICH9_UHCI1: 0, ControllerModel.ICH9_UHCI2: 2,
                   ControllerModel.ICH9_UHCI3: 4}
#: Roots are the machine's own buses: no address, no index but 0.
PCI_ROOTS = frozenset({ControllerModel.PCI_ROOT, ControllerModel.PCIE_ROOT})


class ControllerModelName(Element):
    TAG = "model"
    name: PCIModelName = attr(PCIModelName, required=True)


class NUMANode(Element):
    TAG = "node"
    value: int = text(Int(0, 2**31 - 1), required=True)


class ControllerTarget(Element):
    """``<target>`` of a PCI controller: the guest-visible numbers of bridges and ports."""

    TAG = "target"
    chassisNr: int | None = attr(Int(1, 255))  # noqa: N815 - libvirt's XML names
    chassis: int | None = attr(Int(0, 255))
    port: int | None = attr(Int(0, 255, base=0, hex_format=0))
    busNr: int | None = attr(Int(1, 254))  # noqa: N815
    index: int | None = attr(Int(0, 31))
    hotplug: bool | None = attr(ON_OFF)
    memReserve: int | None = attr(Int(0, 2**63 - 1))  # noqa: N815
    numa: NUMANode | None = child(NUMANode)

    def empty(self) -> bool:
        return all(v is None for _k, v in self.values())


class PCIHole64(Element):
    """``<pcihole64 unit=...>``: the 64-bit PCI hole of a root bus, kept in KiB."""

    TAG = "pcihole64"
    unit: str | None = attr(Token(r"[A-Za-z]+", what="unit"))
    value: int = text(Int(0, 2**63 - 1), required=True)

    def check(self, ctx: ParseContext) -> None:
        from qemuwrap.conf.domain import memory_unit_bytes

        if self.unit is None or self.unit == "KiB":
            self.unit = "KiB"
            return
        scale = memory_unit_bytes(self.unit)
        if scale is None:
            raise self.error(f"unsupported unit='{self.unit}'")
        self.value = -(-self.value * scale // 1024)
        self.unit = "KiB"

    @property
    def kib(self) -> int:
        return self.value


class ControllerDriver(VirtioDriver):
    """``<driver>``: virtio-scsi's queues, limits and I/O thread, besides every virtio
    device's transport options."""

    TAG = "driver"
    queues: int | None = attr(Int(1, 2**31 - 1))
    cmd_per_lun: int | None = attr(Int(1, 2**31 - 1))
    max_sectors: int | None = attr(Int(1, 2**31 - 1))
    ioeventfd: bool | None = attr(ON_OFF)
    iothread: int | None = attr(Int(1, 2**31 - 1))


class Master(Element):
    """``<master startport>``: a USB companion's first port on its EHCI master."""

    TAG = "master"
    startport: int = attr(Int(0, 255), required=True)


#: What index= spells when the XML leaves it out (filled in by ``assign_indexes``).
UNSET = -1


class Controller(PCIDevice):
    TAG = "controller"
    type: ControllerType = attr(ControllerType, required=True)
    index: int = attr(Int(0, 255), default=UNSET)
    model: ControllerModel | None = attr(ControllerModel)
    ports: int | None = attr(Int(0, 255))
    vectors: int | None = attr(Int(0, 1024))
    maxGrantFrames: int | None = attr(Int(1, 2**31 - 1))  # noqa: N815
    maxEventChannels: int | None = attr(Int(1, 2**31 - 1))  # noqa: N815
    model_name: ControllerModelName | None = child(ControllerModelName)
    target: ControllerTarget | None = child(ControllerTarget)
    pcihole64: PCIHole64 | None = child(PCIHole64)
    driver: ControllerDriver | None = child(ControllerDriver)
    master: Master | None = child(Master)

    def address_types(self) -> tuple[str, ...]:
        if self.type == ControllerType.PCI and self.model in PCI_ROOTS:
            return ()
        if self.type == ControllerType.CCID:
            return ("usb",)
        if self.type in (ControllerType.FDC, ControllerType.ISA, ControllerType.XENBUS):
            return ("isa", "pci")
        return ("pci",)

    def check(self, ctx: ParseContext) -> None:
        enum_cls = MODEL_ENUMS.get(self.type)
        if self.model is not None:
            if enum_cls is None:
                raise self.error(f"a type='{self.type}' controller has no model")
            if self.model.value not in enum_cls.__members__.values():
                names = ", ".join(f"'{m}'" for m in enum_cls)
                raise self.error(f"unsupported model='{self.model}' for a type='{self.type}' "
                                 f"controller (supported: {names})")
        if self.type == ControllerType.PCI:
            if self.model is None:
                raise self.error("missing attribute 'model'")
            if self.model in PCI_ROOTS and self.index not in (0, UNSET):
                raise self.error(f"a '{self.model}' controller must have index 0")
        elif self.model_name is not None or self.target is not None \
                or self.pcihole64 is not None:
            what = "model" if self.model_name else ("target" if self.target else "pcihole64")
            raise self.error(f"<{what}> is only for type='pci' controllers")
        if self.ports is not None and self.type not in (ControllerType.USB,
                                                        ControllerType.VIRTIO_SERIAL):
            raise self.error("attribute 'ports' is only for usb and virtio-serial "
                             "controllers")
        if self.vectors is not None and self.type != ControllerType.VIRTIO_SERIAL:
            raise self.error("attribute 'vectors' is only for virtio-serial controllers")
        if self.master is not None and self.type != ControllerType.USB:
            raise self.error("<master> is only for USB companion controllers")

    # -- views ------------------------------------------------------------------------
    @property
    def pci_model(self) -> PCIModel | None:
        return _AS_PCI.get(self.model) if self.type == ControllerType.PCI else None

    @property
    def usb_model(self) -> USBModel | None:
        return _AS_USB.get(self.model) if self.type == ControllerType.USB else None

    @property
    def scsi_model(self) -> SCSIModel | None:
        return _AS_SCSI.get(self.model) if self.type == ControllerType.SCSI else None

    @property
    def serial_model(self) -> VirtioSerialModel | None:
        return _AS_SERIAL.get(self.model) if self.type == ControllerType.VIRTIO_SERIAL \
            else None

    @property
    def is_pci_root(self) -> bool:
        return self.type == ControllerType.PCI and self.model in PCI_ROOTS

    @property
    def is_usb2(self) -> bool:
        return self.type == ControllerType.USB and self.model in USB2_MODELS

    @property
    def is_companion(self) -> bool:
        """A UHCI that serves its EHCI master's ports (no bus of its own)."""
        return self.type == ControllerType.USB and self.master is not None

    @property
    def opts(self) -> ControllerTarget:
        """The ``<target>`` (made on first use: libvirt fills in chassis and ports)."""
        if self.target is None:
            self.target = ControllerTarget()
        return self.target

    @property
    def hotplug(self) -> bool:
        return not (self.target is not None and self.target.hotplug is False)

    @property
    def numa_node(self) -> int | None:
        node = self.target.numa if self.target is not None else None
        return node.value if node is not None else None

    @property
    def usb(self) -> USBAddress | None:
        return self.address if isinstance(self.address, USBAddress) else None

    @property
    def pci(self) -> PCIAddress | None:
        return self.address if isinstance(self.address, PCIAddress) else None


def assign_indexes(controllers: list[Controller]) -> None:
    """libvirt's indexes for controllers that have none, in document order: a USB2
    companion joins the USB controller just before it when that index has no
    controller of its model yet; anything else takes the first unused index of its
    type."""
    used: dict[ControllerType, set[int]] = {}
    for ctrl in controllers:
        if ctrl.index != UNSET:
            used.setdefault(ctrl.type, set()).add(ctrl.index)
    previous_usb: Controller | None = None
    for ctrl in controllers:
        if ctrl.index == UNSET:
            taken = used.setdefault(ctrl.type, set())
            prev = previous_usb
            if (ctrl.is_usb2 and prev is not None and prev.is_usb2
                    and not any(c.type == ControllerType.USB and c.index == prev.index
                                and c.model == ctrl.model for c in controllers)):
                ctrl.index = prev.index
            else:
                index = 0
                while index in taken:
                    index += 1
                ctrl.index = index
            taken.add(ctrl.index)
        if ctrl.type == ControllerType.USB:
            previous_usb = ctrl


def duplicate_errors(controllers: list[Controller]) -> list[XMLError]:
    """Two controllers of one type and index: only a USB2 family may share an index
    (one controller of each model)."""
    errors = []
    seen: dict[tuple[ControllerType, int], list[Controller]] = {}
    for ctrl in controllers:
        same = seen.setdefault((ctrl.type, ctrl.index), [])
        if same and not (ctrl.is_usb2 and all(o.is_usb2 and o.model != ctrl.model
                                               for o in same)):
            errors.append(ctrl.error(f"controller type '{ctrl.type}' index {ctrl.index} "
                                     "is defined twice"))
            continue  # one line per extra controller: the others are judged without it
        same.append(ctrl)
    return errors


def complete_controllers(controllers: list[Controller]) -> list[XMLError]:
    """What libvirt's parser does with the controller list: each controller inserted in
    order of type and index (``insert_controller``), missing indexes filled in
    (``assign_indexes``), UHCI companions given their ports on the EHCI; the problems
    (an index used twice)."""
    ordered: list[Controller] = []
    for ctrl in controllers:
        insert_controller(ordered, ctrl)
    assign_indexes(ordered)
    for ctrl in ordered:
        if ctrl.model in USB2_COMPANIONS and ctrl.master is None:
            ctrl.master = Master(startport=USB2_COMPANIONS[ctrl.model])
    # Once more with every index and master known: the order the formatted definition
    # reads back in (an EHCI master before its companions, as QEMU needs them).
    controllers.clear()
    for ctrl in ordered:
        insert_controller(controllers, ctrl)
    return duplicate_errors(controllers)


def insert_controller(controllers: list[Controller], new: Controller) -> None:
    """Add ``new`` where libvirt's virDomainControllerInsertPreAlloced puts it: after
    the last controller of its type with an index not above its own (at the end if its
    type has none; an EHCI master before its companions)."""
    at = None
    for i in range(len(controllers) - 1, -1, -1):
        cur = controllers[i]
        if cur.type != new.type:
            continue
        if new.index == UNSET:
            at = i + 1
            break
        if cur.index > new.index:
            at = i
        elif (new.master is None and cur.master is not None and cur.index == new.index):
            at = i
        elif at is None:
            at = i + 1
    if at is None:
        controllers.append(new)
    else:
        controllers.insert(at, new)


def find_controller(controllers: list[Controller], kind: ControllerType,
                    index: int) -> Controller | None:
    """The controller of ``kind`` and ``index`` (a USB2 family's master first)."""
    found = [c for c in controllers if c.type == kind and c.index == index]
    for ctrl in found:
        if ctrl.master is None:
            return ctrl
    return found[0] if found else None
