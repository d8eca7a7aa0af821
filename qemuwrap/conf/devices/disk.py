"""``<disk>``: what a guest's disks, cdroms, floppies and LUNs are made of (the storage
source and its backing chain) and where they sit (bus, target, address).

The model reads libvirt's whole ``<disk>`` element (virDomainDiskDefParseXML) and holds
libvirt's own rules that do not depend on a hypervisor: the bus a target name implies,
which source attributes a disk type takes, cdroms being read-only, and the drive address
a disk without one gets (:func:`assign_drive_addresses`, virDomainDiskDefAssignAddress).
What QEMU can do with it is judged in ``qemu/validate/disk.py``.
"""

from __future__ import annotations

from qemuwrap.conf.devices.address import DriveAddress, PCIDevice
from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import (
    ON_OFF,
    YES_NO,
    Choice,
    Element,
    Int,
    ParseContext,
    Path,
    Str,
    Token,
    attr,
    child,
    children,
    custom,
    flag,
    text,
    text_child,
)
from qemuwrap.conf.xmlreader import Node
from qemuwrap.conf.xmlwriter import Writer
from qemuwrap.hints import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

    from qemuwrap.conf.domain import Domain


# --------------------------------------------------------------------------- value sets
class DiskType(ValueSet):
    FILE = "file"
    BLOCK = "block"
    DIR = "dir"
    NETWORK = "network"
    VOLUME = "volume"
    NVME = "nvme"
    VHOSTUSER = "vhostuser"


class DiskDevice(ValueSet):
    DISK = "disk"
    CDROM = "cdrom"
    FLOPPY = "floppy"
    LUN = "lun"


class DiskBus(ValueSet):
    IDE = "ide"
    FDC = "fdc"
    SCSI = "scsi"
    VIRTIO = "virtio"
    XEN = "xen"
    USB = "usb"
    UML = "uml"
    SATA = "sata"
    SD = "sd"


class DiskModel(ValueSet):
    """virtio-blk's flavour: libvirt's default, or forced (non-)transitional."""

    VIRTIO = "virtio"
    VIRTIO_TRANSITIONAL = "virtio-transitional"
    VIRTIO_NON_TRANSITIONAL = "virtio-non-transitional"


class DiskFormat(ValueSet):
    """libvirt's image formats (virStorageFileFormat, without 'none')."""

    RAW = "raw"
    DIR = "dir"
    BOCHS = "bochs"
    CLOOP = "cloop"
    DMG = "dmg"
    ISO = "iso"
    VPC = "vpc"
    VDI = "vdi"
    FAT = "fat"
    VHD = "vhd"
    PLOOP = "ploop"
    COW = "cow"
    QCOW = "qcow"
    QCOW2 = "qcow2"
    QED = "qed"
    VMDK = "vmdk"


#: Formats that can have a backing image (libvirt's VIR_STORAGE_FILE_BACKING and after).
BACKING_FORMATS = frozenset({DiskFormat.COW, DiskFormat.QCOW, DiskFormat.QCOW2,
                             DiskFormat.QED, DiskFormat.VMDK})


class DriverFormat(Choice[DiskFormat]):
    """``<driver type>``: a format, or Xen's old 'aio', which libvirt reads as raw."""

    def __init__(self) -> None:
        super().__init__(DiskFormat)
        self.lookup = {**self.lookup, "aio": DiskFormat.RAW}


class DriverName(ValueSet):
    QEMU = "qemu"


class CacheMode(ValueSet):
    DEFAULT = "default"
    NONE = "none"
    WRITETHROUGH = "writethrough"
    WRITEBACK = "writeback"
    DIRECTSYNC = "directsync"
    UNSAFE = "unsafe"


class ErrorPolicy(ValueSet):
    STOP = "stop"
    REPORT = "report"
    IGNORE = "ignore"
    ENOSPACE = "enospace"


class IoMode(ValueSet):
    NATIVE = "native"
    THREADS = "threads"
    IO_URING = "io_uring"


class DiscardMode(ValueSet):
    UNMAP = "unmap"
    IGNORE = "ignore"


class DetectZeroes(ValueSet):
    OFF = "off"
    ON = "on"
    UNMAP = "unmap"


class SnapshotMode(ValueSet):
    NO = "no"
    INTERNAL = "internal"
    EXTERNAL = "external"
    MANUAL = "manual"


class StartupPolicy(ValueSet):
    MANDATORY = "mandatory"
    REQUISITE = "requisite"
    OPTIONAL = "optional"


class TrayState(ValueSet):
    OPEN = "open"
    CLOSED = "closed"


class SGIO(ValueSet):
    FILTERED = "filtered"
    UNFILTERED = "unfiltered"


class GeometryTrans(ValueSet):
    NONE = "none"
    AUTO = "auto"
    LBA = "lba"


class NetProtocol(ValueSet):
    NBD = "nbd"
    RBD = "rbd"
    SHEEPDOG = "sheepdog"
    GLUSTER = "gluster"
    ISCSI = "iscsi"
    HTTP = "http"
    HTTPS = "https"
    FTP = "ftp"
    FTPS = "ftps"
    TFTP = "tftp"
    SSH = "ssh"
    VXHS = "vxhs"
    NFS = "nfs"


