"""Memory: libvirt's units, ``<memory>``/``<maxMemory>``/``<currentMemory>``,
``<memoryBacking>`` and ``<memtune>``.

Sizes are kept in KiB (libvirt's unit for guest memory) and written back with
``unit='KiB'``, as libvirt formats them.
"""

from __future__ import annotations

import re

from qemuwrap.conf.cpuset import CPUSET, CPUSet
from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import (
    ON_OFF,
    Element,
    Int,
    Kind,
    KindError,
    ParseContext,
    _pattern,
    attr,
    child,
    children,
    custom,
    flag,
    text,
)
from qemuwrap.conf.xmlreader import Node, to_int
from qemuwrap.conf.xmlwriter import Writer
from qemuwrap.hints import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any, ClassVar

#: libvirt's memory units (virScaleInteger), in any ASCII case: b, byte, bytes; a prefix
#: k, m, g, t, p or e alone or with "iB" is a power of 1024, with "B" a power of 1000.
#: re.ASCII: with Unicode case folding, the Kelvin sign would pass for 'k'.
_MEMORY_UNIT = re.compile(r"b(?:ytes?)?|(?P<prefix>[kmgtpe])(?P<suffix>i?b)?",
                          re.ASCII | re.IGNORECASE)
UNIT_NAMES = "b, byte, bytes, k, KiB, KB, M, MiB, MB, G, GiB, GB, T, TiB, TB, P, PiB, PB, " \
             "E, EiB, EB (any case)"
_UNIT_RNG = "[bB]([yY][tT][eE][sS]?)?|[kKmMgGtTpPeE]([iI]?[bB])?"
#: Spellings already read, and their bytes: the regex only for a new spelling.
_UNIT_BYTES: dict[str, int] = {}
#: libvirt's ceiling (virDomainParseMemory): at most LLONG_MAX bytes and, in KiB, below
#: 2**53; anything larger is "size value too large", not a number to pass to QEMU.
MAX_MEMORY_KIB = 2**53 - 1
#: <memtune>'s "no limit" (VIR_DOMAIN_MEMORY_PARAM_UNLIMITED).
UNLIMITED_KIB = MAX_MEMORY_KIB


def memory_unit_bytes(unit: str) -> int | None:
    """Bytes in one ``unit`` as libvirt's virScaleInteger reads it; None if unknown."""
    scale = _UNIT_BYTES.get(unit)
    if scale is None:
        match = _MEMORY_UNIT.fullmatch(unit)
        if match is None:
            return None
        if match["prefix"] is None:
            scale = 1
        else:
            base = 1000 if (match["suffix"] or "").lower() == "b" else 1024
            scale = base ** ("kmgtpe".index(match["prefix"].lower()) + 1)
        _UNIT_BYTES[unit] = scale  # a few hundred spellings at most
    return scale


