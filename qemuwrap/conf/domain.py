"""The domain definition: libvirt's ``<domain>`` and its top-level elements.

``parse_domain`` turns XML into a :class:`Domain` (collecting every problem, see
``xmlmodel``); ``Domain.format`` writes it back the way libvirt does (``<genid>`` right
after ``<uuid>``, memory in KiB, lifecycle actions always present).  A ``Domain`` built in
code formats and translates without any parse tree.
"""

from __future__ import annotations

import enum
import re
from typing import Any

from qemuwrap.conf import guid
from qemuwrap.conf.devices import Devices
from qemuwrap.conf.xmlmodel import (
    Element,
    Int,
    ParseContext,
    Path,
    Str,
    attr,
    child,
    children,
    custom,
    flag,
    internal,
    text,
    text_child,
)
from qemuwrap.conf.xmlreader import Node, parse_bytes, read_file, to_int
from qemuwrap.conf.xmlwriter import Writer
from qemuwrap.errors import Problems, XMLError

#: libvirt's memory units (virScaleInteger), in any ASCII case: b, byte, bytes; a prefix
#: k, m, g, t, p or e alone or with "iB" is a power of 1024, with "B" a power of 1000.
#: re.ASCII: with Unicode case folding, the Kelvin sign would pass for 'k'.
_MEMORY_UNIT = re.compile(r"b(?:ytes?)?|(?P<prefix>[kmgtpe])(?P<suffix>i?b)?",
                          re.ASCII | re.IGNORECASE)
_UNIT_NAMES = "b, byte, bytes, k, KiB, KB, M, MiB, MB, G, GiB, GB, T, TiB, TB, P, PiB, PB, " \
              "E, EiB, EB (any case)"
#: Spellings already read, and their bytes: the regex only for a new spelling.
_UNIT_BYTES: dict[str, int] = {}
#: libvirt's ceiling (virDomainParseMemory): at most LLONG_MAX bytes and, in KiB, below
#: 2**53; anything larger is "size value too large", not a number to pass to QEMU.
MAX_MEMORY_KIB = 2**53 - 1


class VirtType(enum.StrEnum):
    QEMU = "qemu"
    KVM = "kvm"


class OSType(enum.StrEnum):
    HVM = "hvm"


class BootDev(enum.StrEnum):
    HD = "hd"
    CDROM = "cdrom"
    NETWORK = "network"
    FD = "fd"


class ClockOffset(enum.StrEnum):
    UTC = "utc"
    LOCALTIME = "localtime"


class VcpuPlacement(enum.StrEnum):
    STATIC = "static"


class PowerOffAction(enum.StrEnum):
    DESTROY = "destroy"
    RESTART = "restart"
    PRESERVE = "preserve"


class RebootAction(enum.StrEnum):
    DESTROY = "destroy"
    RESTART = "restart"


class CrashAction(enum.StrEnum):
    DESTROY = "destroy"
    RESTART = "restart"
    PRESERVE = "preserve"


LIFECYCLE_TAGS = ("on_poweroff", "on_reboot", "on_crash")


# --------------------------------------------------------------------------- memory sizes
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