#: The port a TCP host of each protocol gets when the XML gives none
#: (virStorageSourceNetworkDefaultPort; None: libvirt gives none).
DEFAULT_PORTS: dict[NetProtocol, int | None] = {
    NetProtocol.NBD: 10809, NetProtocol.RBD: None, NetProtocol.SHEEPDOG: 7000,
    NetProtocol.GLUSTER: 24007, NetProtocol.ISCSI: 3260, NetProtocol.HTTP: 80,
    NetProtocol.HTTPS: 443, NetProtocol.FTP: 21, NetProtocol.FTPS: 990,
    NetProtocol.TFTP: 69, NetProtocol.SSH: 22, NetProtocol.VXHS: 9999,
    NetProtocol.NFS: None,
}
#: Protocols whose source names exactly one server (libvirt's builders refuse others).
ONE_HOST = frozenset({NetProtocol.NBD, NetProtocol.SHEEPDOG, NetProtocol.ISCSI,
                      NetProtocol.HTTP, NetProtocol.HTTPS, NetProtocol.FTP, NetProtocol.FTPS,
                      NetProtocol.TFTP, NetProtocol.SSH, NetProtocol.VXHS, NetProtocol.NFS})


class HostTransport(ValueSet):
    TCP = "tcp"
    UNIX = "unix"
    RDMA = "rdma"


class PoolMode(ValueSet):
    HOST = "host"
    DIRECT = "direct"


class SourceSocketType(ValueSet):
    """``<source type>`` of a vhostuser (a UNIX socket) or nvme (a PCI device) disk."""

    UNIX = "unix"
    PCI = "pci"


class SecretType(ValueSet):
    ISCSI = "iscsi"
    CEPH = "ceph"
    PASSPHRASE = "passphrase"
    VOLUME = "volume"
    TLS = "tls"
    VTPM = "vtpm"


class EncryptionFormat(ValueSet):
    DEFAULT = "default"
    QCOW = "qcow"
    LUKS = "luks"
    LUKS2 = "luks2"
    LUKS_ANY = "luks-any"


class EncryptionEngine(ValueSet):
    QEMU = "qemu"
    LIBRBD = "librbd"


class MirrorJob(ValueSet):
    COPY = "copy"
    ACTIVE_COMMIT = "active-commit"


class MirrorReady(ValueSet):
    YES = "yes"
    ABORT = "abort"
    PIVOT = "pivot"


class PRMode(ValueSet):
    CLIENT = "client"
    SERVER = "server"


class SliceType(ValueSet):
    STORAGE = "storage"


# --------------------------------------------------------------------------- target names
#: libvirt's bus for a target name's prefix (virDomainDiskDefParseXML), longest first.
BUS_BY_PREFIX = {"xvd": DiskBus.XEN, "ubd": DiskBus.UML, "hd": DiskBus.IDE,
                 "sd": DiskBus.SCSI, "vd": DiskBus.VIRTIO, "fd": DiskBus.FDC}
#: A target name: a prefix and one to three letters (sda .. sdzzz).  libvirt reads any
#: number of letters; four would already be disk 475254.
TARGET_PATTERN = r"(xvd|ubd|hd|sd|vd|fd)[a-z]{1,3}"


def target_prefix(dev: str) -> str:
    return next(p for p in BUS_BY_PREFIX if dev.startswith(p))


def target_index(dev: str) -> int:
    """virDiskNameToIndex: sda=0, sdz=25, sdaa=26, sdzz=701, sdaaa=702."""
    n = 0
    for ch in dev[len(target_prefix(dev)):]:
        n = n * 26 + (ord(ch) - ord("a") + 1)
    return n - 1


# --------------------------------------------------------------------------- <driver>
def _read_bytes(tag: str, default_unit: str) -> Any:
    """``<tag unit='...'>N</tag>`` in bytes (virDomainParseScaledValue), written back as
    ``unit='bytes'`` like libvirt."""

    def read(parent: Node, ctx: ParseContext) -> int | None:
        found = parent.take(tag)
        if not found:
            return None
        for extra in found[1:]:
            ctx.record(extra.error(f"element '{tag}' can only appear once"))
        node = found[0]
        node.text_used = True
        unit = node.get("unit") or default_unit
        ctx.errors.extend(node.leftovers())
        from qemuwrap.conf.domain import memory_unit_bytes  # domain imports devices
        from qemuwrap.conf.xmlreader import to_int

        scale = memory_unit_bytes(unit)
        if scale is None:
            raise node.error(f"unsupported unit='{unit}'")
        try:
            value = to_int(node.stripped_text, "value", 0, 2**64 - 1) * scale
        except ValueError as exc:
            raise node.error(str(exc)) from None
        if value >= 2**64:
            raise node.error(f"size {node.stripped_text} {unit} is too large")
        return value

    def write(value: int, w: Writer) -> None:
        w.text(tag, value, ("unit", "bytes"))

    rng = (f'<optional><element name="{tag}"><optional><attribute name="unit"><data '
           'type="string"><param name="pattern">[bB]([yY][tT][eE][sS]?)?|[kKmMgGtTpPeE]'
           '([iI]?[bB])?</param></data></attribute></optional><data type="unsignedLong">'
           '<param name="pattern">\\s*[0-9]+\\s*</param></data></element></optional>')
    return custom(read, write, rng=rng)


class MetadataCache(Element):
    """``<metadata_cache>``: the qcow2 metadata cache's maximum size."""

    TAG = "metadata_cache"
    max_size: int | None = _read_bytes("max_size", "bytes")


class DiskDriver(Element):
    """``<driver>``: how QEMU opens and presents the image (attribute order: libvirt's)."""

    TAG = "driver"
    name: DriverName | None = attr(DriverName)
    type: DiskFormat | None = attr(DriverFormat())
    cache: CacheMode | None = attr(CacheMode)
    error_policy: ErrorPolicy | None = attr(ErrorPolicy)
    rerror_policy: ErrorPolicy | None = attr(ErrorPolicy)
    io: IoMode | None = attr(IoMode)
    ioeventfd: bool | None = attr(ON_OFF)
    event_idx: bool | None = attr(ON_OFF)
    copy_on_read: bool | None = attr(ON_OFF)
    discard: DiscardMode | None = attr(DiscardMode)
    iothread: int | None = attr(Int(1, 2**32 - 1))
    detect_zeroes: DetectZeroes | None = attr(DetectZeroes)
    queues: int | None = attr(Int(1, 2**32 - 1))
    queue_size: int | None = attr(Int(1, 2**32 - 1))
    iommu: bool | None = attr(ON_OFF)
    ats: bool | None = attr(ON_OFF)
    packed: bool | None = attr(ON_OFF)
    page_per_vq: bool | None = attr(ON_OFF)
    metadata_cache: MetadataCache | None = child(MetadataCache)

    def check(self, ctx: ParseContext) -> None:
        if self.rerror_policy == ErrorPolicy.ENOSPACE:
            raise self.error("rerror_policy='enospace' is not valid (only error_policy "
                             "takes it)")


