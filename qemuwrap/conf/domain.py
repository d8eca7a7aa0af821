"""The domain definition: libvirt's ``<domain>`` and its top-level elements.

``parse_domain`` turns XML into a :class:`Domain` (collecting every problem, see
``xmlmodel``); ``Domain.format`` writes it back the way libvirt does (``<genid>`` right
after ``<uuid>``, memory in KiB, lifecycle actions always present).  A ``Domain`` built in
code formats and translates without any parse tree.  The parts of a domain live in
modules of their own: ``cpu`` (and ``numa``), ``os``, ``features``, ``clock``,
``memory``, ``tuning``, ``sysinfo``, ``security``, ``qemuns``; devices in ``devices``.
"""

from __future__ import annotations

from qemuwrap.conf import guid
from qemuwrap.conf.clock import Clock, ClockOffset
from qemuwrap.conf.devices import Devices
from qemuwrap.conf.features import Features
from qemuwrap.conf.memory import (
    MAX_MEMORY_KIB,
    ON_OFF,
    MaxMemory,
    MemoryBacking,
    Memtune,
    memory_child,
    memory_unit_bytes,
    scaled_kib,
)
from qemuwrap.conf.numa import Numatune
from qemuwrap.conf.os import OS, BootDev, OSBoot, OSType, OSTypeEl
from qemuwrap.conf.tuning import (
    Blkiotune,
    CPUTune,
    DefaultIOThread,
    IOThreadID,
    IOThreadIDs,
    Resource,
    Vcpu,
    Vcpus,
)
from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import (
    QEMU_NS,
    YES_NO,
    Element,
    Int,
    ParseContext,
    Str,
    attr,
    child,
    children,
    custom,
    internal,
    raw_children,
    text_child,
)
from qemuwrap.conf.xmlreader import Node, parse_bytes, read_file
from qemuwrap.conf.xmlwriter import Writer
from qemuwrap.errors import Problems, XMLError
from qemuwrap.hints import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

if TYPE_CHECKING:  # loaded when a definition has them (see xmlmodel.ChildField)
    from qemuwrap.conf.cpu import CPU, Topology
    from qemuwrap.conf.numa import Numa
    from qemuwrap.conf.qemuns import (
        QemuCapabilities,
        QemuCommandline,
        QemuDeprecation,
        QemuOverride,
    )
    from qemuwrap.conf.security import IDMap, KeyWrap, LaunchSecurity, Seclabel
    from qemuwrap.conf.sysinfo import Sysinfo, SysinfoType


class VirtType(ValueSet):
    QEMU = "qemu"
    KVM = "kvm"


class PowerOffAction(ValueSet):
    DESTROY = "destroy"
    RESTART = "restart"
    PRESERVE = "preserve"
    RENAME_RESTART = "rename-restart"


class RebootAction(ValueSet):
    DESTROY = "destroy"
    RESTART = "restart"
    PRESERVE = "preserve"
    RENAME_RESTART = "rename-restart"


class CrashAction(ValueSet):
    DESTROY = "destroy"
    RESTART = "restart"
    PRESERVE = "preserve"
    RENAME_RESTART = "rename-restart"
    COREDUMP_DESTROY = "coredump-destroy"
    COREDUMP_RESTART = "coredump-restart"


class LockFailureAction(ValueSet):
    POWEROFF = "poweroff"
    RESTART = "restart"
    PAUSE = "pause"
    IGNORE = "ignore"


class PerfEventName(ValueSet):
    CMT = "cmt"
    MBMT = "mbmt"
    MBML = "mbml"
    CPU_CYCLES = "cpu_cycles"
    INSTRUCTIONS = "instructions"
    CACHE_REFERENCES = "cache_references"
    CACHE_MISSES = "cache_misses"
    BRANCH_INSTRUCTIONS = "branch_instructions"
    BRANCH_MISSES = "branch_misses"
    BUS_CYCLES = "bus_cycles"
    STALLED_CYCLES_FRONTEND = "stalled_cycles_frontend"
    STALLED_CYCLES_BACKEND = "stalled_cycles_backend"
    REF_CPU_CYCLES = "ref_cpu_cycles"
    CPU_CLOCK = "cpu_clock"
    TASK_CLOCK = "task_clock"
    PAGE_FAULTS = "page_faults"
    CONTEXT_SWITCHES = "context_switches"
    CPU_MIGRATIONS = "cpu_migrations"
    PAGE_FAULTS_MIN = "page_faults_min"
    PAGE_FAULTS_MAJ = "page_faults_maj"
    ALIGNMENT_FAULTS = "alignment_faults"
    EMULATION_FAULTS = "emulation_faults"


LIFECYCLE_TAGS = ("on_poweroff", "on_reboot", "on_crash")


