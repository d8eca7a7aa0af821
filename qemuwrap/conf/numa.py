"""NUMA: the guest's topology (``<cpu><numa>``: cells, distances, HMAT caches and
interconnects) and where its memory lives on the host (``<numatune>``)."""

from __future__ import annotations

from qemuwrap.conf.cpuset import CPUSET, CPUSet
from qemuwrap.conf.memory import SIZE, UNIT, MemAccess, memory_unit_bytes, to_kib
from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import (
    YES_NO,
    Element,
    Int,
    ParseContext,
    attr,
    child,
    children,
)

UINT = Int(0, 2**32 - 1)
#: libvirt's local and default remote distances (ACPI SLIT).
LOCAL_DISTANCE = 10
REMOTE_DISTANCE = 20


class CacheAssociativity(ValueSet):
    NONE = "none"
    DIRECT = "direct"
    FULL = "full"


class CachePolicy(ValueSet):
    NONE = "none"
    WRITEBACK = "writeback"
    WRITETHROUGH = "writethrough"


class AccessType(ValueSet):
    ACCESS = "access"
    READ = "read"
    WRITE = "write"


class NumatuneMode(ValueSet):
    STRICT = "strict"
    PREFERRED = "preferred"
    INTERLEAVE = "interleave"
    RESTRICTIVE = "restrictive"


class Placement(ValueSet):
    STATIC = "static"
    AUTO = "auto"


# --------------------------------------------------------------------------- guest NUMA
class Sibling(Element):
    TAG = "sibling"
    id: int = attr(UINT, required=True)
    value: int = attr(Int(10, 255), required=True)


class Distances(Element):
    TAG = "distances"
    siblings: list[Sibling] = children(Sibling)

    def check(self, ctx: ParseContext) -> None:
        if not self.siblings:
            raise self.error("<distances> needs at least one <sibling>")


class CacheSize(Element):
    TAG = "size"
    value: int = attr(UINT, required=True)
    unit: str = attr(UNIT, required=True)


class CacheLine(Element):
    TAG = "line"
    value: int = attr(UINT, required=True)
    unit: str = attr(UNIT, required=True)


class NumaCache(Element):
    """``<cache level associativity policy>`` of a memory-side cache (HMAT)."""

    TAG = "cache"
    level: int = attr(UINT, required=True)
    associativity: CacheAssociativity = attr(CacheAssociativity, required=True)
    policy: CachePolicy = attr(CachePolicy, required=True)
    size: CacheSize = child(CacheSize, required=True)
    line: CacheLine = child(CacheLine, required=True)

    @property
    def size_kib(self) -> int:
        return to_kib(self.size.value, self.size.unit)

    @property
    def line_bytes(self) -> int:
        return self.line.value * (memory_unit_bytes(self.line.unit) or 1)


class Cell(Element):
    """One guest NUMA node: its vCPUs and its share of the memory."""

    TAG = "cell"
    id: int | None = attr(UINT)
    cpus: CPUSet | None = attr(CPUSET)
    memory: int = attr(SIZE, required=True)
    unit: str | None = attr(UNIT)
    mem_access: MemAccess | None = attr(MemAccess, xml="memAccess")
    discard: bool | None = attr(YES_NO)
    distances: Distances | None = child(Distances)
    caches: list[NumaCache] = children(NumaCache)

    def check(self, ctx: ParseContext) -> None:
        self.memory, self.unit = to_kib(self.memory, self.unit), "KiB"

    @property
    def memory_kib(self) -> int:
        return to_kib(self.memory, self.unit)


class Latency(Element):
    TAG = "latency"
    initiator: int = attr(UINT, required=True)
    target: int = attr(UINT, required=True)
    cache: int | None = attr(UINT)
    type: AccessType = attr(AccessType, required=True)
    value: int = attr(UINT, required=True)


class Bandwidth(Element):
    TAG = "bandwidth"
    initiator: int = attr(UINT, required=True)
    target: int = attr(UINT, required=True)
    cache: int | None = attr(UINT)
    type: AccessType = attr(AccessType, required=True)
    value: int = attr(UINT, required=True)
    unit: str = attr(UNIT, required=True)

    @property
    def kib(self) -> int:
        return to_kib(self.value, self.unit)


class Interconnects(Element):
    TAG = "interconnects"
    latencies: list[Latency] = children(Latency)
    bandwidths: list[Bandwidth] = children(Bandwidth)