def scaled_kib(node: Node, raw: str, unit: str | None, *, minimum: int = 1,
               default_unit: str = "KiB") -> int:
    """``raw`` in ``unit`` (default KiB) as whole KiB, rounded up as libvirt does."""
    unit = default_unit if unit is None else unit
    scale = memory_unit_bytes(unit)
    if scale is None:
        raise node.error(f"unsupported unit='{unit}' (supported: {UNIT_NAMES})")
    try:
        amount = to_int(raw, "value", minimum, 2**64 - 1)  # libvirt's unsigned long long
    except ValueError as exc:
        raise node.error(str(exc)) from None
    kib = -(-amount * scale // 1024)
    if kib > MAX_MEMORY_KIB:
        raise node.error(f"size {amount} {unit} is too large (at most {MAX_MEMORY_KIB} KiB)")
    return kib


class UnitKind(Kind[str]):
    """A ``unit=`` attribute: one of libvirt's memory units."""

    def parse(self, raw: str, name: str) -> str:
        if memory_unit_bytes(raw) is None:
            raise KindError(f"unsupported {name}='{raw[:40]}' (supported: {UNIT_NAMES})")
        return raw

    def rng(self, text: bool = False) -> str:
        return _pattern(_UNIT_RNG, False)


UNIT = UnitKind()
#: A size before its unit is applied (libvirt's unsigned long long).
SIZE = Int(0, 2**64 - 1)


def to_kib(amount: int, unit: str | None, default_unit: str = "KiB") -> int:
    """``amount`` ``unit`` in whole KiB, rounded up (units were checked when read)."""
    scale = memory_unit_bytes(unit or default_unit) or 1024
    return -(-amount * scale // 1024)


def memory_child(tag: str, *, required: bool = False, attrs: tuple[tuple[str, Kind], ...] = (),
                 store: Any = None) -> Any:
    """``<tag unit='...'>N</tag>``, kept as KiB and written with unit='KiB'.

    ``attrs``: further attributes of the element (``dumpCore``); the field's value is
    then a tuple (KiB, attr values...), stored by the caller."""

    def read(parent: Node, ctx: ParseContext) -> Any:
        found = parent.take(tag)
        if not found:
            if required:
                raise parent.error(f"missing <{tag}>")
            return None
        for extra in found[1:]:
            ctx.record(extra.error(f"element '{tag}' can only appear once"))
        node = found[0]
        unit = node.get("unit")
        values = []
        for name, kind in attrs:
            raw = node.get(name)
            try:
                values.append(None if raw is None else kind.parse(raw, name))
            except ValueError as exc:
                ctx.record(node.error(str(exc)))
                values.append(None)
        node.text_used = True
        ctx.errors.extend(node.leftovers())
        kib = scaled_kib(node, node.stripped_text, unit)
        return (kib, *values) if attrs else kib

    def write(value: int, w: Writer) -> None:
        w.text(tag, value, ("unit", "KiB"))

    extra = "".join(f'<optional><attribute name="{name}">{kind.rng()}</attribute></optional>'
                    for name, kind in attrs)
    rng = (f'<element name="{tag}"><optional><attribute name="unit"><data type="string">'
           f'<param name="pattern">{_UNIT_RNG}</param></data></attribute></optional>{extra}'
           '<data type="unsignedLong"><param name="pattern">\\s*[0-9]+\\s*</param>'
           '<param name="minInclusive">1</param></data></element>')
    return custom(read, write, rng=rng if required else f"<optional>{rng}</optional>",
                  store=store)


class Scaled(Element):
    """An element holding a size with an optional ``unit`` (libvirt's scaledInteger);
    ``kib`` is the size in KiB and it is written back in KiB."""

    FIELDS_LAST = True  # a subclass's own attributes come first (maxMemory's slots)
    #: The unit of a bare number (libvirt's per-element default).
    DEFAULT_UNIT: ClassVar[str] = "KiB"
    unit: str | None = attr(UNIT)
    value: int = text(SIZE, required=True)

    def check(self, ctx: ParseContext) -> None:
        kib = to_kib(self.value, self.unit, self.DEFAULT_UNIT)
        if kib > MAX_MEMORY_KIB:
            raise self.error(f"size {self.value} {self.unit or 'KiB'} is too large "
                             f"(at most {MAX_MEMORY_KIB} KiB)")
        self.value, self.unit = kib, "KiB"

    @property
    def kib(self) -> int:
        return to_kib(self.value, self.unit, self.DEFAULT_UNIT)


class MaxMemory(Scaled):
    """``<maxMemory slots='16'>``: the ceiling for memory hotplug, and its DIMM slots."""

    TAG = "maxMemory"
    slots: int = attr(Int(0, 2**32 - 1), required=True)


# --------------------------------------------------------------------------- <memoryBacking>
class MemoryModel(ValueSet):
    """``<memory model>`` of a memory device (``conf/devices/memory.py``): here, beside
    the guest's RAM, because the RAM's builders ask whether any device is an NVDIMM."""

    DIMM = "dimm"
    NVDIMM = "nvdimm"
    VIRTIO_PMEM = "virtio-pmem"
    VIRTIO_MEM = "virtio-mem"
    SGX_EPC = "sgx-epc"


class MemAccess(ValueSet):
    SHARED = "shared"
    PRIVATE = "private"


class MemorySourceType(ValueSet):
    FILE = "file"
    ANONYMOUS = "anonymous"
    MEMFD = "memfd"


class AllocationMode(ValueSet):
    IMMEDIATE = "immediate"
    ONDEMAND = "ondemand"


class HugePage(Element):
    """``<page size='2048' unit='KiB' nodeset='0'/>``: the page size for (some) guest
    NUMA nodes."""

    TAG = "page"
    size: int = attr(SIZE, required=True)
    unit: str | None = attr(UNIT)
    nodeset: CPUSet | None = attr(CPUSET)

    def check(self, ctx: ParseContext) -> None:
        self.size, self.unit = to_kib(self.size, self.unit), "KiB"
        if self.size == 0:
            raise self.error("hugepage size can't be zero")

    @property
    def size_kib(self) -> int:
        return to_kib(self.size, self.unit)


class HugePages(Element):
    TAG = "hugepages"
    pages: list[HugePage] = children(HugePage)

    def check(self, ctx: ParseContext) -> None:
        default = [p for p in self.pages if p.nodeset is None]
        if len(default) > 1:
            raise default[1].error("duplicate hugepages element without a nodeset")


class MemorySource(Element):
    TAG = "source"
    type: MemorySourceType = attr(MemorySourceType, required=True)


class MemoryAccessEl(Element):
    TAG = "access"
    mode: MemAccess = attr(MemAccess, required=True)


class Allocation(Element):
    TAG = "allocation"
    mode: AllocationMode | None = attr(AllocationMode)
    threads: int | None = attr(Int(0, 2**32 - 1))


class MemoryBacking(Element):
    """How guest RAM is backed on the host."""

    TAG = "memoryBacking"
    hugepages: HugePages | None = child(HugePages)
    nosharepages: bool = flag("nosharepages")
    locked: bool = flag("locked")
    source: MemorySource | None = child(MemorySource)
    access_el: MemoryAccessEl | None = child(MemoryAccessEl)
    allocation: Allocation | None = child(Allocation)
    discard: bool = flag("discard")

    def check(self, ctx: ParseContext) -> None:
        if self.hugepages is not None and self.source is not None and \
                self.source.type != MemorySourceType.MEMFD and \
                self.source.type != MemorySourceType.FILE:
            raise self.source.error("hugepages are not allowed with anonymous memory "
                                    "source")

    @property
    def access(self) -> MemAccess | None:
        return self.access_el.mode if self.access_el is not None else None

    @property
    def source_type(self) -> MemorySourceType | None:
        return self.source.type if self.source is not None else None

    @property
    def allocation_mode(self) -> AllocationMode | None:
        return self.allocation.mode if self.allocation is not None else None

    @property
    def allocation_threads(self) -> int | None:
        return self.allocation.threads if self.allocation is not None else None


# --------------------------------------------------------------------------- <memtune>
class HardLimit(Scaled):
    TAG = "hard_limit"


class SoftLimit(Scaled):
    TAG = "soft_limit"


class MinGuarantee(Scaled):
    TAG = "min_guarantee"


class SwapHardLimit(Scaled):
    TAG = "swap_hard_limit"


class Memtune(Element):
    """Host memory limits (cgroups in libvirt): read, written back, not enforced."""

    TAG = "memtune"
    hard_limit: HardLimit | None = child(HardLimit)
    soft_limit: SoftLimit | None = child(SoftLimit)
    min_guarantee: MinGuarantee | None = child(MinGuarantee)
    swap_hard_limit: SwapHardLimit | None = child(SwapHardLimit)

    def check(self, ctx: ParseContext) -> None:
        """libvirt keeps no limit that says 'unlimited' (it writes none back)."""
        for name in ("hard_limit", "soft_limit", "swap_hard_limit"):
            limit = getattr(self, name)
            if limit is not None and limit.kib >= UNLIMITED_KIB:
                setattr(self, name, None)


__all__ = ["MAX_MEMORY_KIB", "ON_OFF", "Allocation", "AllocationMode", "HugePage",
           "HugePages", "MaxMemory", "MemAccess", "MemoryBacking", "MemorySourceType",
           "Memtune", "Scaled", "UNIT", "memory_child", "memory_unit_bytes", "scaled_kib",
           "to_kib"]