def scaled_kib(node: Node, raw: str, unit: str | None, *, minimum: int = 1) -> int:
    """``raw`` in ``unit`` (default KiB) as whole KiB, rounded up as libvirt does."""
    unit = "KiB" if unit is None else unit
    scale = memory_unit_bytes(unit)
    if scale is None:
        raise node.error(f"unsupported unit='{unit}' (supported: {_UNIT_NAMES})")
    try:
        amount = to_int(raw, "value", minimum, 2**64 - 1)  # libvirt's unsigned long long
    except ValueError as exc:
        raise node.error(str(exc)) from None
    kib = -(-amount * scale // 1024)
    if kib > MAX_MEMORY_KIB:
        raise node.error(f"size {amount} {unit} is too large (at most {MAX_MEMORY_KIB} KiB)")
    return kib


def memory_child(tag: str, *, required: bool = False) -> Any:
    """``<tag unit='...'>N</tag>``, kept as KiB and written with unit='KiB'."""

    def read(parent: Node, ctx: ParseContext) -> int | None:
        found = parent.take(tag)
        if not found:
            if required:
                raise parent.error(f"missing <{tag}>")
            return None
        for extra in found[1:]:
            ctx.record(extra.error(f"element '{tag}' can only appear once"))
        node = found[0]
        unit = node.get("unit")
        node.text_used = True
        ctx.errors.extend(node.leftovers())
        return scaled_kib(node, node.stripped_text, unit)

    def write(value: int, w: Writer) -> None:
        w.text(tag, value, ("unit", "KiB"))

    rng = (f'<element name="{tag}"><optional><attribute name="unit"><data type="string">'
           '<param name="pattern">[bB]([yY][tT][eE][sS]?)?|[kKmMgGtTpPeE]([iI]?[bB])?</param>'
           '</data></attribute></optional><data type="unsignedLong"><param name="pattern">'
           '\\s*[0-9]+\\s*</param><param name="minInclusive">1</param></data></element>')
    return custom(read, write, rng=rng if required else f"<optional>{rng}</optional>")


# --------------------------------------------------------------------------- <os>
class OSTypeEl(Element):
    TAG = "type"
    arch: str = attr(Str(r"[a-z0-9_]+", what="architecture"), default="x86_64")
    machine: str | None = attr(Str(r"[A-Za-z0-9_.\-]+", what="machine type"))
    value: OSType = text(OSType, required=True)


class OSBoot(Element):
    TAG = "boot"
    dev: BootDev = attr(BootDev, required=True)


class OS(Element):
    """``<os>``: guest type, boot order, direct kernel boot."""

    TAG = "os"
    type: OSTypeEl = child(OSTypeEl, required=True)
    kernel: str | None = text_child("kernel", Path())
    initrd: str | None = text_child("initrd", Path())
    cmdline: str | None = text_child("cmdline", Str(strip=False))
    boots: list[OSBoot] = children(OSBoot)

    def check(self, ctx: ParseContext) -> None:
        seen: set[BootDev] = set()
        for b in self.boots:
            if b.dev in seen:
                ctx.record(b.error(f"boot device '{b.dev}' is listed twice"))
            seen.add(b.dev)
        if (self.initrd or self.cmdline is not None) and not self.kernel:
            raise self.error("<initrd> and <cmdline> need a <kernel>")

    @property
    def arch(self) -> str:
        return self.type.arch

    @property
    def machine(self) -> str | None:
        return self.type.machine

    @property
    def boot(self) -> list[BootDev]:
        return [b.dev for b in self.boots]


# --------------------------------------------------------------------------- <vcpu>, <cpu>
class Vcpu(Element):
    TAG = "vcpu"
    placement: VcpuPlacement = attr(VcpuPlacement, default=VcpuPlacement.STATIC)
    current: int | None = attr(Int(1, 255))
    count: int = text(Int(1, 255), required=True)

    def check(self, ctx: ParseContext) -> None:
        if self.current is not None and self.current > self.count:
            raise self.error(f"attribute 'current' {self.current} is out of range "
                             f"(1 to {self.count})")


class Topology(Element):
    """``<cpu><topology/></cpu>``: sockets x dies x cores x threads."""

    TAG = "topology"
    sockets: int = attr(Int(1, 255), required=True)
    dies: int = attr(Int(1, 255), default=1)
    cores: int = attr(Int(1, 255), required=True)
    threads: int = attr(Int(1, 255), required=True)

    @property
    def total(self) -> int:
        return self.sockets * self.dies * self.cores * self.threads


class CPU(Element):
    TAG = "cpu"
    topology: Topology | None = child(Topology)


# --------------------------------------------------------------------------- misc
class Features(Element):
    TAG = "features"
    acpi: bool = flag("acpi")
    apic: bool = flag("apic")
    pae: bool = flag("pae")


class Clock(Element):
    TAG = "clock"
    offset: ClockOffset = attr(ClockOffset, default=ClockOffset.UTC)


def _read_uuid(node: Node, ctx: ParseContext) -> tuple[bytes, bool]:
    found = node.take("uuid")
    if not found:
        return guid.generate_v4(ctx.random), True
    for extra in found[1:]:
        ctx.record(extra.error("element 'uuid' can only appear once"))
    el = found[0]
    el.text_used = True
    ctx.errors.extend(el.leftovers())
    value = guid.parse(el.text)
    if value is None:
        raise el.error(f"malformed uuid element '{el.stripped_text}'")
    return value, False


def _read_genid(node: Node, ctx: ParseContext) -> tuple[bytes | None, bool, bool]:
    """The seed's semantics: at most once; empty means generate and keep."""
    found = node.take("genid")
    if not found:
        return None, False, False
    if len(found) != 1:
        raise found[1].error("element 'genid' can only appear once")
    el = found[0]
    el.text_used = True
    ctx.errors.extend(el.leftovers())
    if not el.text:  # <genid/>; white space alone is malformed, as in libvirt
        return guid.generate_v4(ctx.random), True, True
    value = guid.parse(el.text)
    if value is None:
        raise el.error("malformed genid element")
    return value, True, False


def _at(node: Node | None, el: Element, message: str) -> XMLError:
    return node.error(message) if node is not None else el.error(message)


def _store(dom: Element, names: tuple[str, ...], value: tuple | None) -> None:
    if value is not None:
        dom.__dict__.update(zip(names, value, strict=True))


def _write_nothing(value: Any, w: Writer) -> None:
    """Written by Domain.format itself (the order libvirt uses)."""


#: Every spelling libvirt's parser (virUUIDParse) and the model accept: dashes or spaces
#: between byte pairs, leading spaces, trailing white space (Python's str.isspace: XML's
#: four and the Unicode space separators; tests/test_schema.py checks the list).
_GUID_RNG = ('<choice><data type="string"><param name="pattern">[a-fA-F0-9]{32}</param></data>'
             '<data type="string"><param name="pattern">[a-fA-F0-9]{8}\\-([a-fA-F0-9]{4}\\-){3}'
             '[a-fA-F0-9]{12}</param></data><data type="string"><param name="pattern">'
             '[ ]*([ \\-]*[a-fA-F0-9]{2}){16}[\\s&#x85;&#xA0;&#x1680;&#x2000;-&#x200A;&#x2028;'
             '&#x2029;&#x202F;&#x205F;&#x3000;]*</param></data></choice>')


class Domain(Element):
    """A guest definition: everything qemuwrap understands of libvirt's ``<domain>``."""

    TAG = "domain"
    type: VirtType = attr(VirtType, required=True)
    id: int | None = attr(Int(-1, 2**31 - 1))
    name: str = text_child("name", Str(empty=False), required=True)
    _uuid: None = custom(
        _read_uuid, _write_nothing, store=lambda dom, v: _store(dom, ("uuid", "uuid_generated"), v),
        rng=f'<optional><element name="uuid">{_GUID_RNG}</element></optional>')
    _genid: None = custom(
        _read_genid, _write_nothing,
        store=lambda dom, v: _store(dom, ("genid", "genid_requested", "genid_generated"), v),
        rng=f'<optional><element name="genid"><choice><value type="string"></value>'
            f'{_GUID_RNG}</choice></element></optional>')
    title: str | None = text_child("title", Str(strip=False))
    description: str | None = text_child("description", Str(strip=False))
    memory_kib: int = memory_child("memory", required=True)
    current_memory_kib: int | None = memory_child("currentMemory")
    vcpu: Vcpu | None = child(Vcpu)
    os: OS = child(OS, required=True)
    features: Features | None = child(Features)
    cpu: CPU | None = child(CPU)
    clock: Clock | None = child(Clock)
    on_poweroff: PowerOffAction = text_child("on_poweroff", PowerOffAction,
                                             default=PowerOffAction.DESTROY)
    on_reboot: RebootAction = text_child("on_reboot", RebootAction,
                                         default=RebootAction.RESTART)
    on_crash: CrashAction = text_child("on_crash", CrashAction, default=CrashAction.DESTROY)
    devices: Devices = child(Devices, required=False)  # type: ignore[assignment]

    # Not XML: where the identity came from (the write-back and clone need to know).
    uuid: bytes = internal(b"\0" * 16)
    uuid_generated: bool = internal(False)
    genid: bytes | None = internal(None)
    genid_requested: bool = internal(False)
    genid_generated: bool = internal(False)

    def check(self, ctx: ParseContext) -> None:
        if "\n" in self.name:
            raise _at(self.node_of("name"), self, "name can't contain newlines")
        if self.title is not None and "\n" in self.title:
            raise _at(self.node_of("title"), self, "title can't contain newlines")
        if self.current_memory_kib is not None and self.current_memory_kib > self.memory_kib:
            raise self.error("currentMemory is larger than memory")
        topo = self.topology
        if topo is not None and topo.total != self.vcpus:
            raise topo.error(f"topology gives {topo.total} vCPUs but <vcpu> says "
                             f"{self.vcpus}")

    # -- what the rest of qemuwrap asks -------------------------------------------------
    @property
    def genid_str(self) -> str | None:
        return guid.format(self.genid) if self.genid_requested and self.genid else None

    @property
    def uuid_str(self) -> str:
        return guid.format(self.uuid)

    @property
    def vcpus(self) -> int:
        return self.vcpu.count if self.vcpu is not None else 1

    @property
    def vcpu_current(self) -> int | None:
        return self.vcpu.current if self.vcpu is not None else None

    @property
    def topology(self) -> Topology | None:
        return self.cpu.topology if self.cpu is not None else None

    @property
    def acpi(self) -> bool:
        return self.features is not None and self.features.acpi

    @property
    def apic(self) -> bool:
        return self.features is not None and self.features.apic

    @property
    def pae(self) -> bool:
        return self.features is not None and self.features.pae

    @property
    def clock_offset(self) -> ClockOffset:
        return self.clock.offset if self.clock is not None else ClockOffset.UTC

    @property
    def nodes(self) -> dict[str, Node]:
        """Source elements by tag (``domain``, ``name``, ``genid``, ``os/type``, ...), for
        messages, ``--explain`` and in-place edits of the file; empty when built in code."""
        if self.node is None:
            return {}
        cached = self.__dict__.get("_nodes")
        if cached is not None and cached.get("domain") is self.node:
            return cached
        out: dict[str, Node] = {"domain": self.node}
        for c in self.node.children:
            out.setdefault(c.tag, c)
        if "os" in out:
            types = out["os"].children_named("type")
            if types:
                out["os/type"] = types[0]
        self.__dict__["_nodes"] = out
        return out

    # -- writing ---------------------------------------------------------------------------
    def format(self, w: Writer | None = None, *, inactive: bool = False) -> str:  # type: ignore[override]
        """libvirt's XML for this domain; ``inactive`` leaves out the runtime ``id``."""
        out = Writer() if w is None else w
        attrs = [(k, v) for k, v in self.attrs() if not (k == "id" and (inactive or v == "-1"))]
        out.open("domain", *attrs)
        out.text("name", self.name)
        out.text("uuid", self.uuid_str)
        out.text("genid", self.genid_str)
        out.text("title", self.title)
        out.text("description", self.description)
        out.text("memory", self.memory_kib, ("unit", "KiB"))
        out.text("currentMemory", self.current_memory_kib or self.memory_kib, ("unit", "KiB"))
        (self.vcpu or Vcpu(count=1)).format(out)
        self.os.format(out)
        if self.features is not None and any(v for _k, v in self.features.values()):
            self.features.format(out)
        if self.cpu is not None:
            self.cpu.format(out)
        (self.clock or Clock()).format(out)
        for tag in LIFECYCLE_TAGS:
            out.text(tag, getattr(self, tag))
        self.devices.format(out)
        out.close("domain")
        return out.getvalue()

    def __deepcopy__(self, memo: dict) -> Domain:
        return super().__deepcopy__(memo)  # type: ignore[return-value]


def parse_domain(root: Node, *, random: guid.RandomSource = guid.system_random) -> Domain:
    """Build a Domain from a parsed ``<domain>`` tree; every problem found is reported
    at once (``Problems``), or the single one as itself."""
    if root.tag != "domain":
        raise root.error(f"expected root element 'domain', not '{root.name}'")
    ctx = ParseContext(random, root.source or b"", root.codec)
    dom = Domain.from_node(root, ctx)
    if dom.devices is None:
        dom.devices = Devices()
    if ctx.errors:
        raise Problems.of(ctx.errors)
    return dom


def load(path: str, *, random: guid.RandomSource = guid.system_random) -> tuple[bytes, Domain]:
    """Read a definition file: its raw bytes (for in-place edits) and the model."""
    data, root = read_file(path)
    return data, parse_domain(root, random=random)


def loads(data: bytes | str, *, random: guid.RandomSource = guid.system_random) -> Domain:
    if isinstance(data, str):
        data = data.encode()
    return parse_domain(parse_bytes(data), random=random)


__all__ = ["CPU", "OS", "Clock", "Domain", "Features", "Topology", "Vcpu", "XMLError",
           "load", "loads", "memory_unit_bytes", "parse_domain"]
