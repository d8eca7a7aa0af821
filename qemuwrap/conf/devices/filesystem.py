"""``<filesystem>``: host directories shared with the guest — virtio-9p (built into QEMU)
or virtiofs (a virtiofsd companion per filesystem, or an external daemon's socket)."""

from __future__ import annotations

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import (
    ON_OFF,
    Element,
    Int,
    ParseContext,
    Path,
    Str,
    attr,
    child,
    flag,
)


class FilesystemType(ValueSet):
    MOUNT = "mount"
    BLOCK = "block"
    FILE = "file"
    TEMPLATE = "template"
    RAM = "ram"
    BIND = "bind"
    VOLUME = "volume"


class AccessMode(ValueSet):
    PASSTHROUGH = "passthrough"
    MAPPED = "mapped"
    SQUASH = "squash"


class FSDriverType(ValueSet):
    PATH = "path"
    HANDLE = "handle"
    LOOP = "loop"
    NBD = "nbd"
    PLOOP = "ploop"
    VIRTIOFS = "virtiofs"


class WritePolicy(ValueSet):
    IMMEDIATE = "immediate"


class FSModel(ValueSet):
    VIRTIO = "virtio"
    VIRTIO_TRANSITIONAL = "virtio-transitional"
    VIRTIO_NON_TRANSITIONAL = "virtio-non-transitional"


class MultiDevs(ValueSet):
    DEFAULT = "default"
    REMAP = "remap"
    FORBID = "forbid"
    WARN = "warn"


class CacheMode(ValueSet):
    NONE = "none"
    ALWAYS = "always"


class SandboxMode(ValueSet):
    NAMESPACE = "namespace"
    CHROOT = "chroot"


class FSDriver(Element):
    TAG = "driver"
    type: FSDriverType | None = attr(FSDriverType)
    fmt: str | None = attr(Str(r"[a-z0-9]+", what="format"), xml="format")
    wrpolicy: WritePolicy | None = attr(WritePolicy)
    queue: int | None = attr(Int(1, 65535))
    iommu: bool | None = attr(ON_OFF)
    ats: bool | None = attr(ON_OFF)
    packed: bool | None = attr(ON_OFF)


class FSCache(Element):
    TAG = "cache"
    mode: CacheMode = attr(CacheMode, required=True)


class FSSandbox(Element):
    TAG = "sandbox"
    mode: SandboxMode = attr(SandboxMode, required=True)


class FSLock(Element):
    TAG = "lock"
    posix: bool | None = attr(ON_OFF)
    flock: bool | None = attr(ON_OFF)


class FSThreadPool(Element):
    TAG = "thread_pool"
    size: int = attr(Int(1, 65535), required=True)


class FSBinary(Element):
    """``<binary>``: how libvirt runs virtiofsd for this filesystem."""

    TAG = "binary"
    path: str | None = attr(Path())
    xattr: bool | None = attr(ON_OFF)
    cache: FSCache | None = child(FSCache)
    sandbox: FSSandbox | None = child(FSSandbox)
    lock: FSLock | None = child(FSLock)
    thread_pool: FSThreadPool | None = child(FSThreadPool)


class FSSource(Element):
    TAG = "source"
    dir: str | None = attr(Path())
    file: str | None = attr(Path())
    socket: str | None = attr(Path())
    name: str | None = attr(Str())


class FSTarget(Element):
    TAG = "target"
    dir: str = attr(Str(empty=False), required=True)  # the mount tag for 9p and virtiofs


class Filesystem(PCIDevice):
    TAG = "filesystem"
    type: FilesystemType = attr(FilesystemType, default=FilesystemType.MOUNT)
    accessmode: AccessMode | None = attr(AccessMode)
    model: FSModel | None = attr(FSModel)
    multidevs: MultiDevs | None = attr(MultiDevs)
    fmode: int | None = attr(Int(0, 0o777, base=8, octal_format=4))  # libvirt: base 8
    dmode: int | None = attr(Int(0, 0o777, base=8, octal_format=4))
    driver: FSDriver | None = child(FSDriver)
    binary: FSBinary | None = child(FSBinary)
    source: FSSource = child(FSSource, required=True)
    target: FSTarget = child(FSTarget, required=True)
    readonly: bool = flag("readonly")

    def check(self, ctx: ParseContext) -> None:
        if self.virtiofs:
            if self.source.dir is None and self.source.socket is None:
                raise self.source.error("a virtiofs filesystem needs <source dir=...> or "
                                        "<source socket=...>")
            if self.source.socket is not None and self.binary is not None:
                raise self.binary.error("<binary> is for a virtiofsd qemuwrap starts; "
                                        "<source socket> names a daemon already running")
        elif self.binary is not None:
            raise self.binary.error("<binary> is only for driver type='virtiofs'")
        elif self.source.socket is not None:
            raise self.source.error("attribute 'socket' is only for driver type='virtiofs'")

    @property
    def virtiofs(self) -> bool:
        return self.driver is not None and self.driver.type == FSDriverType.VIRTIOFS