# --------------------------------------------------------------------------- <source>
class Host(Element):
    """``<host>``: one server of a network disk (a TCP name and port, or a socket)."""

    TAG = "host"
    name: str | None = attr(Str(empty=False))
    port: int | None = attr(Int(0, 65535))
    transport: HostTransport | None = attr(HostTransport)
    socket: str | None = attr(Path())

    def check(self, ctx: ParseContext) -> None:
        if self.transport == HostTransport.UNIX:
            if self.socket is None:
                raise self.error("missing attribute 'socket' for transport 'unix'")
        else:
            if self.socket is not None:
                raise self.error(f"transport '{self.transport or 'tcp'}' does not take "
                                 "attribute 'socket'")
            if self.name is None:
                raise self.error("missing attribute 'name'")

    @property
    def is_unix(self) -> bool:
        return self.transport == HostTransport.UNIX


class SecretRef(Element):
    """``<secret type usage|uuid/>``: a secret held by libvirt's secret store."""

    TAG = "secret"
    type: SecretType | None = attr(SecretType)
    usage: str | None = attr(Str())
    uuid: str | None = attr(Str(r"[0-9a-fA-F-]{32,36}", what="UUID"))


class Auth(Element):
    """``<auth username>``: credentials for a network disk."""

    TAG = "auth"
    username: str | None = attr(Str())
    secret: SecretRef | None = child(SecretRef)


class Cipher(Element):
    TAG = "cipher"
    name: str = attr(Token(), required=True)
    size: int = attr(Int(1, 2**32 - 1), required=True)
    mode: str | None = attr(Token())
    hash: str | None = attr(Token())


class IVGen(Element):
    TAG = "ivgen"
    name: str = attr(Token(), required=True)
    hash: str | None = attr(Token())


class Encryption(Element):
    """``<encryption format engine>``: an encrypted image and the secret that opens it."""

    TAG = "encryption"
    format_: EncryptionFormat | None = attr(EncryptionFormat, xml="format")
    engine: EncryptionEngine | None = attr(EncryptionEngine)
    secrets: list[SecretRef] = children(SecretRef)
    cipher: Cipher | None = child(Cipher)
    ivgen: IVGen | None = child(IVGen)


class SnapshotName(Element):
    """``<snapshot name>``: an RBD snapshot to open."""

    TAG = "snapshot"
    name: str = attr(Str(empty=False), required=True)


class ConfigFile(Element):
    """``<config file>``: a Ceph configuration file."""

    TAG = "config"
    file: str = attr(Path(), required=True)


class IQN(Element):
    TAG = "iqn"
    name: str = attr(Str(empty=False), required=True)


class Initiator(Element):
    """``<initiator><iqn name/></initiator>``: the iSCSI initiator's name."""

    TAG = "initiator"
    iqn: IQN = child(IQN, required=True)


class PRSource(Element):
    TAG = "source"
    type: SourceSocketType = attr(SourceSocketType, required=True)
    path: str = attr(Path(), required=True)
    mode: PRMode = attr(PRMode, required=True)


class Reservations(Element):
    """``<reservations managed>``: SCSI persistent reservations through a helper."""

    TAG = "reservations"
    managed: bool = attr(YES_NO, required=True)
    source: PRSource | None = child(PRSource)

    def check(self, ctx: ParseContext) -> None:
        if not self.managed and self.source is None:
            raise self.error("unmanaged reservations need a <source> (the helper's socket)")


class SeclabelLabel(Element):
    TAG = "label"
    value: str = text(Str(), required=True)


class SourceSeclabel(Element):
    """``<seclabel>`` of one image: relabelling policy of the security driver (not
    enforced by qemuwrap, which runs no security driver)."""

    TAG = "seclabel"
    model: str | None = attr(Token())
    relabel: bool | None = attr(YES_NO)
    labelskip: bool | None = attr(YES_NO)
    label: SeclabelLabel | None = child(SeclabelLabel)


class Cookie(Element):
    TAG = "cookie"
    name: str = attr(Str(r"[!#-'*+.0-9A-Z^_`a-z|~-]+", what="cookie name"), required=True)
    value: str = text(Str(), required=True)


class Cookies(Element):
    TAG = "cookies"
    cookies: list[Cookie] = children(Cookie)


class Readahead(Element):
    TAG = "readahead"
    size: int = attr(Int(1, 2**64 - 1), required=True)


class Timeout(Element):
    TAG = "timeout"
    seconds: int = attr(Int(1, 2**64 - 1), required=True)


class SSL(Element):
    TAG = "ssl"
    verify: bool = attr(YES_NO, required=True)


class Identity(Element):
    """``<identity user group>``: the NFS user and group (``+N`` for a numeric id)."""

    TAG = "identity"
    user: str | None = attr(Str(r"\+[0-9]{1,10}|[A-Za-z_][A-Za-z0-9_.-]*", what="user"))
    group: str | None = attr(Str(r"\+[0-9]{1,10}|[A-Za-z_][A-Za-z0-9_.-]*", what="group"))


