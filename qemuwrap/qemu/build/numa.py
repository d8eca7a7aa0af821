"""The guest's NUMA topology: a memory backend and ``-numa node`` per cell, the
distance matrix (``-numa dist``) and HMAT (``-numa hmat-lb``/``hmat-cache``), as
libvirt's qemuBuildNumaCommandLine writes them."""

from __future__ import annotations

from qemuwrap.conf.numa import AccessType, CacheAssociativity, CachePolicy
from qemuwrap.conf.xmlmodel import table
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext
from qemuwrap.qemu.build.membackend import add_backend, memory_backend

HIERARCHY = ("memory", "first-level", "second-level", "third-level")
ASSOCIATIVITY = table(CacheAssociativity, {CacheAssociativity.NONE: "none",
                                           CacheAssociativity.DIRECT: "direct",
                                           CacheAssociativity.FULL: "complex"})
CACHE_POLICY = table(CachePolicy, {CachePolicy.NONE: "none",
                                   CachePolicy.WRITEBACK: "write-back",
                                   CachePolicy.WRITETHROUGH: "write-through"})
ACCESS = table(AccessType, {AccessType.ACCESS: "access", AccessType.READ: "read",
                            AccessType.WRITE: "write"})


def numa_mem_supported(ctx: BuildContext) -> bool:
    """``-numa node,mem=`` exists for machine types before 5.1 only."""
    version = ctx.machine.version
    return version is not None and version < (5, 1)


def build_numa(ctx: BuildContext) -> None:
    dom = ctx.dom
    numa = dom.numa
    if numa is None:
        return
    hmat = numa.has_hmat
    backends = []
    need_backend = hmat or not numa_mem_supported(ctx)
    sizes = [-(-c.memory_kib // 1024) * 1024 for c in numa.cells]  # whole MiB, as libvirt
    for i in range(len(numa.cells)):
        backend = memory_backend(ctx, f"ram-node{i}", sizes[i], node=i)
        if backend is not None:
            need_backend = True
        backends.append(backend)
    master = next((i for i, c in enumerate(numa.cells) if c.cpus), 0)
    for i, cell in enumerate(numa.cells):
        memory = sizes[i]
        if need_backend and memory > 0:
            backend = backends[i] or memory_backend(ctx, f"ram-node{i}", memory, node=i,
                                                    force=True)
            if backend is not None:
                add_backend(ctx, backend, cell.node)
        parts = [optstr("node", nodeid=i)]
        parts.extend(optstr(cpus=r) for r in (cell.cpus.range_strings() if cell.cpus else ()))
        if hmat:
            parts.append(optstr(initiator=i if cell.cpus else master))
        if memory > 0:
            parts.append(optstr(memdev=f"ram-node{i}") if need_backend
                         else optstr(mem=memory // 1024))
        ctx.cmd.add("-numa", ",".join(parts), cell.node)
    if numa.has_distances:
        count = len(numa.cells)
        for src in range(count):
            for dst in range(count):
                ctx.cmd.add("-numa", optstr("dist", src=src, dst=dst,
                                            val=numa.distance(src, dst)),
                            numa.cells[src].node)
    if hmat:
        _hmat(ctx)


def _hmat(ctx: BuildContext) -> None:
    numa = ctx.dom.numa
    assert numa is not None
    ic = numa.interconnects
    if ic is not None:
        for lat in ic.latencies:
            ctx.cmd.add("-numa", optstr("hmat-lb", initiator=lat.initiator, target=lat.target,
                                        hierarchy=HIERARCHY[lat.cache or 0],
                                        data_type=f"{ACCESS[lat.type]}-latency",
                                        latency=lat.value), lat.node)
        for bw in ic.bandwidths:
            ctx.cmd.add("-numa", optstr("hmat-lb", initiator=bw.initiator, target=bw.target,
                                        hierarchy=HIERARCHY[bw.cache or 0],
                                        data_type=f"{ACCESS[bw.type]}-bandwidth",
                                        bandwidth=f"{bw.kib}K"), bw.node)
    for i, cell in enumerate(numa.cells):
        for cache in cell.caches:
            props: dict[str, object] = {"node_id": i, "size": f"{cache.size_kib}K",
                                        "level": cache.level,
                                        "associativity": ASSOCIATIVITY[cache.associativity],
                                        "policy": CACHE_POLICY[cache.policy]}
            if cache.line_bytes:
                props["line"] = cache.line_bytes
            ctx.cmd.add("-numa", optstr("hmat-cache", **props), cache.node)
