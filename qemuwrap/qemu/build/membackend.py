"""Memory backends (``-object memory-backend-ram|file|memfd``) for the guest's RAM,
its NUMA cells and its memory devices, as libvirt 9.0's qemuBuildMemoryBackendProps
chooses them: hugepages and file/memfd sources, shared or private access, discard,
preallocation (with a thread context bound to the host nodes), host NUMA policy."""

from __future__ import annotations

from qemuwrap.conf.memory import AllocationMode, MemAccess, MemoryModel, MemorySourceType
from qemuwrap.conf.numa import NumatuneMode
from qemuwrap.conf.xmlmodel import table
from qemuwrap.hints import TYPE_CHECKING
from qemuwrap.qemu import host
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext
from qemuwrap.record import Factory, Record

if TYPE_CHECKING:
    from qemuwrap.conf.devices.memory import MemoryDevice

#: numatune mode -> QEMU's memory policy; 'restrictive' leaves the policy to cgroups.
POLICIES = table(NumatuneMode, {NumatuneMode.STRICT: "bind",
                                NumatuneMode.PREFERRED: "preferred",
                                NumatuneMode.INTERLEAVE: "interleave"},
                 not_mapped={NumatuneMode.RESTRICTIVE: "only cgroups restrict the nodes "
                                                       "(no host-nodes/policy given)"})


class Backend(Record):
    """One ``-object memory-backend-*`` (and the thread context preallocating it)."""

    qom_type: str
    id: str
    props: dict = Factory(dict)
    #: The host nodes of a thread context that preallocates it, when one is needed.
    thread_context: list | None = None

    def options(self) -> list[tuple[str, str]]:
        """The ``-object`` options, thread context first."""
        out = []
        if self.thread_context is not None:
            out.append(("-object", ",".join(
                [optstr("thread-context", id=f"tc-{self.id}")]
                + [optstr(**{"node-affinity": r}) for r in self.thread_context])))
        parts = [optstr(self.qom_type, id=self.id)]
        for key, value in self.props.items():
            for v in value if isinstance(value, list) else (value,):
                parts.append(optstr(**{key: _qemu_value(v)}))
        out.append(("-object", ",".join(parts)))
        return out


def _qemu_value(value: object) -> object:
    if value is True:
        return "on"
    if value is False:
        return "off"
    return value


class PageInfo(Record):
    """libvirt's qemuBuildMemoryGetPagesize for one backend."""

    page_kib: int
    need_hugepage: bool
    use_hugepage: bool
    prealloc: bool


def page_info(ctx: BuildContext, node: int | None, mem: MemoryDevice | None) -> PageInfo:
    dom = ctx.dom
    backing = dom.memory_backing
    page = 0
    nvdimm_path = None
    if mem is not None:
        src = mem.source
        if mem.model in (MemoryModel.DIMM, MemoryModel.VIRTIO_MEM):
            page = src.pagesize_kib if src is not None else 0
        elif mem.model in (MemoryModel.NVDIMM, MemoryModel.VIRTIO_PMEM):
            nvdimm_path = src.path if src is not None else None
    need = use = bool(page)
    if not page:
        pages = backing.hugepages.pages if backing and backing.hugepages else []
        master = next((p for p in pages if p.nodeset is None), None)
        chosen = master
        if node is not None:
            for p in pages:
                if p.nodeset is not None and node in p.nodeset:
                    chosen, need = p, True
                    break
        if chosen is not None:
            page, use = chosen.size_kib, True
    system_page = host.facts().page_kib
    if page == system_page:
        page, need, use = 0, False, False
    elif use and page == 0:
        page = host.facts().default_hugepage_kib or 0
    prealloc = backing is not None and backing.allocation_mode == AllocationMode.IMMEDIATE
    if nvdimm_path is not None:
        if mem is not None and mem.model == MemoryModel.NVDIMM and \
                not (mem.source is not None and mem.source.pmem):
            prealloc = True
    elif use:
        prealloc = True
    return PageInfo(page, need, use, prealloc)