class Reconnect(Element):
    """``<reconnect>``: a vhost-user disk's (enabled, timeout) or an NBD disk's (delay)
    reconnection."""

    TAG = "reconnect"
    enabled: bool | None = attr(YES_NO)
    timeout: int | None = attr(Int(0, 2**32 - 1))
    delay: int | None = attr(Int(0, 2**32 - 1))


class NVMeAddress(Element):
    """The host PCI address of an NVMe disk's controller (``<address>`` without type)."""

    TAG = "address"
    domain: int = attr(Int(0, 0xFFFF, base=0, hex_format=4), default=0)
    bus: int = attr(Int(0, 0xFF, base=0, hex_format=2), default=0)
    slot: int = attr(Int(0, 0x1F, base=0, hex_format=2), default=0)
    function: int = attr(Int(0, 7, base=0, hex_format=1), default=0)

    def __str__(self) -> str:
        return f"{self.domain:04x}:{self.bus:02x}:{self.slot:02x}.{self.function}"


class Slice(Element):
    TAG = "slice"
    type: SliceType = attr(SliceType, required=True)
    offset: int = attr(Int(0, 2**64 - 1), required=True)
    size: int = attr(Int(1, 2**64 - 1), required=True)


class Slices(Element):
    """``<slices>``: the part of the storage the image lives in."""

    TAG = "slices"
    slices: list[Slice] = children(Slice)

    @property
    def storage(self) -> Slice | None:
        return next((s for s in self.slices if s.type == SliceType.STORAGE), None)


#: The ``<source>`` attributes each disk type takes (libvirt reads only these).
SOURCE_ATTRS: dict[DiskType, frozenset[str]] = {
    DiskType.FILE: frozenset({"file", "fdgroup"}),
    DiskType.BLOCK: frozenset({"dev"}),
    DiskType.DIR: frozenset({"dir"}),
    DiskType.NETWORK: frozenset({"protocol", "name", "query", "tls", "tlsHostname"}),
    DiskType.VOLUME: frozenset({"pool", "volume", "mode"}),
    DiskType.NVME: frozenset({"type", "managed", "namespace"}),
    DiskType.VHOSTUSER: frozenset({"type", "path"}),
}
_TYPED_ATTRS = frozenset().union(*SOURCE_ATTRS.values())


class DiskSource(Element):
    """``<source>``: where the image is, for every disk type (one element, as libvirt's;
    :meth:`check_for` says which attributes a type takes)."""

    TAG = "source"
    file: str | None = attr(Path())
    fdgroup: str | None = attr(Token())
    dev: str | None = attr(Path())
    dir: str | None = attr(Path())
    protocol: NetProtocol | None = attr(NetProtocol)
    name: str | None = attr(Str())
    query: str | None = attr(Str())
    tls: bool | None = attr(YES_NO)
    tlsHostname: str | None = attr(Str(r"[A-Za-z0-9.:_\[\]-]+", what="host name"))
    pool: str | None = attr(Str(empty=False))
    volume: str | None = attr(Str(empty=False))
    mode: PoolMode | None = attr(PoolMode)
    type: SourceSocketType | None = attr(SourceSocketType)
    path: str | None = attr(Path())
    managed: bool | None = attr(YES_NO)
    namespace: int | None = attr(Int(1, 2**32 - 1))
    startupPolicy: StartupPolicy | None = attr(StartupPolicy)
    index: int | None = attr(Int(1, 2**32 - 1))
    hosts: list[Host] = children(Host)
    snapshot: SnapshotName | None = child(SnapshotName)
    config: ConfigFile | None = child(ConfigFile)
    nvme_address: NVMeAddress | None = child(NVMeAddress)
    initiator: Initiator | None = child(Initiator)
    cookies: Cookies | None = child(Cookies)
    ssl: SSL | None = child(SSL)
    readahead: Readahead | None = child(Readahead)
    timeout: Timeout | None = child(Timeout)
    identity: Identity | None = child(Identity)
    reconnect: Reconnect | None = child(Reconnect)
    slices: Slices | None = child(Slices)
    seclabels: list[SourceSeclabel] = children(SourceSeclabel)
    auth: Auth | None = child(Auth)
    encryption: Encryption | None = child(Encryption)
    reservations: Reservations | None = child(Reservations)

    def check_for(self, kind: DiskType) -> None:
        """libvirt's per-type reading of ``<source>`` (virDomainStorageSourceParse):
        the attributes ``kind`` takes are there, no others."""
        allowed = SOURCE_ATTRS[kind]
        for field in self._attrs:
            if field.xml in _TYPED_ATTRS and field.xml not in allowed \
                    and self.__dict__[field.name] is not None:
                raise self.error(f"unsupported attribute '{field.xml}' for a "
                                 f"type='{kind}' disk")
        if kind in (DiskType.FILE, DiskType.BLOCK, DiskType.DIR):
            wanted = {DiskType.FILE: "file", DiskType.BLOCK: "dev", DiskType.DIR: "dir"}[kind]
            if getattr(self, wanted) is None:
                raise self.error(f"missing attribute '{wanted}'")
        elif kind == DiskType.NETWORK:
            self._check_network()
        elif kind == DiskType.VOLUME:
            if self.pool is None or self.volume is None:
                raise self.error("a volume source needs attributes 'pool' and 'volume'")
        elif kind == DiskType.NVME:
            if self.type != SourceSocketType.PCI:
                raise self.error("an nvme source needs type='pci'")
            if self.nvme_address is None:
                raise self.error("an nvme source needs the controller's <address>")
        elif kind == DiskType.VHOSTUSER:
            if self.type != SourceSocketType.UNIX or self.path is None:
                raise self.error("a vhostuser source needs type='unix' and a 'path'")
        if kind != DiskType.NVME and self.nvme_address is not None:
            raise self.error("<address> inside <source> is only for type='nvme' disks")

    def _check_network(self) -> None:
        proto = self.protocol
        if proto is None:
            raise self.error("missing attribute 'protocol'")
        if self.name is None and proto != NetProtocol.NBD:
            raise self.error("missing attribute 'name'")
        if proto in (NetProtocol.RBD, NetProtocol.GLUSTER):
            volume, _, image = (self.name or "").partition("/")
            if not volume or not image:
                raise self.error(f"cannot split name '{self.name}' into pool (volume) "
                                 "and image")
        if proto in ONE_HOST and len(self.hosts) != 1:
            raise self.error(f"protocol '{proto}' takes exactly one <host>")
        if proto == NetProtocol.GLUSTER and not self.hosts:
            raise self.error("protocol 'gluster' needs at least one <host>")
        for host in self.hosts:
            if host.is_unix and proto not in (NetProtocol.NBD, NetProtocol.GLUSTER,
                                              NetProtocol.SHEEPDOG):
                raise host.error(f"protocol '{proto}' cannot use a UNIX socket")
            if host.transport == HostTransport.RDMA:
                raise host.error("transport 'rdma' is not supported (libvirt has no "
                                 "QEMU option for it)")
        if self.tls is not None and proto not in (NetProtocol.NBD, NetProtocol.VXHS):
            raise self.error(f"attribute 'tls' is only for protocols nbd and vxhs, "
                             f"not '{proto}'")
        if self.iscsi_lun is None:
            raise self.error(f"cannot read the LUN of iSCSI name '{self.name}'")

    # -- what builders and checks ask -------------------------------------------------
    def path_for(self, kind: DiskType) -> str | None:
        """The local path of a file, block or dir source."""
        return {DiskType.FILE: self.file, DiskType.BLOCK: self.dev,
                DiskType.DIR: self.dir}.get(kind)

    @property
    def pool_and_image(self) -> tuple[str, str]:
        """RBD's pool and image, gluster's volume and path, from ``name``."""
        volume, _, image = (self.name or "").partition("/")
        return volume, image

    @property
    def iscsi_lun(self) -> int | None:
        """``target/lun`` -> lun (0 when absent); None when not a number."""
        if self.protocol != NetProtocol.ISCSI:
            return 0
        _, sep, lun = (self.name or "").partition("/")
        if not sep:
            return 0
        return int(lun) if lun.isascii() and lun.isdigit() else None

    def port_of(self, host: Host) -> int | None:
        """A TCP host's port, or the protocol's default (None: none)."""
        if host.port:
            return host.port
        return DEFAULT_PORTS.get(self.protocol) if self.protocol else None


