"""``<interface>``: the guest's network cards and what they are plugged into.

One element class, as libvirt has one (virDomainNetDef): which ``<source>`` attributes
mean something depends on ``type`` (``check`` enforces libvirt's rules per type).  The
host end of a tap interface (bridge, network, ethernet) is read the way the network
companion needs it: :meth:`Interface.host` gives its ``InterfaceHost``.
"""

from __future__ import annotations

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.devices.chardev import Reconnect
from qemuwrap.conf.devices.hostdev import (
    HostAddress,
    HostdevType,
    Product,
    Teaming,
    Vendor,
    as_pci,
)
from qemuwrap.conf.devices.virtio import VirtioDriver
from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import (
    ON_OFF,
    YES_NO,
    Element,
    Int,
    ParseContext,
    Path,
    Str,
    Token,
    attr,
    child,
    children,
    internal,
    text_child,
)
from qemuwrap.hints import TYPE_CHECKING

if TYPE_CHECKING:
    from ipaddress import IPv4Address, IPv6Address

    from qemuwrap.conf.network import InterfaceHost


class InterfaceType(ValueSet):
    USER = "user"
    ETHERNET = "ethernet"
    VHOSTUSER = "vhostuser"
    SERVER = "server"
    CLIENT = "client"
    MCAST = "mcast"
    NETWORK = "network"
    BRIDGE = "bridge"
    INTERNAL = "internal"
    DIRECT = "direct"
    HOSTDEV = "hostdev"
    UDP = "udp"
    VDPA = "vdpa"
    NULL = "null"
    VDS = "vds"


#: The types whose host end is a tap device (qemuwrap makes it, or finds it).
TAP_TYPES = (InterfaceType.NETWORK, InterfaceType.BRIDGE, InterfaceType.ETHERNET)


class NICModel(ValueSet):
    VIRTIO = "virtio"
    VIRTIO_TRANSITIONAL = "virtio-transitional"
    VIRTIO_NON_TRANSITIONAL = "virtio-non-transitional"
    E1000 = "e1000"
    E1000E = "e1000e"
    IGB = "igb"
    RTL8139 = "rtl8139"
    VMXNET3 = "vmxnet3"
    NE2K_PCI = "ne2k_pci"
    PCNET = "pcnet"
    I82551 = "i82551"
    I82557B = "i82557b"
    I82559ER = "i82559er"
    USB_NET = "usb-net"
    SPAPR_VLAN = "spapr-vlan"
    LAN9118 = "lan9118"
    SMC91C111 = "smc91c111"


VIRTIO_MODELS = (NICModel.VIRTIO, NICModel.VIRTIO_TRANSITIONAL,
                 NICModel.VIRTIO_NON_TRANSITIONAL)
#: An IP address's characters (what ipaddress then checks): no text QEMU's syntax gives
#: meaning to.
IP = Token(r"[0-9A-Fa-f.:]+", what="IP address")
#: A host network interface's name (a tap, a bridge, a host NIC).
IFNAME = Token(r"[A-Za-z0-9_.+@\-]{1,15}", what="interface name")
#: A host device node's or socket's path (QEMU opens it: no commas, no spaces).
DEVICE_PATH = Token(r"/[A-Za-z0-9_.+/\-]*", what="device path")

#: libvirt's default NIC model for x86 (qemuDomainDefaultNetModel: rtl8139 when QEMU
#: has it, which every x86 QEMU does).
DEFAULT_MODEL = NICModel.RTL8139


class NICModelName(Str):
    """A ``<model type>``: libvirt matches its own model names in any case and passes
    any other name (letters, digits, ``-``, ``_``) to QEMU as the device name."""

    free_text = False
    _known = {m.value.lower(): m.value for m in NICModel}

    def __init__(self) -> None:
        super().__init__(r"[a-zA-Z0-9\-_]+", what="NIC model")

    def parse(self, raw: str, name: str) -> str:
        value = super().parse(raw, name)
        return self._known.get(value.lower(), value)


class MACType(ValueSet):
    GENERATED = "generated"
    STATIC = "static"


class TxMode(ValueSet):
    IOTHREAD = "iothread"
    TIMER = "timer"


class NetDriverName(ValueSet):
    QEMU = "qemu"
    VHOST = "vhost"
    KVM = "kvm"
    VFIO = "vfio"
    XEN = "xen"


class LinkState(ValueSet):
    UP = "up"
    DOWN = "down"


class VirtualPortType(ValueSet):
    QBG = "802.1Qbg"
    QBH = "802.1Qbh"
    OPENVSWITCH = "openvswitch"
    MIDONET = "midonet"


