"""Checks of guest memory: hugepages against the host's hugetlbfs mounts, host NUMA
nodes for ``<numatune>``, memory hotplug and memory devices (libvirt's
qemuValidateDomainDefMemory, virDomainDefCheckMemory and the host-side errors a start
would hit)."""

from __future__ import annotations

from qemuwrap.conf.devices.address import DIMMAddress
from qemuwrap.conf.memory import MAX_MEMORY_KIB, MemoryModel
from qemuwrap.conf.numa import Placement
from qemuwrap.conf.xmlmodel import Element
from qemuwrap.hints import TYPE_CHECKING
from qemuwrap.qemu import host

if TYPE_CHECKING:
    from qemuwrap.qemu.validate import Validation


def check_hugepages(v: Validation) -> None:
    dom = v.dom
    backing = dom.memory_backing
    pages = backing.hugepages.pages if backing and backing.hugepages else []
    facts = host.facts()
    cells = len(dom.numa.cells) if dom.numa is not None else 0
    sizes: list[tuple[int, Element]] = []
    if backing is not None and backing.hugepages is not None and not pages:
        sizes.append((0, backing.hugepages))
    for page in pages:
        if page.nodeset is not None:
            beyond = [n for n in page.nodeset if n >= cells]
            if beyond:
                v.refuse(page, f"hugepages: NUMA node {beyond[0]} not found (the guest "
                               f"has {cells} NUMA cells)")
                continue
        sizes.append((page.size_kib, page))
    for mem in dom.devices.memories:
        if mem.source is not None and mem.source.pagesize is not None:
            sizes.append((mem.source.pagesize_kib, mem.source.pagesize))
    for size, where in sizes:
        if size == facts.page_kib:
            continue  # the system page size: plain memory, as libvirt does
        wanted = size or facts.default_hugepage_kib
        if not wanted or host.hugetlbfs_for(wanted) is None:
            shown = f"{wanted} KiB " if wanted else ""
            v.refuse(where, f"hugepages of {shown}need a hugetlbfs mount of that page "
                            "size, and this host has none")


def check_numatune(v: Validation) -> None:
    dom = v.dom
    tune = dom.numatune
    if tune is None:
        if dom.vcpu is not None and dom.vcpu.placement == Placement.AUTO:
            v.refuse(dom.vcpu, "placement='auto' needs advice from numad, which qemuwrap "
                               "does not run: give a <numatune> nodeset")
        return
    available = host.facts().numa_nodes
    mem = tune.memory
    vcpu = dom.vcpu
    if vcpu is not None and vcpu.placement == Placement.AUTO and (
            mem is None or mem.nodeset is None):
        v.refuse(vcpu, "placement='auto' needs advice from numad, which qemuwrap does not "
                       "run: give a <numatune> nodeset")
    if mem is not None:
        if mem.placement == Placement.AUTO:
            v.refuse(mem, "placement='auto' needs advice from numad, which qemuwrap does "
                          "not run: give a nodeset")
        missing = sorted(set(mem.nodeset or ()) - available)
        if missing:
            v.refuse(mem, f"NUMA node {missing[0]} is unavailable on this host")
    cells = len(dom.numa.cells) if dom.numa is not None else 0
    for node in tune.memnodes:
        if node.cellid >= cells:
            v.refuse(node, f"memnode for cell {node.cellid}: the guest has {cells} NUMA "
                           "cells")
        missing = sorted(set(node.nodeset) - available)
        if missing:
            v.refuse(node, f"NUMA node {missing[0]} is unavailable on this host")


def check_memory_size(v: Validation) -> None:
    numa = v.dom.numa
    for cell in numa.cells if numa is not None else ():
        if -(-cell.memory_kib // 1024) * 1024 > MAX_MEMORY_KIB:
            v.refuse(cell, f"memory size of NUMA node '{cell.id}' overflowed after "
                           "alignment")


def check_memory_devices(v: Validation) -> None:
    dom = v.dom
    mems = dom.devices.memories
    maxmem = dom.max_memory
    if maxmem is not None and dom.numa is None:
        v.refuse(maxmem, "At least one numa node has to be configured when enabling "
                         "memory hotplug")
    cells = len(dom.numa.cells) if dom.numa is not None else 0
    slots: set[int] = set()
    for mem in mems:
        if mem.model == MemoryModel.SGX_EPC:
            v.refuse(mem, "an SGX EPC section needs an Intel SGX host, which this "
                          "machine is not")
            continue
        if maxmem is None:
            v.refuse(mem, "cannot use/hotplug a memory device when domain 'maxMemory' is "
                          "not defined")
            continue
        if mem.model in (MemoryModel.DIMM, MemoryModel.NVDIMM) and not dom.acpi:
            v.refuse(mem, f"a {mem.model} needs ACPI (QEMU: memory hotplug is not enabled "
                          "without it): add <acpi/> to <features>")
        if mem.uuid is not None and v.dom.os.arch in ("x86_64", "i686"):
            v.refuse(mem, "UUID is not supported for NVDIMM device (only on ppc64)")
        node = mem.target_node
        if node is not None and node >= cells:
            v.refuse(mem.target, f"can't add memory backend for guest node '{node}' as "
                                 f"the guest has only '{cells}' NUMA nodes configured")
        if node is None and cells and mem.model in (MemoryModel.DIMM, MemoryModel.NVDIMM,
                                                    MemoryModel.VIRTIO_MEM):
            v.refuse(mem.target, "target NUMA node needs to be specified for memory device")
        addr = mem.address
        if isinstance(addr, DIMMAddress) and addr.slot is not None:
            if addr.slot >= maxmem.slots:
                v.refuse(addr, f"memory device slot '{addr.slot}' exceeds slots count "
                               f"'{maxmem.slots}'")
            elif addr.slot in slots:
                v.refuse(addr, f"memory device slot '{addr.slot}' is already being used by "
                               "another memory device")
            slots.add(addr.slot)
    if maxmem is not None:
        dimms = [m for m in mems if m.model in (MemoryModel.DIMM, MemoryModel.NVDIMM)]
        if len(dimms) > maxmem.slots:
            v.refuse(maxmem, f"{len(dimms)} memory devices need more than the "
                             f"{maxmem.slots} slots <maxMemory> gives")
        total = dom.memory_kib + sum(m.size_kib for m in mems)
        if total > maxmem.kib:
            v.refuse(maxmem, "memory devices total size exceeds the maximum memory")
    if mems and dom.memory_kib <= 0:
        v.refuse(dom, "Memory size must be specified via <memory> or in the <numa> "
                      "configuration")


CHECKS = [check_hugepages, check_numatune, check_memory_size, check_memory_devices]