# --------------------------------------------------------------------------- chains
class BackingFormat(Element):
    TAG = "format"
    type: DiskFormat = attr(DiskFormat, required=True)
    metadata_cache: MetadataCache | None = child(MetadataCache)


class BackingStore(Element):
    """``<backingStore type>``: one image below another; an empty ``<backingStore/>``
    ends the chain (QEMU must not look for one)."""

    TAG = "backingStore"
    type: DiskType | None = attr(DiskType)
    index: int | None = attr(Int(1, 2**32 - 1))
    fmt: BackingFormat | None = child(BackingFormat)
    src: DiskSource | None = child(DiskSource)
    backing: BackingStore | None = child(lambda: BackingStore)

    def check(self, ctx: ParseContext) -> None:
        if self.type is None:
            if self.fmt is not None or self.src is not None or self.backing is not None:
                raise self.error("a <backingStore> without 'type' ends the chain and "
                                 "takes no children")
            return
        if self.type not in (DiskType.FILE, DiskType.BLOCK, DiskType.NETWORK):
            raise self.error(f"unsupported backing store type='{self.type}'")
        if self.fmt is None:
            raise self.error("missing backing store <format>")
        if self.src is None:
            raise self.error("missing backing store <source>")
        self.src.check_for(self.type)

    @property
    def is_terminator(self) -> bool:
        return self.type is None

    @property
    def image_format(self) -> DiskFormat:
        assert self.fmt is not None
        return self.fmt.type


class MirrorFormat(Element):
    TAG = "format"
    type: DiskFormat = attr(DiskFormat, required=True)
    metadata_cache: MetadataCache | None = child(MetadataCache)


class Mirror(Element):
    """``<mirror>``: a block job of a running libvirt guest.  Read and dropped, as
    libvirt drops it from an inactive definition: qemuwrap never runs the job."""

    TAG = "mirror"
    type: DiskType | None = attr(DiskType)
    job: MirrorJob | None = attr(MirrorJob)
    ready: MirrorReady | None = attr(MirrorReady)
    file: str | None = attr(Path())
    format_: DiskFormat | None = attr(DiskFormat, xml="format")
    fmt: MirrorFormat | None = child(MirrorFormat)
    src: DiskSource | None = child(DiskSource)
    backing: BackingStore | None = child(BackingStore)


# --------------------------------------------------------------------------- the rest
class DiskTarget(Element):
    TAG = "target"
    dev: str = attr(Str(TARGET_PATTERN, what="disk target name"), required=True)
    bus: DiskBus | None = attr(DiskBus)
    tray: TrayState | None = attr(TrayState)
    removable: bool | None = attr(ON_OFF)
    rotation_rate: int | None = attr(Int(1, 65535))


class Geometry(Element):
    """``<geometry>``: the disk's BIOS CHS geometry."""

    TAG = "geometry"
    cyls: int = attr(Int(1, 2**32 - 1), required=True)
    heads: int = attr(Int(1, 2**32 - 1), required=True)
    secs: int = attr(Int(1, 2**32 - 1), required=True)
    trans: GeometryTrans | None = attr(GeometryTrans)


class BlockIO(Element):
    """``<blockio>``: block sizes the guest sees."""

    TAG = "blockio"
    logical_block_size: int | None = attr(Int(1, 2**32 - 1))
    physical_block_size: int | None = attr(Int(1, 2**32 - 1))