class Numa(Element):
    """``<numa>``: the guest NUMA nodes (libvirt's virDomainNumaDefParseXML rules)."""

    TAG = "numa"
    cells: list[Cell] = children(Cell)
    interconnects: Interconnects | None = child(Interconnects)

    def check(self, ctx: ParseContext) -> None:
        if not self.cells:
            raise self.error("<numa> needs at least one <cell>")
        count = len(self.cells)
        if all(c.id is not None for c in self.cells):
            # libvirt places each cell at its id: any order, each id once, all below n
            ids = [c.id or 0 for c in self.cells]
            if sorted(ids) != list(range(count)):
                bad = next(c for c, i in zip(self.cells, ids, strict=True)
                           if i >= count or ids.count(i) > 1)
                raise bad.error(f"NUMA cell ids must be 0 to {count - 1}, each once "
                                f"(cell id {bad.id})")
            self.cells.sort(key=lambda c: c.id or 0)
        else:
            for i, cell in enumerate(self.cells):
                if cell.id is None:
                    cell.id = i
                elif cell.id != i:
                    ctx.record(cell.error(f"NUMA cell {i} has id {cell.id}: give every cell "
                                          "its id, or none"))
        seen: dict[int, int] = {}
        for cell in self.cells:
            for cpu in cell.cpus or ():
                if cpu in seen:
                    ctx.record(cell.error(f"vCPU {cpu} is in NUMA cells {seen[cpu]} and "
                                          f"{cell.id}"))
                seen[cpu] = cell.id or 0
        for cell in self.cells:
            for sib in cell.distances.siblings if cell.distances else ():
                if sib.id >= count:
                    ctx.record(sib.error(f"sibling id {sib.id} names no NUMA cell "
                                         f"(there are {count})"))
                elif sib.id == cell.id and sib.value != LOCAL_DISTANCE:
                    ctx.record(sib.error(f"the distance of a cell to itself must be "
                                         f"{LOCAL_DISTANCE}"))
        if not ctx.errors and self.has_distances:
            self._complete_distances()
        if self.interconnects is not None:
            links: list[Latency | Bandwidth] = [*self.interconnects.latencies,
                                                *self.interconnects.bandwidths]
            for ic in links:
                for what in ("initiator", "target"):
                    if getattr(ic, what) >= count:
                        ctx.record(ic.error(f"{what} {getattr(ic, what)} names no NUMA "
                                            f"cell (there are {count})"))
                if ic.cache is not None and not any(
                        c.level == ic.cache for c in self.cells[min(ic.target, count - 1)]
                        .caches):
                    ctx.record(ic.error(f"NUMA cell {ic.target} has no cache level "
                                        f"{ic.cache}"))

    def _complete_distances(self) -> None:
        """libvirt fills the matrix: each pair both ways, and 10 to itself."""
        for cell in self.cells:
            if cell.distances is None:
                cell.distances = Distances(siblings=[])
        for src in self.cells:
            assert src.distances is not None
            for dst in self.cells:
                if src.id is None or dst.id is None:
                    continue
                if not any(s.id == dst.id for s in src.distances.siblings):
                    src.distances.siblings.append(
                        Sibling(id=dst.id, value=self.distance(src.id, dst.id)))
            src.distances.siblings.sort(key=lambda s: s.id)

    # -- what builders ask ---------------------------------------------------------
    @property
    def memory_kib(self) -> int:
        return sum(c.memory_kib for c in self.cells)

    def distance(self, src: int, dst: int) -> int:
        """libvirt's virDomainNumaGetNodeDistance: the value given for the pair (either
        direction), else 10 to itself and 20 to others."""
        for a, b in ((src, dst), (dst, src)):
            d = self.cells[a].distances
            for sib in d.siblings if d else ():
                if sib.id == b:
                    return sib.value
        return LOCAL_DISTANCE if src == dst else REMOTE_DISTANCE

    @property
    def has_distances(self) -> bool:
        return any(c.distances for c in self.cells)

    @property
    def has_hmat(self) -> bool:
        """Caches or interconnects: QEMU's HMAT (``-machine hmat=on``)."""
        return any(c.caches for c in self.cells) or (
            self.interconnects is not None and bool(self.interconnects.latencies
                                                    or self.interconnects.bandwidths))


# --------------------------------------------------------------------------- <numatune>
class NumatuneMemory(Element):
    TAG = "memory"
    mode: NumatuneMode | None = attr(NumatuneMode)
    placement: Placement | None = attr(Placement)
    nodeset: CPUSet | None = attr(CPUSET)

    def check(self, ctx: ParseContext) -> None:
        if self.placement == Placement.AUTO and self.nodeset is not None:
            raise self.error("nodeset can't be given with placement='auto'")
        if self.placement == Placement.STATIC and self.nodeset is None:
            raise self.error("nodeset for NUMA memory tuning must be set if 'placement' "
                             "is 'static'")


class MemNode(Element):
    TAG = "memnode"
    cellid: int = attr(UINT, required=True)
    mode: NumatuneMode = attr(NumatuneMode, required=True)
    nodeset: CPUSet = attr(CPUSET, required=True)


class Numatune(Element):
    """Host NUMA nodes for guest memory: the whole guest, or per guest cell."""

    TAG = "numatune"
    memory: NumatuneMemory | None = child(NumatuneMemory)
    memnodes: list[MemNode] = children(MemNode)

    def check(self, ctx: ParseContext) -> None:
        seen: set[int] = set()
        for m in self.memnodes:
            if m.cellid in seen:
                ctx.record(m.error(f"memnode for cell {m.cellid} is given twice"))
            seen.add(m.cellid)

    @property
    def mode(self) -> NumatuneMode:
        return (self.memory.mode if self.memory is not None and self.memory.mode
                else NumatuneMode.STRICT)

    def nodeset_for(self, cell: int | None) -> tuple[CPUSet | None, NumatuneMode]:
        """Host nodes and policy for guest cell ``cell`` (None: memory outside cells)."""
        for m in self.memnodes:
            if m.cellid == cell:
                return m.nodeset, m.mode
        nodeset = self.memory.nodeset if self.memory is not None else None
        return nodeset, self.mode
