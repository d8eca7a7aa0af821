"""``<memory>`` devices: hot-pluggable DIMMs, NVDIMMs, virtio-mem and virtio-pmem
(libvirt's virDomainMemoryDef)."""

from __future__ import annotations

from qemuwrap.conf import guid
from qemuwrap.conf.cpuset import CPUSet, CPUSetKind
from qemuwrap.conf.devices.address import Device
from qemuwrap.conf.memory import MemAccess, MemoryModel, Scaled
from qemuwrap.conf.xmlmodel import (
    YES_NO,
    Element,
    Int,
    ParseContext,
    Path,
    Str,
    attr,
    child,
    flag,
    text,
    text_child,
)


class PageSize(Scaled):
    TAG = "pagesize"


class AlignSize(Scaled):
    TAG = "alignsize"


class Nodemask(Element):
    TAG = "nodemask"
    nodes: CPUSet = text(CPUSetKind(), required=True)


class MemorySourceEl(Element):
    """Where the device's memory comes from: hugepages on host nodes (dimm,
    virtio-mem, sgx-epc) or a file (nvdimm, virtio-pmem)."""

    TAG = "source"
    pagesize: PageSize | None = child(PageSize)
    nodemask_el: Nodemask | None = child(Nodemask)
    path: str | None = text_child("path", Path())
    alignsize: AlignSize | None = child(AlignSize)
    pmem: bool = flag("pmem")

    def check(self, ctx: ParseContext) -> None:
        file_side = self.path is not None or self.alignsize is not None or self.pmem
        if file_side and (self.pagesize is not None or self.nodemask_el is not None):
            raise self.error("<path> does not go with <pagesize> or <nodemask>")
        if (self.alignsize is not None or self.pmem) and self.path is None:
            raise self.error("<alignsize> and <pmem> need a <path>")

    @property
    def pagesize_kib(self) -> int:
        return self.pagesize.kib if self.pagesize is not None else 0

    @property
    def alignsize_kib(self) -> int:
        return self.alignsize.kib if self.alignsize is not None else 0

    @property
    def nodemask(self) -> CPUSet | None:
        return self.nodemask_el.nodes if self.nodemask_el is not None else None


class TargetSize(Scaled):
    TAG = "size"


class BlockSize(Scaled):
    TAG = "block"


class RequestedSize(Scaled):
    TAG = "requested"


class CurrentSize(Scaled):
    TAG = "current"


class LabelSize(Scaled):
    TAG = "size"


class Label(Element):
    TAG = "label"
    size: LabelSize = child(LabelSize, required=True)


class MemoryTarget(Element):
    TAG = "target"
    size: TargetSize = child(TargetSize, required=True)
    node_id: int | None = text_child("node", Int(0, 2**32 - 1))
    block: BlockSize | None = child(BlockSize)
    requested: RequestedSize | None = child(RequestedSize)
    current: CurrentSize | None = child(CurrentSize)
    label: Label | None = child(Label)
    readonly: bool = flag("readonly")


class MemoryDevice(Device):
    TAG = "memory"
    model: MemoryModel = attr(MemoryModel, required=True)
    access: MemAccess | None = attr(MemAccess)
    discard: bool | None = attr(YES_NO)
    uuid: str | None = text_child("uuid", Str(r"[0-9a-fA-F\-]+", what="uuid"))
    source: MemorySourceEl | None = child(MemorySourceEl)
    target: MemoryTarget = child(MemoryTarget, required=True)

    def address_types(self) -> tuple[str, ...]:
        if self.model in (MemoryModel.VIRTIO_PMEM, MemoryModel.VIRTIO_MEM):
            return ("pci",)
        return ("dimm",)

    def check(self, ctx: ParseContext) -> None:
        """libvirt's virDomainMemoryDefValidate, per model."""
        model, src, tgt = self.model, self.source, self.target
        if self.uuid is not None:
            if model != MemoryModel.NVDIMM:
                raise self.error("<uuid> is only for an nvdimm")
            if guid.parse(self.uuid) is None:
                raise self.error(f"malformed uuid element '{self.uuid}'")
        if model in (MemoryModel.NVDIMM, MemoryModel.VIRTIO_PMEM):
            if src is None or src.path is None:
                raise self.error(f"a {model} memory device needs <source><path>")
            if model == MemoryModel.VIRTIO_PMEM and (src.alignsize or src.pmem):
                raise src.error("<alignsize> and <pmem> are only for an nvdimm")
        elif src is not None and src.path is not None:
            raise src.error(f"a {model} memory device takes no <path>")
        if tgt.label is not None and model != MemoryModel.NVDIMM:
            raise tgt.label.error("<label> is only for an nvdimm")
        if tgt.readonly and model != MemoryModel.NVDIMM:
            raise tgt.error("<readonly/> is only for an nvdimm")
        if model == MemoryModel.VIRTIO_MEM:
            if tgt.block is None:
                raise tgt.error("a virtio-mem device needs a <block> size")
            if tgt.requested is None:
                raise tgt.error("a virtio-mem device needs a <requested> size")
        elif tgt.block or tgt.requested or tgt.current:
            raise tgt.error("<block>, <requested> and <current> are only for virtio-mem")
        if tgt.label is not None and tgt.label.size.kib < 128:
            raise tgt.label.error("nvdimm label must be at least 128KiB")

    @property
    def size_kib(self) -> int:
        return self.target.size.kib

    @property
    def target_node(self) -> int | None:
        return self.target.node_id