#: ``<iotune>`` limits, in libvirt's order: (element, QEMU throttle-group property).
IOTUNE_LIMITS = (
    ("total_bytes_sec", "x-bps-total"), ("read_bytes_sec", "x-bps-read"),
    ("write_bytes_sec", "x-bps-write"), ("total_iops_sec", "x-iops-total"),
    ("read_iops_sec", "x-iops-read"), ("write_iops_sec", "x-iops-write"),
    ("total_bytes_sec_max", "x-bps-total-max"), ("read_bytes_sec_max", "x-bps-read-max"),
    ("write_bytes_sec_max", "x-bps-write-max"), ("total_iops_sec_max", "x-iops-total-max"),
    ("read_iops_sec_max", "x-iops-read-max"), ("write_iops_sec_max", "x-iops-write-max"),
    ("size_iops_sec", "x-iops-size"),
    ("total_bytes_sec_max_length", "x-bps-total-max-length"),
    ("read_bytes_sec_max_length", "x-bps-read-max-length"),
    ("write_bytes_sec_max_length", "x-bps-write-max-length"),
    ("total_iops_sec_max_length", "x-iops-total-max-length"),
    ("read_iops_sec_max_length", "x-iops-read-max-length"),
    ("write_iops_sec_max_length", "x-iops-write-max-length"),
)
_LIMIT = Int(0, 2**64 - 1)


class IOTune(Element):
    """``<iotune>``: I/O limits; disks with the same ``group_name`` share them."""

    TAG = "iotune"
    total_bytes_sec: int | None = text_child("total_bytes_sec", _LIMIT)
    read_bytes_sec: int | None = text_child("read_bytes_sec", _LIMIT)
    write_bytes_sec: int | None = text_child("write_bytes_sec", _LIMIT)
    total_iops_sec: int | None = text_child("total_iops_sec", _LIMIT)
    read_iops_sec: int | None = text_child("read_iops_sec", _LIMIT)
    write_iops_sec: int | None = text_child("write_iops_sec", _LIMIT)
    total_bytes_sec_max: int | None = text_child("total_bytes_sec_max", _LIMIT)
    read_bytes_sec_max: int | None = text_child("read_bytes_sec_max", _LIMIT)
    write_bytes_sec_max: int | None = text_child("write_bytes_sec_max", _LIMIT)
    total_iops_sec_max: int | None = text_child("total_iops_sec_max", _LIMIT)
    read_iops_sec_max: int | None = text_child("read_iops_sec_max", _LIMIT)
    write_iops_sec_max: int | None = text_child("write_iops_sec_max", _LIMIT)
    size_iops_sec: int | None = text_child("size_iops_sec", _LIMIT)
    group_name: str | None = text_child("group_name", Str(empty=False))
    total_bytes_sec_max_length: int | None = text_child("total_bytes_sec_max_length", _LIMIT)
    read_bytes_sec_max_length: int | None = text_child("read_bytes_sec_max_length", _LIMIT)
    write_bytes_sec_max_length: int | None = text_child("write_bytes_sec_max_length", _LIMIT)
    total_iops_sec_max_length: int | None = text_child("total_iops_sec_max_length", _LIMIT)
    read_iops_sec_max_length: int | None = text_child("read_iops_sec_max_length", _LIMIT)
    write_iops_sec_max_length: int | None = text_child("write_iops_sec_max_length", _LIMIT)

    def check(self, ctx: ParseContext) -> None:
        """virDomainDiskDefIotuneParse's pairs: a total excludes its read/write parts."""
        for kind in ("bytes_sec", "iops_sec", "bytes_sec_max", "iops_sec_max"):
            total = getattr(self, f"total_{kind}")
            if total and (getattr(self, f"read_{kind}") or getattr(self, f"write_{kind}")):
                raise self.error(f"total and read/write of {kind} cannot be set at the "
                                 "same time")
        for limit, _prop in IOTUNE_LIMITS:
            if limit.endswith("_max") and getattr(self, limit):
                base = getattr(self, limit[:-4])
                if not base:
                    raise self.error(f"{limit} needs {limit[:-4]}")
                if getattr(self, limit) < base:
                    raise self.error(f"{limit} cannot be lower than {limit[:-4]}")

    def limits(self) -> list[tuple[str, int]]:
        """(QEMU throttle property, value) for every limit that is set."""
        return [(prop, getattr(self, name)) for name, prop in IOTUNE_LIMITS
                if getattr(self, name)]


class Transient(Element):
    """``<transient shareBacking>``: changes are thrown away when the guest stops."""

    TAG = "transient"
    shareBacking: bool | None = attr(YES_NO)


def _text_field(tag: str, pattern: str | None = None, what: str = "value") -> Any:
    return text_child(tag, Str(pattern, strip=False, empty=False, what=what))