class DirectMode(ValueSet):
    VEPA = "vepa"
    PRIVATE = "private"
    BRIDGE = "bridge"
    PASSTHROUGH = "passthrough"


class VlanNativeMode(ValueSet):
    TAGGED = "tagged"
    UNTAGGED = "untagged"


class PortForwardProto(ValueSet):
    TCP = "tcp"
    UDP = "udp"


class NetBackendType(ValueSet):
    PASST = "passt"


class AddrFamily(ValueSet):
    IPV4 = "ipv4"
    IPV6 = "ipv6"


class MAC(Element):
    TAG = "mac"
    address: str = attr(Str(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}", what="MAC address"),
                        required=True)
    type: MACType | None = attr(MACType)
    check_: bool | None = attr(YES_NO, xml="check")

    def check(self, ctx: ParseContext) -> None:
        self.address = self.address.lower()
        if int(self.address[:2], 16) & 1:
            raise self.error(f"MAC address '{self.address}' is a multicast address")


class Model(Element):
    TAG = "model"
    type: str = attr(NICModelName(), required=True)


class SourceLocal(Element):
    """``<local address port>`` of a udp interface: the host end's own address."""

    TAG = "local"
    address: str = attr(IP, required=True)
    port: int = attr(Int(0, 65535), required=True)


def _ip(value: str, element: Element) -> IPv4Address | IPv6Address:
    import ipaddress  # only for the few definitions with addresses (start-up time)

    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise element.error(f"'{value}' is not an IP address") from None


class IPAddr(Element):
    """``<ip address prefix peer>``: an address of the guest (user networking: its
    subnet) or of the host end (ethernet)."""

    TAG = "ip"
    address: str = attr(IP, required=True)
    family: AddrFamily | None = attr(AddrFamily)
    prefix: int | None = attr(Int(0, 128))
    peer: str | None = attr(IP)

    def check(self, ctx: ParseContext) -> None:
        _ip(self.address, self)
        if self.peer is not None:
            _ip(self.peer, self)

    @property
    def is_v4(self) -> bool:
        return ":" not in self.address


class Route(Element):
    TAG = "route"
    family: AddrFamily | None = attr(AddrFamily)
    address: str = attr(IP, required=True)
    netmask: str | None = attr(IP)
    prefix: int | None = attr(Int(0, 128))
    gateway: str = attr(IP, required=True)
    metric: int | None = attr(Int(0, 2**32 - 1))


class InterfaceSource(Element):
    """``<source>``: what the attributes mean depends on the interface type."""

    TAG = "source"
    network: str | None = attr(Str())
    portgroup: str | None = attr(Token())
    portid: str | None = attr(Token())
    bridge: str | None = attr(IFNAME)
    dev: str | None = attr(Token(r"[A-Za-z0-9_.+@/\-]+", what="device"))
    mode: str | None = attr(Token(r"[a-z0-9]+", what="mode"))
    type: str | None = attr(Token(r"unix", what="socket type"))
    path: str | None = attr(Path())
    address: str | None = attr(IP)
    port: int | None = attr(Int(0, 65535))
    name: str | None = attr(Token())
    switchid: str | None = attr(Token())
    portgroupid: str | None = attr(Token())
    connectionid: str | None = attr(Token())
    missing: bool | None = attr(YES_NO)
    local: SourceLocal | None = child(SourceLocal)
    reconnect: Reconnect | None = child(Reconnect)
    host_address: HostAddress | None = child(HostAddress)
    vendor: Vendor | None = child(Vendor)
    product: Product | None = child(Product)
    ips: list[IPAddr] = children(IPAddr)
    routes: list[Route] = children(Route)


class VirtualPortParameters(Element):
    TAG = "parameters"
    managerid: int | None = attr(Int(0, 255))
    typeid: int | None = attr(Int(0, 2**24 - 1))
    typeidversion: int | None = attr(Int(0, 255))
    instanceid: str | None = attr(Token(what="UUID"))
    profileid: str | None = attr(Token())
    interfaceid: str | None = attr(Token(what="UUID"))


class VirtualPort(Element):
    """``<virtualport>``: Open vSwitch, 802.1Qbg/h or MidoNet port settings (host side)."""

    TAG = "virtualport"
    type: VirtualPortType | None = attr(VirtualPortType)
    parameters: VirtualPortParameters | None = child(VirtualPortParameters)


class BandwidthDirection(Element):
    average: int | None = attr(Int(0, 2**64 - 1))
    peak: int | None = attr(Int(0, 2**64 - 1))
    burst: int | None = attr(Int(0, 2**64 - 1))
    floor: int | None = attr(Int(0, 2**64 - 1))


