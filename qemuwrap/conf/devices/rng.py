"""``<rng>``: a virtio random number generator and its host source (a file such as
/dev/urandom, an EGD daemon over a character device, or QEMU's builtin generator)."""

from __future__ import annotations

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.devices.chardev import (
    CharLog,
    CharProtocol,
    CharSource,
    CharType,
    check_chr_source,
    chr_log,
    chr_protocol,
    chr_sources,
)
from qemuwrap.conf.devices.virtio import VirtioDriver
from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import Element, Int, ParseContext, Path, attr, child, text

#: libvirt's default source of model='random' (qemuDomainRNGDefPostParse).
DEFAULT_RANDOM_FILE = "/dev/random"


class RNGModel(ValueSet):
    VIRTIO = "virtio"
    VIRTIO_TRANSITIONAL = "virtio-transitional"
    VIRTIO_NON_TRANSITIONAL = "virtio-non-transitional"


class RNGBackendModel(ValueSet):
    RANDOM = "random"
    EGD = "egd"
    BUILTIN = "builtin"


class RNGRate(Element):
    """``<rate bytes period>``: at most ``bytes`` per ``period`` ms (default 1000)."""

    TAG = "rate"
    bytes: int = attr(Int(1, 2**32 - 1), required=True)
    period: int | None = attr(Int(1, 2**32 - 1))


class RNGBackend(Element):
    """``<backend model>``: a file (its text), an EGD character device (``type`` and
    ``<source>``, as a serial port's), or builtin."""

    TAG = "backend"
    model: RNGBackendModel = attr(RNGBackendModel, required=True)
    type: CharType | None = attr(CharType)
    file: str | None = text(Path())
    sources: list[CharSource] = chr_sources()
    protocol: CharProtocol | None = chr_protocol()
    log: CharLog | None = chr_log()

    def check(self, ctx: ParseContext) -> None:
        if self.model == RNGBackendModel.EGD:
            if self.type is None:
                raise self.error("an 'egd' backend needs a character device type")
            if self.file is not None:
                raise self.error("an 'egd' backend has no file")
            check_chr_source(self)
            return
        if self.type is not None or self.sources or self.protocol or self.log:
            raise self.error(f"a '{self.model}' backend is not a character device")
        if self.model == RNGBackendModel.RANDOM:
            if self.file is None:
                self.file = DEFAULT_RANDOM_FILE
        elif self.file is not None:
            raise self.error("a 'builtin' backend has no file")


class RNGDriver(VirtioDriver):
    TAG = "driver"


class RNG(PCIDevice):
    TAG = "rng"
    model: RNGModel = attr(RNGModel, required=True)
    rate: RNGRate | None = child(RNGRate)
    backend: RNGBackend = child(RNGBackend, required=True)
    driver: RNGDriver | None = child(RNGDriver)

    def address_types(self) -> tuple[str, ...]:
        return ("pci",)