class Disk(PCIDevice):
    """``<disk>``; children in the order libvirt writes them (virDomainDiskDefFormat)."""

    TAG = "disk"
    type: DiskType = attr(DiskType, default=DiskType.FILE)
    device: DiskDevice = attr(DiskDevice, default=DiskDevice.DISK)
    model: DiskModel | None = attr(DiskModel)
    rawio: bool | None = attr(YES_NO)
    sgio: SGIO | None = attr(SGIO)
    snapshot: SnapshotMode | None = attr(SnapshotMode)
    driver: DiskDriver | None = child(DiskDriver)
    auth: Auth | None = child(Auth)
    src: DiskSource | None = child(DiskSource)
    backing: BackingStore | None = child(BackingStore)
    geometry: Geometry | None = child(Geometry)
    blockio: BlockIO | None = child(BlockIO)
    mirror: Mirror | None = child(Mirror)
    target: DiskTarget = child(DiskTarget, required=True)
    iotune: IOTune | None = child(IOTune)
    readonly: bool = flag("readonly")
    shareable: bool = flag("shareable")
    transient: Transient | None = child(Transient)
    serial: str | None = _text_field("serial")
    wwn: str | None = text_child("wwn", Str(r"(0x)?[0-9a-fA-F]{16}", what="WWN"))
    vendor: str | None = _text_field("vendor", r"[ -~]{1,8}", "vendor (1 to 8 "
                                     "printable ASCII characters)")
    product: str | None = _text_field("product", r"[ -~]{1,16}", "product (1 to 16 "
                                      "printable ASCII characters)")
    encryption: Encryption | None = child(Encryption)

    def check(self, ctx: ParseContext) -> None:
        """libvirt's parse-time and post-parse rules (virDomainDiskDefParseXML,
        virDomainDiskDefPostParse and the common virDomainDiskDefValidate)."""
        self.mirror = None  # a running job's state: libvirt drops it when inactive
        dev = self.target.dev
        prefix = target_prefix(dev)
        if self.device == DiskDevice.FLOPPY and prefix != "fd":
            raise self.target.error(f"a floppy's target must be fdX, not '{dev}'")
        if self.device in (DiskDevice.DISK, DiskDevice.LUN) and prefix == "fd":
            raise self.target.error(f"target '{dev}' names a floppy (use hdX, sdX or vdX)")
        if self.target.bus is None:
            self.target.bus = DiskBus.FDC if self.device == DiskDevice.FLOPPY \
                else BUS_BY_PREFIX[prefix]
        if self.src is not None:
            self.src.check_for(self.type)
            if self.auth is not None and self.src.auth is not None:
                raise self.auth.error("an <auth> is already inside <source>")
            if self.encryption is not None and self.src.encryption is not None:
                raise self.encryption.error("an <encryption> is already inside <source>")
        elif self.device in (DiskDevice.DISK, DiskDevice.LUN):
            raise self.error(f"a {self.device} needs a <source>")
        if self.backing is not None and not self.has_media:
            raise self.backing.error("a disk without a source has no backing chain")
        if self.device == DiskDevice.CDROM:
            if self.bus in (DiskBus.VIRTIO, DiskBus.SD):
                raise self.target.error(f"a cdrom cannot be on bus '{self.bus}' (it has "
                                        "no removable media; use ide, sata, scsi or usb)")
            self.readonly = True  # libvirt: cdroms are always read-only
        if self.device == DiskDevice.LUN and not (
                self.type in (DiskType.BLOCK, DiskType.VOLUME) or (
                    self.type == DiskType.NETWORK and self.src is not None
                    and self.src.protocol == NetProtocol.ISCSI)):
            raise self.error("disk device='lun' is only valid for a block or iSCSI source")
        if self.target.tray is not None and self.device not in (DiskDevice.CDROM,
                                                                DiskDevice.FLOPPY):
            raise self.target.error("attribute 'tray' is only for cdroms and floppies")
        if self.model is not None and self.bus != DiskBus.VIRTIO:
            raise self.error(f"disk model '{self.model}' is only for bus 'virtio'")
        self._check_policy()
        self._check_address()
        # The qemu driver's post-parse (qemuDomainDeviceDiskDefPostParse): driver
        # 'qemu' and format 'raw' unless the XML says otherwise.
        if self.driver is None:
            self.driver = DiskDriver()
        if self.driver.name is None:
            self.driver.name = DriverName.QEMU
        if self.driver.type is None and self.type != DiskType.VOLUME:
            self.driver.type = DiskFormat.RAW
        if self.address is None:  # libvirt's post-parse places it by its target name
            self.address = drive_address_for(self)

    def _check_policy(self) -> None:
        policy = self.src.startupPolicy if self.src is not None else None
        if policy is None:
            return
        if policy == StartupPolicy.REQUISITE and self.device not in (DiskDevice.CDROM,
                                                                     DiskDevice.FLOPPY):
            raise self.error("startupPolicy='requisite' is only for cdroms and floppies")
        if self.type == DiskType.NETWORK:
            raise self.error("startupPolicy is not for network disks")

    def _check_address(self) -> None:
        addr = self.address
        if not isinstance(addr, DriveAddress):
            return
        bus = self.bus
        if bus in (DiskBus.IDE, DiskBus.FDC, DiskBus.SATA) and addr.target != 0:
            raise addr.error(f"attribute 'target' must be 0 for a {bus} disk")
        if bus in (DiskBus.FDC, DiskBus.SATA) and addr.bus != 0:
            raise addr.error(f"attribute 'bus' must be 0 for a {bus} disk")
        if bus == DiskBus.SCSI and addr.bus != 0:
            raise addr.error("a SCSI controller has one bus: attribute 'bus' must be 0")

    def address_types(self) -> tuple[str, ...]:
        bus = self.target.bus
        if bus == DiskBus.VIRTIO:
            return ("pci",)
        if bus == DiskBus.USB:
            return ("usb",)
        if bus in (DiskBus.IDE, DiskBus.SATA, DiskBus.SCSI, DiskBus.FDC):
            return ("drive",)
        return ()

    # -- what the rest of qemuwrap asks of a disk ------------------------------------
    @property
    def source(self) -> str | None:
        """The local file, block device or directory the disk reads (None: an empty
        cdrom or floppy, or storage that is not a local path)."""
        if self.src is None:
            return None
        return self.src.path_for(self.type)

    @source.setter
    def source(self, path: str | None) -> None:
        """A new local image for a file or block disk (its old backing chain, if the
        XML gave one, belonged to the old image: QEMU reads the new one's header)."""
        if path is None:
            self.src = None
            self.backing = None
            return
        if self.type not in (DiskType.FILE, DiskType.BLOCK, DiskType.DIR):
            self.type = DiskType.FILE
        old = self.src
        self.src = DiskSource(startupPolicy=old.startupPolicy if old else None)
        if self.type == DiskType.FILE:
            self.src.file = path
        elif self.type == DiskType.BLOCK:
            self.src.dev = path
        else:
            self.src.dir = path
        self.backing = None

    def stand_in(self, path: str, fmt: DiskFormat | str) -> None:
        """Read the local image ``path`` (of format ``fmt``) instead of this disk's
        storage, as a file disk: for tests that start QEMU without the host's storage
        (a network server, an NVMe controller, a vhost-user daemon, a SCSI LUN)."""
        self.type = DiskType.FILE
        if self.device == DiskDevice.LUN:
            self.device = DiskDevice.DISK  # SCSI passthrough needs a real SCSI device
        self.auth = self.encryption = None
        self.source = path
        self.driver_type = str(fmt)

    @property
    def has_media(self) -> bool:
        """Whether there is an image behind the device (not an empty tray)."""
        return self.src is not None

    @property
    def target_dev(self) -> str:
        return self.target.dev

    @property
    def bus(self) -> DiskBus:
        assert self.target.bus is not None  # filled in by Disk.check
        return self.target.bus

    @property
    def driver_type(self) -> DiskFormat | None:
        return self.driver.type if self.driver is not None else None

    @driver_type.setter
    def driver_type(self, value: str | None) -> None:
        if self.driver is None:
            self.driver = DiskDriver(name=DriverName.QEMU)
        self.driver.type = DiskFormat(value) if value is not None else None

    @property
    def image_format(self) -> DiskFormat:
        """The top image's format: libvirt's qemu driver defaults it to raw."""
        return self.driver_type or DiskFormat.RAW

    @property
    def index(self) -> int:
        """Position encoded in the target name: hda=0, hdb=1, ..., sdaa=26."""
        return target_index(self.target.dev)

    def driver_value(self, name: str) -> Any:
        """A ``<driver>`` attribute, or None when there is no ``<driver>``."""
        return getattr(self.driver, name) if self.driver is not None else None

    @property
    def all_auth(self) -> Auth | None:
        return self.auth or (self.src.auth if self.src is not None else None)

    @property
    def all_encryption(self) -> Encryption | None:
        return self.encryption or (self.src.encryption if self.src is not None else None)

    def chain(self) -> list[tuple[DiskType, DiskFormat, DiskSource]]:
        """The images top first: (type, format, source) of the disk and each backing
        store the XML names."""
        out: list[tuple[DiskType, DiskFormat, DiskSource]] = []
        if self.src is None or not self.has_media:
            return out
        out.append((self.type, self.image_format, self.src))
        node = self.backing
        while node is not None and not node.is_terminator:
            assert node.type is not None and node.src is not None
            out.append((node.type, node.image_format, node.src))
            node = node.backing
        return out

    @property
    def chain_terminated(self) -> bool:
        """Whether the XML says where the chain ends (an empty ``<backingStore/>``):
        else QEMU follows the last image's own header."""
        node = self.backing
        while node is not None:
            if node.is_terminator:
                return True
            node = node.backing
        return False


