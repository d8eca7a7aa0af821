"""``<hostdev>``: host devices passed through to the guest (PCI with VFIO, USB, SCSI
generic, vhost-scsi, mediated devices).

The same ``<source>`` grammar serves ``<interface type='hostdev'>`` (a NIC that is a
host PCI or USB device), so :class:`HostdevSource` is shared with ``net.py``.
"""

from __future__ import annotations

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import (
    ON_OFF,
    YES_NO,
    Element,
    Int,
    ParseContext,
    Str,
    Token,
    attr,
    child,
    children,
    flag,
    text_child,
)


class HostdevMode(ValueSet):
    SUBSYSTEM = "subsystem"
    CAPABILITIES = "capabilities"


class HostdevType(ValueSet):
    USB = "usb"
    PCI = "pci"
    SCSI = "scsi"
    SCSI_HOST = "scsi_host"
    MDEV = "mdev"
    # capabilities mode (LXC only)
    STORAGE = "storage"
    MISC = "misc"
    NET = "net"


class PCIBackend(ValueSet):
    KVM = "kvm"
    VFIO = "vfio"
    XEN = "xen"


class USBGuestReset(ValueSet):
    OFF = "off"
    UNINITIALIZED = "uninitialized"
    ON = "on"


class StartupPolicy(ValueSet):
    MANDATORY = "mandatory"
    REQUISITE = "requisite"
    OPTIONAL = "optional"


class HostdevProtocol(ValueSet):
    """A SCSI host device's source (a local adapter or iSCSI), or vhost for scsi_host."""

    ADAPTER = "adapter"
    ISCSI = "iscsi"
    VHOST = "vhost"


class HostdevModel(ValueSet):
    """vhost-scsi's virtio models (scsi_host) and a mediated device's (mdev)."""

    VIRTIO = "virtio"
    VIRTIO_TRANSITIONAL = "virtio-transitional"
    VIRTIO_NON_TRANSITIONAL = "virtio-non-transitional"
    VFIO_PCI = "vfio-pci"
    VFIO_CCW = "vfio-ccw"
    VFIO_AP = "vfio-ap"


MDEV_MODELS = (HostdevModel.VFIO_PCI, HostdevModel.VFIO_CCW, HostdevModel.VFIO_AP)


class HostAddressType(ValueSet):
    PCI = "pci"
    USB = "usb"
    SCSI = "scsi"
    MDEV = "mdev"


class TeamingType(ValueSet):
    PERSISTENT = "persistent"
    TRANSIENT = "transient"


class HostAddress(Element):
    """``<address>`` of a host device: PCI ``domain bus slot function``, USB ``bus
    device``, SCSI ``bus target unit``, a mediated device's ``uuid`` (one element,
    which attributes apply depends on the hostdev type)."""

    TAG = "address"
    type: HostAddressType | None = attr(HostAddressType)
    domain: int | None = attr(Int(0, 0xFFFF, base=0, hex_format=4))
    bus: int | None = attr(Int(0, 2**32 - 1, base=0))
    slot: int | None = attr(Int(0, 0x1F, base=0, hex_format=2))
    function: int | None = attr(Int(0, 7, base=0, hex_format=1))
    device: int | None = attr(Int(0, 2**32 - 1, base=0))
    target: int | None = attr(Int(0, 2**32 - 1))
    unit: int | None = attr(Int(0, 2**64 - 1))
    uuid: str | None = attr(Token(r"[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}",
                                  what="UUID"))

    @property
    def pci(self) -> str:
        """``DDDD:BB:SS.F`` (libvirt's VIR_PCI_DEVICE_ADDRESS_FMT)."""
        return (f"{self.domain or 0:04x}:{self.bus or 0:02x}:{self.slot or 0:02x}."
                f"{self.function or 0}")


class PCIHostAddress(HostAddress):
    """A host PCI address as libvirt writes it back: bus in hex, as domain, slot and
    function (virPCIDeviceAddressFormat); a USB or SCSI bus stays decimal.  What a
    PCI host device's address becomes once read (:func:`as_pci`)."""

    domain: int | None = attr(Int(0, 0xFFFF, base=0, hex_format=4))
    bus: int | None = attr(Int(0, 0xFF, base=0, hex_format=2))
    slot: int | None = attr(Int(0, 0x1F, base=0, hex_format=2))
    function: int | None = attr(Int(0, 7, base=0, hex_format=1))


def as_pci(addr: HostAddress) -> None:
    """Format ``addr`` as a host PCI address (its bus in hex)."""
    addr.__class__ = PCIHostAddress


class USBId(Element):
    """``<vendor id>`` / ``<product id>`` of a host USB device."""

    id: int = attr(Int(0, 0xFFFF, base=0, hex_format=4), required=True)


class Vendor(USBId):
    TAG = "vendor"


class Product(USBId):
    TAG = "product"


class Adapter(Element):
    TAG = "adapter"
    name: str = attr(Token(r"scsi_host[0-9]+", what="SCSI adapter name"), required=True)


class ISCSIHost(Element):
    TAG = "host"
    name: str = attr(Token(r"[A-Za-z0-9_.:\-\[\]]+", what="host name"), required=True)
    port: int | None = attr(Int(0, 65535))


class HostdevAuth(Element):
    """``<auth username><secret type usage|uuid/></auth>``: libvirt's secret store."""

    TAG = "auth"
    username: str | None = attr(Str())