# --------------------------------------------------------------------------- small elements
class Metadata(Element):
    """``<metadata>``: other applications' elements, kept byte for byte, never read."""

    TAG = "metadata"
    items: list[str] = raw_children()


class SuspendState(Element):
    enabled: bool | None = attr(YES_NO)


class SuspendToMem(SuspendState):
    TAG = "suspend-to-mem"


class SuspendToDisk(SuspendState):
    TAG = "suspend-to-disk"


class PM(Element):
    """ACPI sleep states the guest may use (S3, S4)."""

    TAG = "pm"
    suspend_to_mem: SuspendToMem | None = child(SuspendToMem)
    suspend_to_disk: SuspendToDisk | None = child(SuspendToDisk)

    @property
    def s3(self) -> bool | None:
        return self.suspend_to_mem.enabled if self.suspend_to_mem else None

    @property
    def s4(self) -> bool | None:
        return self.suspend_to_disk.enabled if self.suspend_to_disk else None


class PerfEvent(Element):
    TAG = "event"
    name: PerfEventName = attr(PerfEventName, required=True)
    enabled: bool = attr(YES_NO, required=True)


class Perf(Element):
    """Host perf counters libvirt reads for the guest: kept, not collected."""

    TAG = "perf"
    events: list[PerfEvent] = children(PerfEvent)


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
    metadata: Metadata | None = child(Metadata)
    max_memory: MaxMemory | None = child(MaxMemory)
    _memory: None = memory_child(
        "memory", attrs=(("dumpCore", ON_OFF),),
        store=lambda dom, v: _store(dom, ("memory_kib", "dump_core"), v))
    current_memory_kib: int | None = memory_child("currentMemory")
    blkiotune: Blkiotune | None = child(Blkiotune)
    memtune: Memtune | None = child(Memtune)
    memory_backing: MemoryBacking | None = child(MemoryBacking)
    vcpu: Vcpu | None = child(Vcpu)
    vcpus_el: Vcpus | None = child(Vcpus)
    iothreads_count: int | None = text_child("iothreads", Int(0, 2**32 - 1))
    iothreadids_el: IOThreadIDs | None = child(IOThreadIDs)
    defaultiothread: DefaultIOThread | None = child(DefaultIOThread)
    cputune: CPUTune | None = child(CPUTune)
    numatune: Numatune | None = child(Numatune)
    resource: Resource | None = child(Resource)
    sysinfos: list[Sysinfo] = children(".sysinfo:Sysinfo", tag="sysinfo")
    os: OS = child(OS, required=True)
    idmap: IDMap | None = child(".security:IDMap", tag="idmap")
    features: Features | None = child(Features)
    cpu: CPU | None = child(".cpu:CPU", tag="cpu")
    clock: Clock | None = child(Clock)
    on_poweroff: PowerOffAction = text_child("on_poweroff", PowerOffAction,
                                             default=PowerOffAction.DESTROY)
    on_reboot: RebootAction = text_child("on_reboot", RebootAction,
                                         default=RebootAction.RESTART)
    on_crash: CrashAction = text_child("on_crash", CrashAction, default=CrashAction.DESTROY)
    on_lockfailure: LockFailureAction | None = text_child("on_lockfailure",
                                                          LockFailureAction)
    pm: PM | None = child(PM)
    perf: Perf | None = child(Perf)
    devices: Devices = child(Devices, required=False)  # type: ignore[assignment]
    seclabels: list[Seclabel] = children(".security:Seclabel", tag="seclabel")
    keywrap: KeyWrap | None = child(".security:KeyWrap", tag="keywrap")
    launch_security: LaunchSecurity | None = child(
        ".security:LaunchSecurity", tag="launchSecurity")
    qemu_commandline: QemuCommandline | None = child(
        ".qemuns:QemuCommandline", tag=f"{QEMU_NS} commandline")
    qemu_capabilities: QemuCapabilities | None = child(
        ".qemuns:QemuCapabilities", tag=f"{QEMU_NS} capabilities")
    qemu_deprecation: QemuDeprecation | None = child(
        ".qemuns:QemuDeprecation", tag=f"{QEMU_NS} deprecation")
    qemu_override: QemuOverride | None = child(
        ".qemuns:QemuOverride", tag=f"{QEMU_NS} override")

    # Not XML: where the identity came from (the write-back and clone need to know).
    memory_kib: int = internal(0)
    dump_core: bool | None = internal(None)
    uuid: bytes = internal(b"\0" * 16)
    uuid_generated: bool = internal(False)
    genid: bytes | None = internal(None)
    genid_requested: bool = internal(False)
    genid_generated: bool = internal(False)
    #: Filled when a command is built: the effective boot index of each device (by id()),
    #: from <os><boot dev> or the devices' own <boot order> (qemu/bootorder.py).
    boot_indexes: dict = internal(dict)

    def check(self, ctx: ParseContext) -> None:
        if "\n" in self.name:
            raise _at(self.node_of("name"), self, "name can't contain newlines")
        if self.title is not None and "\n" in self.title:
            raise _at(self.node_of("title"), self, "title can't contain newlines")
        models: set[str | None] = set()
        for label in self.seclabels:  # libvirt's virSecurityLabelDefsParseXML
            if len(self.seclabels) > 1 and label.model is None:
                ctx.record(label.error("missing security model when using multiple labels"))
            elif label.model in models:
                ctx.record(label.error(f"seclabel for model {label.model} is already "
                                       "provided"))
            models.add(label.model)
        if not self.memory_kib and self.numa is None:
            raise self.error("Memory size must be specified via <memory> or in the <numa> "
                             "configuration")
        # <memory> is the total; the guest's initial RAM is the NUMA cells' sum, or the
        # total minus the memory devices (libvirt's virDomainDefPostParseMemory).
        devices_kib = sum(m.size_kib for m in self.devices.memories) if self.devices else 0
        total = self.memory_kib
        numa = self.numa
        if numa is not None:
            initial = numa.memory_kib
            if initial > MAX_MEMORY_KIB:
                ctx.record(numa.error("the NUMA cells' memory is too large"))
                initial = total
            for cell in numa.cells:
                for cpu in cell.cpus or ():
                    if cpu >= self.vcpus:
                        ctx.record(cell.error(f"vCPU {cpu} of NUMA cell {cell.id} is not "
                                              f"below the vCPU count {self.vcpus}"))
                        break
            total = initial + devices_kib
        else:
            initial = total - devices_kib
            if devices_kib and initial <= 0:
                raise self.error("Total size of memory devices exceeds the total memory "
                                 "size")
        self.memory_kib = initial
        if self.current_memory_kib is not None and self.current_memory_kib > total:
            if numa is not None:  # libvirt clamps it to the cells' total
                self.current_memory_kib = total
            else:
                raise self.error("currentMemory is larger than memory")
        topo = self.topology
        if topo is not None and topo.total != self.vcpus:
            raise topo.error(f"topology gives {topo.total} vCPUs but <vcpu> says "
                             f"{self.vcpus}")
        if self.max_memory is not None and self.max_memory.kib < total:
            raise self.max_memory.error("maximum memory size must be equal or greater "
                                        "than the actual memory size")
        if self.vcpus_el is not None:
            for state in self.vcpus_el.vcpus:
                if state.id >= self.vcpus:
                    ctx.record(state.error(f"vcpu id '{state.id}' is out of range of "
                                           f"maximum vcpu count {self.vcpus}"))
        seen: set[SysinfoType] = set()
        for info in self.sysinfos:
            if info.type in seen:
                ctx.record(info.error(f"<sysinfo type='{info.type}'> is given twice"))
            seen.add(info.type)
            system = info.system
            uuid = system.get("uuid") if system is not None else None
            if system is not None and uuid is not None:
                parsed = guid.parse(uuid)
                if parsed is None:
                    ctx.record(system.error(f"malformed uuid element '{uuid}'"))
                elif self.uuid_generated:
                    self.uuid, self.uuid_generated = parsed, False
                elif parsed != self.uuid:
                    ctx.record(system.error("UUID mismatch between <uuid> and <sysinfo>"))
        ids = self.iothreadids_el
        if ids is not None and self.iothreads_count is not None and \
                len(ids.iothreads) > self.iothreads_count:
            ctx.record(ids.error(f"{len(ids.iothreads)} <iothread>s but <iothreads> says "
                                 f"{self.iothreads_count}"))
        elif ids is not None:
            # libvirt lists every I/O thread once <iothreadids> is given
            listed = {t.id for t in ids.iothreads}
            ids.iothreads.extend(IOThreadID(id=n) for n in self.iothreadids
                                 if n not in listed)

    # -- what the rest of qemuwrap asks -------------------------------------------------
    @property
    def genid_str(self) -> str | None:
        return guid.format(self.genid) if self.genid_requested and self.genid else None

    @property
    def uuid_str(self) -> str:
        return guid.format(self.uuid)

    @property
    def total_memory_kib(self) -> int:
        """The initial RAM and the memory devices: what ``<memory>`` says."""
        mems = self.devices.memories if self.devices is not None else []
        return self.memory_kib + sum(m.size_kib for m in mems)

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
    def numa(self) -> Numa | None:
        return self.cpu.numa if self.cpu is not None else None

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
    def iothreadids(self) -> list[int]:
        """The ids of the guest's I/O threads (QEMU objects ``iothreadN``), as libvirt
        completes them: the listed ids, then the lowest free ones up to <iothreads>."""
        listed = [t.id for t in self.iothreadids_el.iothreads] if self.iothreadids_el else []
        wanted = max(self.iothreads_count or 0, len(listed))
        used, out, n = set(listed), list(listed), 1
        while len(out) < wanted:
            if n not in used:
                out.append(n)
            n += 1
        return out

    @property
    def iothreads(self) -> int:
        """How many I/O threads the guest has."""
        return len(self.iothreadids)

    @property
    def sysinfo_smbios(self) -> Sysinfo | None:
        if not self.sysinfos:
            return None
        from qemuwrap.conf.sysinfo import SysinfoType

        return next((s for s in self.sysinfos if s.type == SysinfoType.SMBIOS), None)

    @property
    def nodes(self) -> dict[str, Node]:
        """Source elements by tag (``domain``, ``name``, ``genid``, ``os/type``, ...), for
        messages, ``--explain`` and in-place edits of the file; empty when built in code."""
        if self.node is None:
            return {}
        cached = self.__dict__.get("_nodes_cache")
        if cached is not None and cached[0] is self.node:
            return cached[1]
        out: dict[str, Node] = {"domain": self.node}
        for c in self.node.children:
            out.setdefault(c.tag, c)
        if "os" in out:
            types = out["os"].children_named("type")
            if types:
                out["os/type"] = types[0]
        self.__dict__["_nodes_cache"] = (self.node, out)  # asked for by every builder
        return out

    # -- writing ---------------------------------------------------------------------------
    def format(self, w: Writer | None = None, *, inactive: bool = False) -> str:  # type: ignore[override]
        """libvirt's XML for this domain; ``inactive`` leaves out the runtime ``id``."""
        out = Writer() if w is None else w
        attrs = [(k, v) for k, v in self.attrs() if not (k == "id" and (inactive or v == "-1"))]
        if any((self.qemu_commandline, self.qemu_capabilities, self.qemu_deprecation,
                self.qemu_override)):
            attrs.append(("xmlns:qemu", QEMU_NS))
        out.open("domain", *attrs)
        out.text("name", self.name)
        out.text("uuid", self.uuid_str)
        out.text("genid", self.genid_str)
        out.text("title", self.title)
        out.text("description", self.description)
        if self.metadata is not None and self.metadata.items:
            self.metadata.format(out)
        _fmt(out, self.max_memory)
        out.text("memory", self.total_memory_kib,
                 ("dumpCore", None if self.dump_core is None else
                  ("on" if self.dump_core else "off")), ("unit", "KiB"))
        out.text("currentMemory", self.current_memory_kib or self.total_memory_kib,
                 ("unit", "KiB"))
        els: tuple[Element | None, ...] = (self.blkiotune, self.memtune, self.memory_backing)
        for el in els:
            _fmt(out, el)
        (self.vcpu or Vcpu(count=1)).format(out)
        _fmt(out, self.vcpus_el)
        if self.iothreads_count is not None:
            out.text("iothreads", self.iothreads_count)
        els = (self.iothreadids_el, self.defaultiothread, self.cputune, self.numatune,
               self.resource)
        for el in els:
            _fmt(out, el)
        for info in self.sysinfos:
            info.format(out)
        self.os.format(out)
        _fmt(out, self.idmap)
        if self.features is not None and self.features.present():
            self.features.format(out)
        _fmt(out, self.cpu)
        (self.clock or Clock()).format(out)
        for tag in LIFECYCLE_TAGS:
            out.text(tag, getattr(self, tag))
        out.text("on_lockfailure", self.on_lockfailure)
        els = (self.pm, self.perf)
        for el in els:
            _fmt(out, el)
        self.devices.format(out)
        for label in self.seclabels:
            label.format(out)
        els = (self.keywrap, self.launch_security, self.qemu_commandline,
               self.qemu_capabilities, self.qemu_deprecation, self.qemu_override)
        for el in els:
            _fmt(out, el)
        out.close("domain")
        return out.getvalue()

    def __deepcopy__(self, memo: dict) -> Domain:
        cache = self.__dict__.pop("_nodes_cache", None)  # source nodes are never copied
        try:
            return super().__deepcopy__(memo)  # type: ignore[return-value]
        finally:
            if cache is not None:
                self.__dict__["_nodes_cache"] = cache


def _fmt(out: Writer, el: Element | None) -> None:
    if el is not None:
        el.format(out)


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


__all__ = ["CPU", "OS", "BootDev", "Clock", "ClockOffset", "Domain", "Features", "OSBoot",
           "OSType", "OSTypeEl", "Topology", "Vcpu", "XMLError", "load", "loads",
           "memory_unit_bytes", "parse_domain", "scaled_kib"]