def insert_disk(disks: list[Disk], disk: Disk) -> None:
    """Put ``disk`` where libvirt's parser puts it (virDomainDiskInsertPreAlloced):
    after the disks of its bus whose target index is lower, before those whose is
    higher; a disk of a new bus goes last.  So vdb written before vda still comes
    after it, in the formatted XML, on the command line and in PCI slot order."""
    at = -1
    for idx in range(len(disks) - 1, -1, -1):
        other = disks[idx]
        if other.target.bus != disk.target.bus:
            continue
        if other.index > disk.index:
            at = idx
        elif at == -1:
            at = idx + 1
    if at == -1:
        disks.append(disk)
    else:
        disks.insert(at, disk)


def in_libvirt_order(disks: list[Disk]) -> list[Disk]:
    """``disks`` as libvirt holds them after parsing them one by one."""
    out: list[Disk] = []
    for disk in disks:
        insert_disk(out, disk)
    return out


_WIDE_SCSI_UNITS = 15  # the qemu driver's wide SCSI bus: 16 ids, 7 is the controller


def drive_address_for(disk: Disk) -> DriveAddress | None:
    """Where a disk without an ``<address>`` sits, from its target name
    (virDomainDiskDefAssignAddress with libvirt's wide SCSI mapping for QEMU)."""
    idx = disk.index
    bus = disk.bus
    if bus == DiskBus.SCSI:
        unit = idx % _WIDE_SCSI_UNITS
        return DriveAddress(controller=idx // _WIDE_SCSI_UNITS, bus=0,
                            unit=unit + 1 if unit >= 7 else unit)
    if bus == DiskBus.IDE:
        return DriveAddress(controller=idx // 4, bus=(idx % 4) // 2, unit=idx % 2)
    if bus == DiskBus.SATA:
        return DriveAddress(controller=idx // 6, bus=0, unit=idx % 6)
    if bus == DiskBus.FDC:
        return DriveAddress(controller=idx // 2, bus=0, unit=idx % 2)
    return None


def assign_drive_addresses(dom: Domain) -> None:
    """libvirt's virDomainDiskDefAssignAddress: a disk without an address sits where its
    target name's index says (hdc: IDE bus 1 unit 0; sdh on SCSI: controller 0 unit 8)."""
    for disk in dom.devices.disks:
        if disk.address is None:
            disk.address = drive_address_for(disk)


__all__ = ["BACKING_FORMATS", "BUS_BY_PREFIX", "DEFAULT_PORTS", "Disk", "DiskBus",
           "DiskDevice", "DiskDriver", "DiskFormat", "DiskModel", "DiskSource", "DiskTarget",
           "DiskType", "NetProtocol", "assign_drive_addresses", "target_index"]