class Initiator(Element):
    TAG = "initiator"
    iqn: str | None = text_child("iqn", Token(r"[A-Za-z0-9_.:\-]+", what="iSCSI name"))


class HostdevSource(Element):
    TAG = "source"
    startupPolicy: StartupPolicy | None = attr(StartupPolicy)  # noqa: N815
    guestReset: USBGuestReset | None = attr(USBGuestReset)  # noqa: N815
    writeFiltering: bool | None = attr(YES_NO)  # noqa: N815
    missing: bool | None = attr(YES_NO)
    protocol: HostdevProtocol | None = attr(HostdevProtocol)
    name: str | None = attr(Token(r"[A-Za-z0-9_.:/,\-]+", what="iSCSI target"))
    wwpn: str | None = attr(Token(r"naa\.[0-9a-fA-F]{16}", what="WWPN"))
    vendor: Vendor | None = child(Vendor)
    product: Product | None = child(Product)
    adapter: Adapter | None = child(Adapter)
    hosts: list[ISCSIHost] = children(ISCSIHost)
    address: HostAddress | None = child(HostAddress)
    auth: HostdevAuth | None = child(HostdevAuth)
    initiator: Initiator | None = child(Initiator)


class HostdevDriver(Element):
    TAG = "driver"
    name: PCIBackend | None = attr(PCIBackend)


class Teaming(Element):
    """``<teaming type persistent>``: a virtio NIC and a hostdev NIC that fail over."""

    TAG = "teaming"
    type: TeamingType = attr(TeamingType, required=True)
    persistent: str | None = attr(Token(what="alias"))


class Hostdev(PCIDevice):
    TAG = "hostdev"
    mode: HostdevMode = attr(HostdevMode, default=HostdevMode.SUBSYSTEM)
    type: HostdevType = attr(HostdevType, required=True)
    managed: bool | None = attr(YES_NO)
    model: HostdevModel | None = attr(HostdevModel)
    display: bool | None = attr(ON_OFF)
    ramfb: bool | None = attr(ON_OFF)
    driver: HostdevDriver | None = child(HostdevDriver)
    source: HostdevSource | None = child(HostdevSource)
    readonly: bool = flag("readonly")
    shareable: bool = flag("shareable")
    teaming: Teaming | None = child(Teaming)

    def check(self, ctx: ParseContext) -> None:
        check_hostdev_source(self, self.type, self.source)
        if self.type == HostdevType.MDEV:
            if self.model not in MDEV_MODELS:
                raise self.error("a mediated device needs model='vfio-pci', 'vfio-ccw' or "
                                 "'vfio-ap'")
            if self.model == "vfio-pci" and self.display is None:
                self.display = False  # libvirt's default (qemuDomainHostdevDefMdevPostParse)
        elif self.display is not None or self.ramfb is not None:
            raise self.error("attributes 'display' and 'ramfb' are only for mediated devices")
        elif self.type == HostdevType.SCSI_HOST:
            if self.model in MDEV_MODELS:
                raise self.error(f"unsupported model='{self.model}' for a scsi_host hostdev")
        elif self.model is not None:
            raise self.error(f"attribute 'model' is not for a '{self.type}' hostdev")
        if self.type == HostdevType.PCI and self.driver is None:
            self.driver = HostdevDriver(name=PCIBackend.VFIO)  # libvirt's only QEMU backend

    def address_types(self) -> tuple[str, ...] | None:
        if self.type == HostdevType.USB:
            return ("usb",)
        if self.type == HostdevType.SCSI:
            return ("drive",)
        return ("pci", "unassigned")

    @property
    def scsi_protocol(self) -> str:
        src = self.source
        return src.protocol if src is not None and src.protocol else "adapter"


def check_hostdev_source(owner: Element, kind: str, src: HostdevSource | None) -> None:
    """libvirt's rules for a host device's ``<source>`` by type
    (virDomainHostdevDefParseXMLSubsys)."""
    if kind in (HostdevType.STORAGE, HostdevType.MISC, HostdevType.NET):
        return  # capabilities mode: refused as LXC-only when a command is built
    if src is None:
        raise owner.error("missing <source>")
    addr = src.address
    if kind == HostdevType.PCI:
        if addr is None or addr.bus is None or addr.slot is None:
            raise src.error("a PCI host device needs <address domain bus slot function>")
        if addr.bus > 0xFF:
            raise addr.error(f"PCI bus {addr.bus:#x} is above 0xff")
        as_pci(addr)
    elif kind == HostdevType.USB:
        if (src.vendor is None) != (src.product is None):
            raise src.error("a USB host device needs both <vendor> and <product>")
        if src.vendor is None and (addr is None or addr.bus is None or addr.device is None):
            raise src.error("a USB host device needs <vendor> and <product> or "
                            "<address bus device>")
    elif kind == HostdevType.SCSI:
        if src.protocol == "iscsi":
            if src.name is None or not src.hosts:
                raise src.error("an iSCSI host device needs a name and a <host>")
        else:
            if src.adapter is None:
                raise src.error("a SCSI host device needs <adapter name=.../>")
            if addr is None or addr.bus is None or addr.target is None or addr.unit is None:
                raise src.error("a SCSI host device needs <address bus target unit>")
    elif kind == HostdevType.SCSI_HOST:
        if src.protocol != "vhost" or src.wwpn is None:
            raise src.error("a scsi_host host device needs protocol='vhost' and a wwpn")
    elif kind == HostdevType.MDEV:
        if addr is None or addr.uuid is None:
            raise src.error("a mediated device needs <address uuid=.../>")