class Inbound(BandwidthDirection):
    TAG = "inbound"


class Outbound(BandwidthDirection):
    TAG = "outbound"


class Bandwidth(Element):
    TAG = "bandwidth"
    inbound: Inbound | None = child(Inbound)
    outbound: Outbound | None = child(Outbound)


class VlanTag(Element):
    TAG = "tag"
    id: int = attr(Int(0, 4095), required=True)
    nativeMode: VlanNativeMode | None = attr(VlanNativeMode)  # noqa: N815


class Vlan(Element):
    TAG = "vlan"
    trunk: bool | None = attr(YES_NO)
    tags: list[VlanTag] = children(VlanTag)


class PortOptions(Element):
    TAG = "port"
    isolated: bool | None = attr(YES_NO)


class Target(Element):
    TAG = "target"
    dev: str = attr(IFNAME, required=True)
    managed: bool | None = attr(YES_NO)


class GuestName(Element):
    TAG = "guest"
    dev: str | None = attr(IFNAME)
    actual: str | None = attr(IFNAME)


class PortForwardRange(Element):
    TAG = "range"
    start: int = attr(Int(1, 65535), required=True)
    end: int | None = attr(Int(1, 65535))
    to: int | None = attr(Int(1, 65535))
    exclude: bool | None = attr(YES_NO)


class PortForward(Element):
    TAG = "portForward"
    proto: PortForwardProto = attr(PortForwardProto, required=True)
    address: str | None = attr(IP)
    dev: str | None = attr(IFNAME)
    ranges: list[PortForwardRange] = children(PortForwardRange)


class Script(Element):
    TAG = "script"
    path: str = attr(Str(empty=False), required=True)


class DownScript(Element):
    TAG = "downscript"
    path: str = attr(Str(empty=False), required=True)


class BackendDomain(Element):
    TAG = "backenddomain"
    name: str = attr(Token(), required=True)


class NetBackend(Element):
    """``<backend type='passt' tap vhost logFile>``: the user-mode backend and the
    device nodes QEMU opens instead of /dev/net/tun and /dev/vhost-net."""

    TAG = "backend"
    type: NetBackendType | None = attr(NetBackendType)
    tap: str | None = attr(DEVICE_PATH)
    vhost: str | None = attr(DEVICE_PATH)
    logFile: str | None = attr(DEVICE_PATH)  # noqa: N815


class HostOffloads(Element):
    TAG = "host"
    csum: bool | None = attr(ON_OFF)
    gso: bool | None = attr(ON_OFF)
    tso4: bool | None = attr(ON_OFF)
    tso6: bool | None = attr(ON_OFF)
    ecn: bool | None = attr(ON_OFF)
    ufo: bool | None = attr(ON_OFF)
    mrg_rxbuf: bool | None = attr(ON_OFF)


class GuestOffloads(Element):
    TAG = "guest"
    csum: bool | None = attr(ON_OFF)
    tso4: bool | None = attr(ON_OFF)
    tso6: bool | None = attr(ON_OFF)
    ecn: bool | None = attr(ON_OFF)
    ufo: bool | None = attr(ON_OFF)


class NetDriver(VirtioDriver):
    """``<driver>``: the backend (qemu/vhost) and virtio-net's queues and offloads."""

    TAG = "driver"
    name: NetDriverName | None = attr(NetDriverName)
    txmode: TxMode | None = attr(TxMode)
    ioeventfd: bool | None = attr(ON_OFF)
    event_idx: bool | None = attr(ON_OFF)
    queues: int | None = attr(Int(1, 2**32 - 1))
    rx_queue_size: int | None = attr(Int(1, 2**32 - 1))
    tx_queue_size: int | None = attr(Int(1, 2**32 - 1))
    rss: bool | None = attr(ON_OFF)
    rss_hash_report: bool | None = attr(ON_OFF)
    host: HostOffloads | None = child(HostOffloads)
    guest: GuestOffloads | None = child(GuestOffloads)


class FilterParameter(Element):
    TAG = "parameter"
    name: str = attr(Token(), required=True)
    value: str = attr(Str(), required=True)


class FilterRef(Element):
    TAG = "filterref"
    filter: str = attr(Token(), required=True)
    parameters: list[FilterParameter] = children(FilterParameter)


class Tune(Element):
    TAG = "tune"
    sndbuf: int | None = text_child("sndbuf", Int(0, 2**64 - 1))


class Link(Element):
    TAG = "link"
    state: LinkState = attr(LinkState, required=True)


