"""Memory devices: a backend object and ``-device pc-dimm|nvdimm|virtio-mem-pci|
virtio-pmem-pci`` each (qemuBuildMemoryDeviceCommandLine, qemuBuildMemoryDeviceProps),
and the DIMM slots libvirt gives them (qemuDomainAssignMemorySlots)."""

from __future__ import annotations

from qemuwrap.conf.devices.address import DIMMAddress
from qemuwrap.conf.devices.memory import MemoryDevice, MemoryModel
from qemuwrap.conf.domain import Domain
from qemuwrap.conf.xmlmodel import table
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext
from qemuwrap.qemu.build.membackend import add_backend, memory_backend, page_info

MEMORY_DEVICES = table(MemoryModel, {MemoryModel.DIMM: "pc-dimm",
                                     MemoryModel.NVDIMM: "nvdimm",
                                     MemoryModel.VIRTIO_MEM: "virtio-mem-pci",
                                     MemoryModel.VIRTIO_PMEM: "virtio-pmem-pci"},
                       not_mapped={MemoryModel.SGX_EPC: "refused: needs an SGX host"})


def assign_memory_slots(dom: Domain) -> None:
    """DIMM slots for dimms and nvdimms without one, lowest free first."""
    dimms = [m for m in dom.devices.memories
             if m.model in (MemoryModel.DIMM, MemoryModel.NVDIMM)]
    used = {m.address.slot for m in dimms
            if isinstance(m.address, DIMMAddress) and m.address.slot is not None}
    free = (n for n in range(2**16) if n not in used)
    for mem in dimms:
        if mem.address is None:
            mem.address = DIMMAddress(slot=next(free))
        elif isinstance(mem.address, DIMMAddress) and mem.address.slot is None:
            mem.address.slot = next(free)


def device_props(ctx: BuildContext, mem: MemoryDevice) -> dict[str, object]:
    props: dict[str, object] = {"node": mem.target_node}
    tgt = mem.target
    if mem.model == MemoryModel.NVDIMM:
        if tgt.label is not None:
            props["label-size"] = tgt.label.size.kib * 1024
        if mem.uuid is not None:
            props["uuid"] = mem.uuid.lower()
        if tgt.readonly:
            props["unarmed"] = "on"
    if mem.model == MemoryModel.VIRTIO_MEM:
        if tgt.block is not None:
            props["block-size"] = tgt.block.kib * 1024
        if tgt.requested is not None:
            props["requested-size"] = tgt.requested.kib * 1024
    props["memdev"] = f"mem{mem.alias_name}"
    if mem.model == MemoryModel.VIRTIO_MEM and page_info(ctx, mem.target_node, mem).prealloc:
        props["prealloc"] = "on"
    props["id"] = mem.alias_name
    addr = mem.address
    if isinstance(addr, DIMMAddress):
        props["slot"] = addr.slot
        if addr.base is not None:
            props["addr"] = addr.base
    else:
        props.update(ctx.pci_props(mem))
    return props


def build_memory_devices(ctx: BuildContext) -> None:
    for mem in ctx.dom.devices.memories:
        device = MEMORY_DEVICES.get(mem.model)
        if device is None:
            continue
        backend = memory_backend(ctx, f"mem{mem.alias_name}", mem.size_kib,
                                 node=mem.target_node, force=True, mem=mem)
        if backend is not None:
            add_backend(ctx, backend, mem.node)
        ctx.cmd.add("-device", optstr(device, **device_props(ctx, mem)), mem.node)
