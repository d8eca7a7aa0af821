"""Character devices: ``<serial>``, ``<parallel>``, ``<console>``, ``<channel>`` and the
host end they connect to (libvirt's virDomainChrSourceDef: ``type``, ``<source>``,
``<protocol>``, ``<log>``).

The host end is declared once (:func:`chr_type`, :func:`chr_sources`, ...) and used by
every element that has one (also ``<rng><backend model='egd'>``, ``<smartcard
mode='passthrough'>``, ``<redirdev>``); :class:`ChrSpec` is its meaning, one value per
setting, the way libvirt reads it (``mode`` defaults to connect, a udp device's two
``<source>``s, the pty path libvirt reports only in live XML).
"""

from __future__ import annotations

from qemuwrap.conf.devices.address import Device, VirtioSerialAddress
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
from qemuwrap.errors import XMLError
from qemuwrap.hints import TYPE_CHECKING
from qemuwrap.record import Record

if TYPE_CHECKING:
    from typing import Any


class CharType(ValueSet):
    NULL = "null"
    VC = "vc"
    PTY = "pty"
    DEV = "dev"
    FILE = "file"
    PIPE = "pipe"
    STDIO = "stdio"
    UDP = "udp"
    TCP = "tcp"
    UNIX = "unix"
    SPICEVMC = "spicevmc"
    SPICEPORT = "spiceport"
    NMDM = "nmdm"
    QEMU_VDAGENT = "qemu-vdagent"
    DBUS = "dbus"


class SourceMode(ValueSet):
    BIND = "bind"
    CONNECT = "connect"


class TCPProtocol(ValueSet):
    RAW = "raw"
    TELNET = "telnet"
    TELNETS = "telnets"
    TLS = "tls"


class MouseMode(ValueSet):
    SERVER = "server"
    CLIENT = "client"


class SerialTargetType(ValueSet):
    ISA_SERIAL = "isa-serial"
    USB_SERIAL = "usb-serial"
    PCI_SERIAL = "pci-serial"
    SPAPR_VIO_SERIAL = "spapr-vio-serial"
    SYSTEM_SERIAL = "system-serial"
    SCLP_SERIAL = "sclp-serial"
    ISA_DEBUG = "isa-debug"


class SerialModelName(ValueSet):
    ISA_SERIAL = "isa-serial"
    USB_SERIAL = "usb-serial"
    PCI_SERIAL = "pci-serial"
    SPAPR_VTY = "spapr-vty"
    PL011 = "pl011"
    UART_16550A = "16550a"
    SCLPCONSOLE = "sclpconsole"
    SCLPLMCONSOLE = "sclplmconsole"
    ISA_DEBUGCON = "isa-debugcon"


#: libvirt's default model of each target type (qemuDomainChrDefPostParse).
DEFAULT_SERIAL_MODEL = {
    SerialTargetType.ISA_SERIAL: SerialModelName.ISA_SERIAL,
    SerialTargetType.USB_SERIAL: SerialModelName.USB_SERIAL,
    SerialTargetType.PCI_SERIAL: SerialModelName.PCI_SERIAL,
    SerialTargetType.SPAPR_VIO_SERIAL: SerialModelName.SPAPR_VTY,
    SerialTargetType.SCLP_SERIAL: SerialModelName.SCLPCONSOLE,
    SerialTargetType.ISA_DEBUG: SerialModelName.ISA_DEBUGCON,
}
#: The target type each model needs (qemuValidateChrSerialTargetModelToTargetType).
SERIAL_MODEL_TARGET = {
    SerialModelName.ISA_SERIAL: SerialTargetType.ISA_SERIAL,
    SerialModelName.USB_SERIAL: SerialTargetType.USB_SERIAL,
    SerialModelName.PCI_SERIAL: SerialTargetType.PCI_SERIAL,
    SerialModelName.SPAPR_VTY: SerialTargetType.SPAPR_VIO_SERIAL,
    SerialModelName.PL011: SerialTargetType.SYSTEM_SERIAL,
    SerialModelName.UART_16550A: SerialTargetType.SYSTEM_SERIAL,
    SerialModelName.SCLPCONSOLE: SerialTargetType.SCLP_SERIAL,
    SerialModelName.SCLPLMCONSOLE: SerialTargetType.SCLP_SERIAL,
    SerialModelName.ISA_DEBUGCON: SerialTargetType.ISA_DEBUG,
}
#: The address type each serial target type takes (None: no address at all).
SERIAL_ADDRESS = {
    SerialTargetType.ISA_SERIAL: "isa",
    SerialTargetType.ISA_DEBUG: "isa",
    SerialTargetType.USB_SERIAL: "usb",
    SerialTargetType.PCI_SERIAL: "pci",
    SerialTargetType.SPAPR_VIO_SERIAL: "spapr-vio",
    SerialTargetType.SYSTEM_SERIAL: None,
    SerialTargetType.SCLP_SERIAL: None,
}