class MTU(Element):
    TAG = "mtu"
    size: int = attr(Int(0, 2**32 - 1), required=True)


class Frames(Element):
    TAG = "frames"
    max: int | None = attr(Int(0, 2**32 - 1))


class CoalesceRx(Element):
    TAG = "rx"
    frames: Frames | None = child(Frames)


class Coalesce(Element):
    TAG = "coalesce"
    rx: CoalesceRx | None = child(CoalesceRx)


#: What each type's <source> needs (virDomainNetDefParseXML).
_REQUIRED_SOURCE = {
    InterfaceType.NETWORK: ("network",),
    InterfaceType.BRIDGE: ("bridge",),
    InterfaceType.DIRECT: ("dev",),
    InterfaceType.INTERNAL: ("name",),
    InterfaceType.VDPA: ("dev",),
    InterfaceType.VHOSTUSER: ("type", "path", "mode"),
    InterfaceType.MCAST: ("address", "port"),
    InterfaceType.CLIENT: ("address", "port"),
    InterfaceType.UDP: ("address", "port"),
    InterfaceType.SERVER: ("port",),
    InterfaceType.VDS: ("switchid", "portid", "portgroupid", "connectionid"),
}
#: libvirt's prefixes of tap names it generates: blanked on input (chosen at start).
GENERATED_PREFIXES = ("vnet", "macvtap", "macvlan")