def memory_backend(ctx: BuildContext, alias: str, size_kib: int, *, node: int | None,
                   system: bool = False, force: bool = False,
                   mem: MemoryDevice | None = None) -> Backend | None:
    """The backend for ``size_kib`` of guest memory: the whole RAM (``system``), NUMA
    cell ``node``, or memory device ``mem``.  None when plain RAM would do and nothing
    asks for a backend (``force``)."""
    dom = ctx.dom
    backing = dom.memory_backing
    numa = dom.numa
    numatune = dom.numatune
    access = mem.access if mem is not None else None
    discard = mem.discard if mem is not None else None
    if node is not None and numa is not None and node < len(numa.cells):
        cell = numa.cells[node]
        access = access or cell.mem_access
        discard = cell.discard if discard is None else discard
    if access is None and backing is not None:
        access = backing.access
    if discard is None and backing is not None and backing.discard:
        discard = True
    info = page_info(ctx, node, mem)
    source = backing.source_type if backing is not None else None
    nodemask = mem.source.nodemask if mem is not None and mem.source is not None else None
    has_source_nodes = nodemask is not None
    node_specified = numatune is not None and any(m.cellid == node for m in numatune.memnodes)
    nvdimm_path = (mem.source.path if mem is not None and mem.source is not None
                   and mem.model in (MemoryModel.NVDIMM, MemoryModel.VIRTIO_PMEM) else None)

    props: dict = {}
    qom_type = "memory-backend-file"
    canonical_off = False
    if nvdimm_path is None and source == MemorySourceType.MEMFD:
        qom_type = "memory-backend-memfd"
        if info.use_hugepage:
            props["hugetlb"] = True
            props["hugetlbsize"] = info.page_kib * 1024
        _share(props, access)
        canonical_off = system
    elif info.use_hugepage or nvdimm_path or access or source == MemorySourceType.FILE:
        if nvdimm_path:
            path = nvdimm_path
        elif info.use_hugepage:
            mount = host.hugetlbfs_for(info.page_kib)
            # validation refused a page size no hugetlbfs serves
            path = mount.path if mount is not None else "/dev/hugepages"
        else:
            path = ctx.paths.state_dir  # a directory: QEMU makes an unlinked file in it
        props["mem-path"] = path
        if not nvdimm_path and discard is not None:
            props["discard-data"] = discard
        _share(props, access)
        canonical_off = system
    else:
        qom_type = "memory-backend-ram"
    if canonical_off:
        props["x-use-canonical-path-for-ramblock-id"] = False
    if mem is not None and mem.model == MemoryModel.VIRTIO_MEM:
        props["reserve"] = False
    else:
        if info.prealloc:
            props["prealloc"] = True
        threads = backing.allocation_threads if backing is not None else None
        if threads:
            props["prealloc-threads"] = threads
    props["size"] = size_kib * 1024
    if mem is not None and mem.model == MemoryModel.NVDIMM and mem.source is not None:
        if mem.source.alignsize_kib:
            props["align"] = mem.source.alignsize_kib * 1024
        if mem.source.pmem:
            props["pmem"] = True
    policy_nodes = nodemask
    mode = NumatuneMode.STRICT
    if numatune is not None:
        nodes, mode = numatune.nodeset_for(node)
        if not has_source_nodes:
            policy_nodes = nodes
    thread_context = None
    if policy_nodes is not None:
        if has_source_nodes:
            mode = NumatuneMode.STRICT
        if mode != NumatuneMode.RESTRICTIVE:
            props["host-nodes"] = policy_nodes.range_strings()
            props["policy"] = POLICIES[mode]
        if props.get("prealloc"):
            thread_context = policy_nodes.range_strings()
            props["prealloc-context"] = f"tc-{alias}"
    needed = (info.need_hugepage or has_source_nodes or node_specified or nvdimm_path
              or access is not None or source in (MemorySourceType.FILE,
                                                  MemorySourceType.MEMFD))
    if not needed and not force:
        return None
    backend = Backend(qom_type, alias, props)
    if thread_context is not None:
        backend.thread_context = thread_context
    return backend


def _share(props: dict, access: MemAccess | None) -> None:
    if access == MemAccess.SHARED:
        props["share"] = True
    elif access == MemAccess.PRIVATE:
        props["share"] = False


def add_backend(ctx: BuildContext, backend: Backend, source) -> None:
    for option, value in backend.options():
        ctx.cmd.add(option, value, source)