class ConsoleTargetType(ValueSet):
    SERIAL = "serial"
    VIRTIO = "virtio"
    XEN = "xen"
    UML = "uml"
    LXC = "lxc"
    OPENVZ = "openvz"
    SCLP = "sclp"
    SCLPLM = "sclplm"


class ChannelTargetType(ValueSet):
    VIRTIO = "virtio"
    GUESTFWD = "guestfwd"
    XEN = "xen"


class ChannelState(ValueSet):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


#: libvirt's characters of a spiceport/dbus channel name (SERIAL_CHANNEL_NAME_CHARS).
CHANNEL_NAME = r"[A-Za-z0-9_.\-]*"
#: A device node's path (a pty, a FreeBSD nmdm): no text QEMU's syntax gives meaning to.
DEVICE_PATH = r"/[A-Za-z0-9_.+/\-]*"


# --------------------------------------------------------------------------- <source>
class Reconnect(Element):
    """``<reconnect enabled timeout>``: a client socket that reconnects after a drop."""

    TAG = "reconnect"
    enabled: bool | None = attr(YES_NO)
    timeout: int | None = attr(Int(0, 2**32 - 1))

    def check(self, ctx: ParseContext) -> None:
        if self.enabled and self.timeout is None:
            raise self.error("missing attribute 'timeout'")


class DeviceSecLabel(Element):
    """``<seclabel>`` inside a device's source: a per-device label override, read and
    kept; qemuwrap runs no security driver, so it is not enforced (``--explain``)."""

    TAG = "seclabel"
    model: str | None = attr(Token(r"[A-Za-z0-9_\-]+", what="security model"))
    relabel: bool | None = attr(YES_NO)
    labelskip: bool | None = attr(YES_NO)
    label: str | None = text_child("label", Str())


class Clipboard(Element):
    TAG = "clipboard"
    copypaste: bool = attr(YES_NO, required=True)


class Mouse(Element):
    TAG = "mouse"
    mode: MouseMode = attr(MouseMode, required=True)


class CharSource(Element):
    """One ``<source>``: which attributes mean something depends on the device's type
    (libvirt's virDomainChrSourceDefParseXML reads only those; so does :class:`ChrSpec`)."""

    TAG = "source"
    mode: SourceMode | None = attr(SourceMode)
    path: str | None = attr(Str())  # a pty's is what libvirt reports, not a path to use
    host: str | None = attr(Str())
    service: str | None = attr(Str())
    channel: str | None = attr(Token(r"[A-Za-z0-9_.\-]+", what="channel name"))
    master: str | None = attr(Token(DEVICE_PATH, what="device path"))
    slave: str | None = attr(Token(DEVICE_PATH, what="device path"))
    append: bool | None = attr(ON_OFF)
    tls: bool | None = attr(YES_NO)
    reconnect: Reconnect | None = child(Reconnect)
    seclabels: list[DeviceSecLabel] = children(DeviceSecLabel)
    clipboard: Clipboard | None = child(Clipboard)
    mouse: Mouse | None = child(Mouse)


class CharProtocol(Element):
    TAG = "protocol"
    type: TCPProtocol | None = attr(TCPProtocol)


class CharLog(Element):
    """``<log file append>``: QEMU copies everything the device outputs to a file."""

    TAG = "log"
    file: str = attr(Path(), required=True)
    append: bool | None = attr(ON_OFF)


# The host end's declarations, shared by every element that has one (a field object
# is stateless once named, so one per element kind is made here).
def chr_type() -> CharType:
    """The ``type`` attribute (libvirt: pty when absent)."""
    return attr(CharType, default=CharType.PTY)