class Interface(PCIDevice):
    TAG = "interface"
    type: InterfaceType = attr(InterfaceType, default=InterfaceType.USER)
    managed: bool | None = attr(YES_NO)  # type='hostdev': libvirt detaches the device
    trustGuestRxFilters: bool | None = attr(YES_NO)  # noqa: N815
    mac_el: MAC | None = child(MAC)
    source: InterfaceSource | None = child(InterfaceSource)
    vlan: Vlan | None = child(Vlan)
    virtualport: VirtualPort | None = child(VirtualPort)
    bandwidth: Bandwidth | None = child(Bandwidth)
    port: PortOptions | None = child(PortOptions)
    ips: list[IPAddr] = children(IPAddr)
    routes: list[Route] = children(Route)
    port_forwards: list[PortForward] = children(PortForward)
    script: Script | None = child(Script)
    downscript: DownScript | None = child(DownScript)
    backenddomain: BackendDomain | None = child(BackendDomain)
    target: Target | None = child(Target)
    guest: GuestName | None = child(GuestName)
    model_el: Model | None = child(Model)
    driver: NetDriver | None = child(NetDriver)
    backend: NetBackend | None = child(NetBackend)
    filterref: FilterRef | None = child(FilterRef)
    tune: Tune | None = child(Tune)
    teaming: Teaming | None = child(Teaming)
    link: Link | None = child(Link)
    mtu: MTU | None = child(MTU)
    coalesce: Coalesce | None = child(Coalesce)
    #: no <mac> in the XML: made up at this load (libvirt's 52:54:00 and 3 random bytes)
    mac_generated: bool = internal(False)

    def check(self, ctx: ParseContext) -> None:
        if self.mac_el is None:
            self.mac_el = MAC(address="52:54:00:" + ":".join(f"{b:02x}"
                                                            for b in ctx.random(3)))
            self.mac_generated = True
        kind = self.type
        src = self.source
        needed = _REQUIRED_SOURCE.get(kind, ())
        if needed and src is None:
            raise self.error(f"interface type='{kind}' requires a <source> element")
        for name in needed:
            if getattr(src, name) is None:
                raise (src or self).error(f"interface type='{kind}' needs <source {name}=...>")
        if kind == InterfaceType.VHOSTUSER:
            assert src is not None
            if src.mode not in ("client", "server"):
                raise src.error(f"unsupported mode='{src.mode}' for a vhostuser interface "
                                "(supported: 'client', 'server')")
            if src.mode == "server" and src.reconnect is not None and src.reconnect.enabled:
                raise src.error("<reconnect> is only for mode='client'")
        if kind == InterfaceType.DIRECT and src is not None:
            if src.mode is None:
                src.mode = DirectMode.VEPA
            elif src.mode not in set(DirectMode):
                raise src.error(f"unsupported mode='{src.mode}' for a direct interface")
        if kind == InterfaceType.UDP and src is not None and src.local is None:
            raise src.error("a udp interface needs <local address port>")
        if kind == InterfaceType.HOSTDEV:
            self._check_hostdev()
        if self.virtualport is not None and kind not in (
                InterfaceType.NETWORK, InterfaceType.BRIDGE, InterfaceType.DIRECT,
                InterfaceType.HOSTDEV):
            raise self.virtualport.error(f"<virtualport> is not for interface type='{kind}'")
        if src is not None and (src.ips or src.routes) and kind != InterfaceType.ETHERNET:
            raise src.error("host-side <ip> and <route> are only for type='ethernet'")
        if self.target is not None:
            if self.target.managed is False and kind != InterfaceType.ETHERNET:
                raise self.target.error("managed='no' is only for type='ethernet'")
            if self.target.managed is not False and \
                    self.target.dev.startswith(GENERATED_PREFIXES):
                self.target = None  # libvirt's own names are chosen again at every start
        if self.teaming is not None:
            transient = self.teaming.type == "transient"
            if transient and not self.teaming.persistent:
                raise self.teaming.error("teaming type 'transient' needs 'persistent'")
            if not transient and self.teaming.persistent:
                raise self.teaming.error("attribute 'persistent' is only for teaming type "
                                         "'transient'")
        if self.backend is not None and self.backend.type == "passt" and \
                kind != InterfaceType.USER:
            raise self.backend.error("the 'passt' backend is only for type='user'")
        if self.model_el is None and kind != InterfaceType.HOSTDEV:
            model = NICModel.VIRTIO if kind == InterfaceType.VDPA else DEFAULT_MODEL
            self.model_el = Model(type=model.value)
        if self.driver is not None and self.driver.queues == 1:
            self.driver.queues = None  # there is always one queue pair (libvirt drops it)

    def _check_hostdev(self) -> None:
        src = self.source
        if src is None:
            raise self.error("interface type='hostdev' requires a <source> element")
        addr = src.host_address
        if src.vendor is None and addr is None:
            raise src.error("a hostdev interface needs <address type='pci' .../> or a USB "
                            "<vendor> and <product>")
        if addr is not None and addr.type != "usb":
            if addr.bus is not None and addr.bus > 0xFF:
                raise addr.error(f"PCI bus {addr.bus:#x} is above 0xff")
            as_pci(addr)

    # -- what the builders read ----------------------------------------------------
    @property
    def mac(self) -> str:
        assert self.mac_el is not None
        return self.mac_el.address

    @mac.setter
    def mac(self, value: str) -> None:
        self.mac_el = MAC(address=value)

    @property
    def model_name(self) -> str | None:
        """The model as written (libvirt's names normalised); None for a hostdev NIC."""
        return self.model_el.type if self.model_el is not None else None

    @property
    def model(self) -> NICModel | None:
        """The model if it is one qemuwrap knows (else ``model_name`` is a QEMU device)."""
        name = self.model_name
        if name is None:
            return None
        try:
            return NICModel(name)
        except ValueError:
            return None

    @property
    def is_virtio(self) -> bool:
        return self.model in VIRTIO_MODELS

    @property
    def hostdev_type(self) -> HostdevType:
        src = self.source
        if src is not None and src.host_address is not None and \
                src.host_address.type == "usb":
            return HostdevType.USB
        if src is not None and src.vendor is not None and src.host_address is None:
            return HostdevType.USB
        return HostdevType.PCI

    @property
    def queues(self) -> int:
        return self.driver.queues if self.driver is not None and self.driver.queues else 1

    @property
    def link_up(self) -> bool:
        return self.link is None or self.link.state == LinkState.UP

    def host(self) -> InterfaceHost:
        """The tap interface's host end, as the network companion reads it."""
        from qemuwrap.conf.network import Bandwidth as HostBandwidth
        from qemuwrap.conf.network import InterfaceHost

        src = self.source
        bandwidth = None
        if self.bandwidth is not None:
            bandwidth = HostBandwidth(
                inbound=_rates(self.bandwidth.inbound), outbound=_rates(self.bandwidth.outbound))
        return InterfaceHost(
            self.type.value,
            source=(src.network if self.type == InterfaceType.NETWORK else src.bridge)
            if src is not None else None,
            target_dev=self.target.dev if self.target is not None else None,
            managed=self.target is None or self.target.managed is not False,
            driver_name=self.driver.name if self.driver is not None and
            self.driver.name in ("qemu", "vhost") else None,
            queues=self.queues, link_up=self.link_up,
            mtu=self.mtu.size if self.mtu is not None else None,
            bandwidth=bandwidth, node=self.node)

    def address_types(self) -> tuple[str, ...]:
        if self.model == NICModel.USB_NET:
            return ("usb",)
        return ("pci",)


def _rates(direction: BandwidthDirection | None) -> dict[str, int] | None:
    if direction is None:
        return None
    return {k: v for k, v in direction.values() if v is not None}


