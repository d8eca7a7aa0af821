"""``<cpu>``: the guest CPU model, its features, topology, caches and NUMA cells."""

from __future__ import annotations

from qemuwrap.conf.numa import Numa
from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import (
    ON_OFF,
    Element,
    Int,
    ParseContext,
    Str,
    attr,
    child,
    children,
    text,
    text_child,
)


class CPUMode(ValueSet):
    CUSTOM = "custom"
    HOST_MODEL = "host-model"
    HOST_PASSTHROUGH = "host-passthrough"
    MAXIMUM = "maximum"


class CPUMatch(ValueSet):
    MINIMUM = "minimum"
    EXACT = "exact"
    STRICT = "strict"


class CPUCheck(ValueSet):
    NONE = "none"
    PARTIAL = "partial"
    FULL = "full"


class Fallback(ValueSet):
    ALLOW = "allow"
    FORBID = "forbid"


class FeaturePolicy(ValueSet):
    FORCE = "force"
    REQUIRE = "require"
    OPTIONAL = "optional"
    DISABLE = "disable"
    FORBID = "forbid"


class CacheMode(ValueSet):
    EMULATE = "emulate"
    PASSTHROUGH = "passthrough"
    DISABLE = "disable"


class PhysAddrMode(ValueSet):
    EMULATE = "emulate"
    PASSTHROUGH = "passthrough"


class CPUModel(Element):
    """``<model fallback vendor_id>NAME</model>`` (the name may be empty for
    host-model, which only carries fallback)."""

    TAG = "model"
    fallback: Fallback | None = attr(Fallback)
    vendor_id: str | None = attr(Str(r"[^,]{12}", what="12-character vendor id"))
    name: str | None = text(Str(r"[A-Za-z0-9_.+\-]+", what="CPU model name"))


class CPUFeature(Element):
    TAG = "feature"
    policy: FeaturePolicy = attr(FeaturePolicy, required=True)
    name: str = attr(Str(r"[a-zA-Z0-9\-_.]+", what="feature name"), required=True)


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


class CPUCache(Element):
    TAG = "cache"
    level: int | None = attr(Int(1, 3))
    mode: CacheMode = attr(CacheMode, required=True)


class MaxPhysAddr(Element):
    TAG = "maxphysaddr"
    mode: PhysAddrMode = attr(PhysAddrMode, required=True)
    bits: int | None = attr(Int(0, 2**32 - 1))


class CPU(Element):
    """The guest CPU (libvirt's virCPUDef for a domain)."""

    TAG = "cpu"
    mode: CPUMode | None = attr(CPUMode)
    match: CPUMatch | None = attr(CPUMatch)
    check_: CPUCheck | None = attr(CPUCheck, xml="check")
    migratable: bool | None = attr(ON_OFF)
    model: CPUModel | None = child(CPUModel)
    vendor: str | None = text_child("vendor", Str(r"[A-Za-z0-9 ]+", what="CPU vendor"))
    topology: Topology | None = child(Topology)
    cache: CPUCache | None = child(CPUCache)
    maxphysaddr: MaxPhysAddr | None = child(MaxPhysAddr)
    features: list[CPUFeature] = children(CPUFeature)
    numa: Numa | None = child(Numa)

    def check(self, ctx: ParseContext) -> None:
        mode = self.effective_mode
        if mode == CPUMode.CUSTOM and self.features and not self.model_name:
            raise self.error("Non-empty feature list specified without CPU model")
        if self.migratable is not None and mode not in (CPUMode.HOST_PASSTHROUGH,
                                                        CPUMode.MAXIMUM):
            raise self.error("attribute 'migratable' is only allowed for "
                             "'host-passthrough' / 'maximum' CPU mode")
        seen: set[str] = set()
        for f in self.features:
            if f.name in seen:
                ctx.record(f.error(f"CPU feature '{f.name}' specified more than once"))
            seen.add(f.name)
        if self.vendor and not self.model_name:
            raise self.error("CPU vendor specified without CPU model")
        if mode in (CPUMode.HOST_PASSTHROUGH, CPUMode.MAXIMUM) and self.check_ is None:
            self.check_ = CPUCheck.NONE  # libvirt's default for these modes

    @property
    def effective_mode(self) -> CPUMode:
        """libvirt's mode: custom unless said, and match='minimum' is host-model."""
        if self.mode is None:
            return (CPUMode.HOST_MODEL if self.match == CPUMatch.MINIMUM
                    else CPUMode.CUSTOM)
        if self.mode == CPUMode.CUSTOM and self.match == CPUMatch.MINIMUM:
            return CPUMode.HOST_MODEL
        return self.mode

    @property
    def model_name(self) -> str | None:
        return self.model.name if self.model is not None else None