def chr_sources() -> list[CharSource]:
    return children(CharSource)


def chr_protocol() -> CharProtocol | None:
    return child(CharProtocol)


def chr_log() -> CharLog | None:
    return child(CharLog)


class ChrSpec(Record):
    """What a host end means, one value per setting (libvirt's virDomainChrSourceDef)."""

    type: CharType
    path: str | None = None  # dev, file, pipe, unix (None: unix path chosen at start)
    append: bool | None = None  # file
    host: str | None = None  # tcp; udp: the remote end
    service: str | None = None
    bind_host: str | None = None  # udp: the local end
    bind_service: str | None = None
    listen: bool = False  # tcp, unix: mode='bind'
    tls: bool | None = None  # tcp
    telnet: bool = False  # tcp: <protocol type='telnet'>
    reconnect: bool | None = None  # tcp, unix (connect mode)
    reconnect_timeout: int = 0
    channel: str | None = None  # spiceport, dbus
    clipboard: bool | None = None  # qemu-vdagent
    mouse: MouseMode | None = None  # qemu-vdagent
    log_file: str | None = None
    log_append: bool | None = None
    seclabels: int = 0  # how many per-device labels (read, not enforced)


def _reconnect(spec: ChrSpec, src: CharSource) -> None:
    if src.reconnect is not None:
        spec.reconnect = src.reconnect.enabled
        spec.reconnect_timeout = src.reconnect.timeout or 0


def chr_spec(holder: Any) -> ChrSpec:
    """The meaning of ``holder``'s ``type``, ``sources``, ``protocol`` and ``log``."""
    kind: CharType = holder.type
    spec = ChrSpec(kind)
    sources: list[CharSource] = holder.sources
    first = sources[0] if sources else None
    if first is not None:
        spec.seclabels = len(first.seclabels)
        if kind in (CharType.FILE, CharType.DEV, CharType.PIPE):
            spec.path = first.path
            if kind == CharType.FILE:
                spec.append = first.append
        elif kind == CharType.UNIX:
            spec.path = first.path
            spec.listen = first.mode == SourceMode.BIND
            _reconnect(spec, first)
        elif kind == CharType.TCP:
            spec.host, spec.service, spec.tls = first.host, first.service, first.tls
            spec.listen = first.mode == SourceMode.BIND
            _reconnect(spec, first)
        elif kind == CharType.UDP:
            for src in sources:  # the first connect and the first bind source count
                if src.mode == SourceMode.BIND:
                    if spec.bind_host is None and spec.bind_service is None:
                        spec.bind_host, spec.bind_service = src.host, src.service
                elif spec.host is None and spec.service is None:
                    spec.host, spec.service = src.host, src.service
        elif kind in (CharType.SPICEPORT, CharType.DBUS):
            spec.channel = first.channel
        elif kind == CharType.QEMU_VDAGENT:
            spec.clipboard = first.clipboard.copypaste if first.clipboard else None
            spec.mouse = first.mouse.mode if first.mouse else None
    protocol: CharProtocol | None = holder.protocol
    if kind == CharType.TCP and protocol is not None:
        spec.telnet = protocol.type == TCPProtocol.TELNET
    log: CharLog | None = holder.log
    if log is not None:
        spec.log_file, spec.log_append = log.file, log.append
    return spec


