"""``<shmem>``: memory shared with other guests or host processes (ivshmem): a file in
/dev/shm (``ivshmem-plain``) or the memory of an ivshmem server, with interrupts
(``ivshmem-doorbell``)."""

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
    text,
)

#: libvirt's default size of a plain shared memory region (qemuDomainShmemDefPostParse).
DEFAULT_SIZE = 4 << 20
#: Where libvirt's ivshmem server listens when <server> names no path.
DEFAULT_SERVER = "/var/lib/libvirt/shmem-{name}-sock"


class ShmemModel(ValueSet):
    IVSHMEM = "ivshmem"
    IVSHMEM_PLAIN = "ivshmem-plain"
    IVSHMEM_DOORBELL = "ivshmem-doorbell"


class ShmemRole(ValueSet):
    MASTER = "master"
    PEER = "peer"


class ShmemModelEl(Element):
    TAG = "model"
    type: ShmemModel = attr(ShmemModel, required=True)


def _unit_bytes(unit: str) -> int | None:
    """Bytes in a libvirt memory unit (the domain model's table)."""
    from qemuwrap.conf.memory import memory_unit_bytes

    return memory_unit_bytes(unit)


class ShmemSize(Element):
    """``<size unit>N</size>``: bytes unless a unit says otherwise (libvirt reads it with
    virDomainParseScaledValue at scale 1); a power of two, 1 MiB or more."""

    TAG = "size"
    unit: str | None = attr(Str(r"[A-Za-z]+", what="unit"))
    value: int = text(Int(0, 2**64 - 1), required=True)
    #: the size in bytes (check)
    bytes: int = 0

    def check(self, ctx: ParseContext) -> None:
        scale = _unit_bytes(self.unit or "b")
        if scale is None:
            raise self.error(f"unsupported unit='{self.unit}'")
        self.bytes = self.value * scale
        if self.bytes & (self.bytes - 1) or self.bytes < 1 << 20:
            raise self.error("shmem size must be a power of two and at least 1 MiB")


class ShmemServer(Element):
    TAG = "server"
    path: str | None = attr(Path())


class ShmemMSI(Element):
    TAG = "msi"
    vectors: int | None = attr(Int(1, 2**32 - 1))
    ioeventfd: bool | None = attr(ON_OFF)


class Shmem(PCIDevice):
    TAG = "shmem"
    name: str = attr(Str(r"[^/]+", empty=False, what="shmem name"), required=True)
    role: ShmemRole | None = attr(ShmemRole)
    model_el: ShmemModelEl | None = child(ShmemModelEl)
    size: ShmemSize | None = child(ShmemSize)
    server: ShmemServer | None = child(ShmemServer)
    msi: ShmemMSI | None = child(ShmemMSI)

    def check(self, ctx: ParseContext) -> None:
        if self.name in (".", ".."):
            raise self.error(f"shmem name cannot be '{self.name}'")
        if self.model_el is None:
            self.model_el = ShmemModelEl(type=ShmemModel.IVSHMEM)
        model = self.model_el.type
        if model == ShmemModel.IVSHMEM:
            return
        if self.server is None:
            if model == ShmemModel.IVSHMEM_DOORBELL:
                raise self.error("shmem model 'ivshmem-doorbell' is supported only with "
                                 "<server>")
            if self.msi is not None:
                raise self.msi.error(f"shmem model '{model}' doesn't support msi")
            return
        if model == ShmemModel.IVSHMEM_PLAIN:
            raise self.server.error("shmem model 'ivshmem-plain' is supported only without "
                                    "<server>")
        if self.size is not None:
            raise self.size.error(f"shmem model '{model}' does not support a size")
        if self.msi is None:
            self.msi = ShmemMSI()
        if self.msi.ioeventfd is None:
            self.msi.ioeventfd = True

    @property
    def model(self) -> ShmemModel:
        return self.model_el.type if self.model_el is not None else ShmemModel.IVSHMEM

    @property
    def size_bytes(self) -> int:
        """The region's size (libvirt's default 4 MiB without a server)."""
        if self.size is not None:
            return self.size.bytes
        return 0 if self.server is not None else DEFAULT_SIZE

    @property
    def server_path(self) -> str:
        assert self.server is not None
        return self.server.path or DEFAULT_SERVER.format(name=self.name)

    def address_types(self) -> tuple[str, ...]:
        return ("pci",)