def check_chr_source(holder: Element, *, auto_path: bool = False) -> None:
    """libvirt's rules for a host end (virDomainChrSourceDefParseXML and
    virDomainChrSourceDefValidate), as one line each; ``auto_path``: a unix socket
    without a path is made at start (virtio channels)."""
    kind: CharType = holder.type  # type: ignore[attr-defined]
    sources: list[CharSource] = holder.sources  # type: ignore[attr-defined]
    if len(sources) > 1 and kind != CharType.UDP:
        raise sources[1].error("only one source element is allowed for a character device")
    if len(sources) > 2:
        raise sources[2].error("only two source elements are allowed for a character "
                               "device")
    if kind == CharType.PTY:
        # libvirt reads a pty's path only from live XML: it is the one QEMU allocated.
        sources.clear()
        return
    spec = chr_spec(holder)
    if kind in (CharType.FILE, CharType.DEV, CharType.PIPE) and not spec.path:
        raise holder.error(f"a '{kind}' {holder.TAG} needs <source path=.../>")
    if kind == CharType.UNIX:
        if not spec.path and not auto_path:
            raise holder.error(f"a 'unix' {holder.TAG} needs <source path=.../>")
        if not spec.path:  # a socket qemuwrap places: QEMU listens (libvirt's rule)
            if not sources:
                sources.append(CharSource())
            sources[0].mode = SourceMode.BIND
    if kind == CharType.TCP:
        if not spec.host:
            raise holder.error("a 'tcp' character device needs <source host=.../>")
        if not spec.service:
            raise holder.error("a 'tcp' character device needs <source service=.../>")
    if kind == CharType.UDP and not spec.service:
        raise holder.error("a 'udp' character device needs <source mode='connect' "
                           "service=.../>")
    if kind in (CharType.TCP, CharType.UNIX) and spec.listen and spec.reconnect:
        raise holder.error("<reconnect> is only for mode='connect'")
    if kind in (CharType.SPICEPORT, CharType.DBUS):
        import re

        if not spec.channel:
            raise holder.error(f"a '{kind}' character device needs <source channel=.../>")
        if not re.fullmatch(CHANNEL_NAME, spec.channel):
            raise holder.error(f"invalid character in source channel '{spec.channel}'")
    if kind == CharType.NMDM:
        first = sources[0] if sources else None
        if first is not None and (first.master is None) != (first.slave is None):
            raise holder.error("an 'nmdm' character device needs both master and slave")


# --------------------------------------------------------------------------- devices
class CharDevice(Device):
    """What serial ports, parallel ports, consoles and channels share: the host end."""

    type: CharType = chr_type()
    tty: str | None = attr(Token(DEVICE_PATH, what="device path"))  # live XML: the pty
    sources: list[CharSource] = chr_sources()
    protocol: CharProtocol | None = chr_protocol()
    log: CharLog | None = chr_log()

    #: Serial, parallel and console ports cannot be spice's vdagent channel.
    SPICEVMC_OK = True

    def check(self, ctx: ParseContext) -> None:
        self.tty = None  # live XML only: what QEMU allocated last time
        if self.type == CharType.SPICEVMC and not self.SPICEVMC_OK:
            raise self.error(f"a <{self.TAG}> cannot be of type 'spicevmc' (only a virtio "
                             "channel can)")
        check_chr_source(self, auto_path=self.auto_path())

    def auto_path(self) -> bool:
        return False

    @property
    def chr(self) -> ChrSpec:
        return chr_spec(self)

    @property
    def source(self) -> CharSource | None:
        return self.sources[0] if self.sources else None

    @property
    def path(self) -> str | None:
        """The file, device or socket path (None for a pty and the network types)."""
        if self.type in (CharType.FILE, CharType.DEV, CharType.PIPE, CharType.UNIX):
            return self.sources[0].path if self.sources else None
        return None


class SerialModel(Element):
    TAG = "model"
    name: SerialModelName | None = attr(SerialModelName)


class SerialTarget(Element):
    TAG = "target"
    type: SerialTargetType | None = attr(SerialTargetType)
    port: int | None = attr(Int(0, 2**31 - 1))
    model: SerialModel | None = child(SerialModel)


class Serial(CharDevice):
    """``<serial>``: a serial port; on x86 an ISA one (COM1 = port 0) unless the target
    says usb-serial, pci-serial or isa-debug (QEMU's debug console)."""

    TAG = "serial"
    SPICEVMC_OK = False
    target: SerialTarget | None = child(SerialTarget)
    #: target type='isa-serial' was in the XML (libvirt numbers those ports first)
    isa_explicit: bool = internal(False)

    def check(self, ctx: ParseContext) -> None:
        super().check(ctx)
        if self.target is None:
            self.target = SerialTarget()
        target = self.target
        self.isa_explicit = target.type == SerialTargetType.ISA_SERIAL
        if target.type is None:  # qemuDomainChrDefPostParse, for x86
            target.type = SerialTargetType.ISA_SERIAL
        if target.model is None or target.model.name is None:
            model = DEFAULT_SERIAL_MODEL.get(target.type)
            if model is not None:
                target.model = SerialModel(name=model)
        name = target.model.name if target.model is not None else None
        if name is not None and SERIAL_MODEL_TARGET[name] != target.type:
            raise target.error(f"target model '{name}' requires target type "
                               f"'{SERIAL_MODEL_TARGET[name]}'")
        expected = SERIAL_ADDRESS[target.type]
        if self.address is not None and self.address.VARIANT != expected:
            what = f"address type '{expected}'" if expected else "no address"
            raise self.address.error(f"target type '{target.type}' requires {what}")

    def address_types(self) -> tuple[str, ...] | None:
        return None  # by target type (check)

    @property
    def target_type(self) -> SerialTargetType:
        return self.target.type if self.target and self.target.type else \
            SerialTargetType.ISA_SERIAL

    @property
    def model(self) -> SerialModelName | None:
        if self.target is None or self.target.model is None:
            return None
        return self.target.model.name

    @property
    def port(self) -> int:
        return self.target.port if self.target is not None and self.target.port else 0

    @property
    def port_unset(self) -> bool:
        return self.target is None or self.target.port is None


class ConsoleTarget(Element):
    TAG = "target"
    type: ConsoleTargetType | None = attr(ConsoleTargetType)
    port: int | None = attr(Int(0, 2**31 - 1))


class Console(CharDevice):
    """``<console>``: the first one with target 'serial' is serial port 0 (libvirt's
    alias: one device, two elements); target 'virtio' is a virtio console (hvc)."""

    TAG = "console"
    SPICEVMC_OK = False
    target: ConsoleTarget | None = child(ConsoleTarget)

    def check(self, ctx: ParseContext) -> None:
        super().check(ctx)
        if self.target is None:
            self.target = ConsoleTarget()
        if self.target.type is None:
            self.target.type = ConsoleTargetType.SERIAL

    @property
    def target_type(self) -> ConsoleTargetType:
        return self.target.type if self.target and self.target.type else \
            ConsoleTargetType.SERIAL

    @property
    def port(self) -> int:
        return self.target.port if self.target is not None and self.target.port else 0

    def address_types(self) -> tuple[str, ...] | None:
        # A serial console is serial port 0 (libvirt writes that port's address here).
        return None if self.target_type == ConsoleTargetType.SERIAL else ("virtio-serial",)


class ParallelTarget(Element):
    TAG = "target"
    port: int | None = attr(Int(0, 2**31 - 1))


class Parallel(CharDevice):
    """``<parallel>``: an ISA parallel port."""

    TAG = "parallel"
    SPICEVMC_OK = False
    target: ParallelTarget | None = child(ParallelTarget)

    def address_types(self) -> tuple[str, ...] | None:
        return ("isa",)

    @property
    def port(self) -> int:
        return self.target.port if self.target is not None and self.target.port else 0


class ChannelTarget(Element):
    TAG = "target"
    type: ChannelTargetType = attr(ChannelTargetType, required=True)
    name: str | None = attr(Str(r"[A-Za-z0-9_.\-]+", what="channel name"))
    state: ChannelState | None = attr(ChannelState)  # live XML only
    address: str | None = attr(Str(what="IPv4 address"))
    port: int | None = attr(Int(0, 65535))

    def check(self, ctx: ParseContext) -> None:
        self.state = None  # libvirt reads it from live XML only (what the guest did)
        if self.type != ChannelTargetType.GUESTFWD:
            return
        if self.address is None:
            raise self.error("a guestfwd channel needs a target address")
        import ipaddress  # only for guestfwd channels (start-up time)

        try:
            ipaddress.IPv4Address(self.address)
        except ValueError:
            raise self.error(f"guestfwd channel address '{self.address}' is not an IPv4 "
                             "address") from None
        if self.port is None:
            raise self.error("missing attribute 'port'")


class Channel(CharDevice):
    """``<channel>``: a named virtio-serial port (the guest agent's, spice's vdagent) or
    a guestfwd (a TCP address in the user network that reaches the host end)."""

    TAG = "channel"
    target: ChannelTarget = child(ChannelTarget, required=True)

    def auto_path(self) -> bool:
        return self.target is not None and self.target.type in (ChannelTargetType.VIRTIO,
                                                                ChannelTargetType.XEN)

    def check(self, ctx: ParseContext) -> None:
        super().check(ctx)
        if self.type == CharType.SPICEVMC and self.target.type != ChannelTargetType.VIRTIO:
            raise self.error("a spicevmc channel needs target type 'virtio'")

    def address_types(self) -> tuple[str, ...] | None:
        return ("virtio-serial",)

    @property
    def target_type(self) -> ChannelTargetType:
        return self.target.type

    @property
    def virtio_address(self) -> VirtioSerialAddress | None:
        addr = self.address
        return addr if isinstance(addr, VirtioSerialAddress) else None


def _same_source(a: CharDevice, b: CharDevice) -> bool:
    """libvirt's virDomainChrSourceDefIsEqual, on what the two mean."""
    return a.type == b.type and a.chr == b.chr


def console_compat(serials: list[Serial], consoles: list[Console]) -> list[XMLError]:
    """libvirt's console compatibility (virDomainDefAddConsoleCompat), in place:

    the first console may be a serial port's other name: with no ``<serial>`` it becomes
    serial port 0; with one whose source differs, it is replaced by a plain alias of
    it.  A guest with ISA serial ports and no serial console gets that alias first.
    Only the first console may be of target 'serial'.  Console ports are their
    positions (libvirt ignores the XML's)."""
    errors = [c.error("only the first console can be a serial port")
              for c in consoles[1:] if c.target_type == ConsoleTargetType.SERIAL]
    if errors:
        return errors
    if consoles and consoles[0].target_type == ConsoleTargetType.SERIAL:
        first = consoles[0]
        if not serials:
            serials.append(Serial(type=first.type, sources=list(first.sources),
                                  protocol=first.protocol, log=first.log,
                                  target=SerialTarget(type=SerialTargetType.ISA_SERIAL,
                                                      port=0, model=SerialModel(
                                                          name=SerialModelName.ISA_SERIAL)),
                                  node=first.node))
        elif not _same_source(serials[0], first):
            consoles[0] = Console(type=serials[0].type, sources=list(serials[0].sources),
                                  protocol=serials[0].protocol, log=serials[0].log,
                                  target=ConsoleTarget(type=ConsoleTargetType.SERIAL),
                                  node=first.node)
    elif serials and serials[0].target_type in (SerialTargetType.ISA_SERIAL,):
        s0 = serials[0]
        consoles.insert(0, Console(type=s0.type, sources=list(s0.sources),
                                   protocol=s0.protocol, log=s0.log,
                                   target=ConsoleTarget(type=ConsoleTargetType.SERIAL)))
    for n, console in enumerate(consoles):
        assert console.target is not None
        console.target.port = n
    return []


def assign_ports(devs: list[Serial] | list[Parallel]) -> list[XMLError]:
    """Ports for serial and parallel ports without one, as libvirt numbers them:
    ``<target type='isa-serial'>`` ports take the lowest free of 0..3
    (virDomainChrIsaSerialDefPostParse), every other one past the highest port of its
    kind (virDomainChrDefPostParse).  Errors for a port used twice."""
    errors: list[XMLError] = []
    used: dict[int, Element] = {}
    for dev in devs:
        target = dev.target
        if target is not None and target.port is not None:
            if target.port in used:
                what = "serial" if isinstance(dev, Serial) else "parallel"
                errors.append(target.error(f"{what} port {target.port} is defined twice"))
            used[target.port] = dev
    if errors:
        return errors
    for dev in devs:
        if isinstance(dev, Serial) and dev.isa_explicit and dev.port_unset:
            free = [p for p in range(4) if p not in used]
            if free:
                assert dev.target is not None
                dev.target.port = free[0]
                used[free[0]] = dev
    for dev in devs:
        if dev.target is None:
            dev.target = ParallelTarget() if isinstance(dev, Parallel) else SerialTarget()
        if dev.target.port is None:
            dev.target.port = max(used, default=-1) + 1
            used[dev.target.port] = dev
    return errors


def chardev_post_parse(serials: list[Serial], parallels: list[Parallel],
                       consoles: list[Console]) -> list[XMLError]:
    """libvirt's post-parse of the character devices, in its order: ports, then the
    console compatibility."""
    errors = assign_ports(serials) + assign_ports(parallels)
    return errors or console_compat(serials, consoles)
