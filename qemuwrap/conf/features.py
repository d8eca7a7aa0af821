"""``<features>``: the hypervisor features libvirt maps for an x86 guest (ACPI, APIC,
Hyper-V enlightenments, KVM hints, PMU, VMware port, SMM, IOAPIC, ...)."""

from __future__ import annotations

from qemuwrap.conf.memory import Scaled
from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import (
    ON_OFF,
    Element,
    Int,
    ParseContext,
    Str,
    attr,
    child,
    flag,
)
from qemuwrap.conf.xmlwriter import Writer

#: libvirt's default and minimum spinlock retries (virDomainFeaturesHyperVDefParse).
SPINLOCKS_MIN = 0xFFF


class GICVersion(ValueSet):
    HOST = "host"
    V2 = "2"
    V3 = "3"


class IOAPICDriver(ValueSet):
    QEMU = "qemu"
    KVM = "kvm"


class HypervMode(ValueSet):
    CUSTOM = "custom"
    PASSTHROUGH = "passthrough"


class MSRsUnknown(ValueSet):
    IGNORE = "ignore"
    FAULT = "fault"


class CapabilitiesPolicy(ValueSet):
    DEFAULT = "default"
    ALLOW = "allow"
    DENY = "deny"


class HPTResizing(ValueSet):
    ENABLED = "enabled"
    DISABLED = "disabled"
    REQUIRED = "required"


class PowerPCCap(ValueSet):
    """cfpc and sbbc values (pSeries only)."""

    BROKEN = "broken"
    WORKAROUND = "workaround"
    FIXED = "fixed"


class IBSValue(ValueSet):
    BROKEN = "broken"
    WORKAROUND = "workaround"
    FIXED_IBS = "fixed-ibs"
    FIXED_CCD = "fixed-ccd"
    FIXED_NA = "fixed-na"


class State(Element):
    """A feature switched by ``state='on|off'`` (absent state: on)."""

    state: bool | None = attr(ON_OFF)

    @property
    def on(self) -> bool:
        return self.state is not False


class RequiredState(Element):
    """A feature element whose ``state`` libvirt requires (Hyper-V and KVM ones)."""

    state: bool = attr(ON_OFF, required=True)

    @property
    def on(self) -> bool:
        return self.state


# --------------------------------------------------------------------------- hyperv
def _hv(tag: str) -> type[RequiredState]:
    return type(f"Hyperv_{tag}", (RequiredState,), {"TAG": tag, "__module__": __name__})


HvRelaxed = _hv("relaxed")
HvVapic = _hv("vapic")
HvVpindex = _hv("vpindex")
HvRuntime = _hv("runtime")
HvSynic = _hv("synic")
HvReset = _hv("reset")
HvFrequencies = _hv("frequencies")
HvReenlightenment = _hv("reenlightenment")
HvTlbflush = _hv("tlbflush")
HvIpi = _hv("ipi")
HvEvmcs = _hv("evmcs")
HvAvic = _hv("avic")


class HvSpinlocks(RequiredState):
    TAG = "spinlocks"
    retries: int | None = attr(Int(0, 2**32 - 1))

    def check(self, ctx: ParseContext) -> None:
        if self.state:
            if self.retries is None:
                raise self.error("missing HyperV spinlock retry count")
            if self.retries < SPINLOCKS_MIN:
                raise self.error(f"HyperV spinlock retry count must be at least "
                                 f"{SPINLOCKS_MIN}")


class HvVendorID(RequiredState):
    TAG = "vendor_id"
    value: str | None = attr(Str(r"[^,]{0,12}", what="vendor id (at most 12 characters)"))

    def check(self, ctx: ParseContext) -> None:
        if self.state and not self.value:
            raise self.error("missing 'value' attribute for HyperV feature 'vendor_id'")


class HvStimerDirect(RequiredState):
    TAG = "direct"


class HvStimer(Element):
    TAG = "stimer"
    state: bool | None = attr(ON_OFF)
    direct: HvStimerDirect | None = child(HvStimerDirect)

    @property
    def on(self) -> bool:
        return self.state is True


class Hyperv(Element):
    """Hyper-V enlightenments (``-cpu ...,hv-*``)."""

    TAG = "hyperv"
    mode: HypervMode | None = attr(HypervMode)
    relaxed: RequiredState | None = child(HvRelaxed)
    vapic: RequiredState | None = child(HvVapic)
    spinlocks: HvSpinlocks | None = child(HvSpinlocks)
    vpindex: RequiredState | None = child(HvVpindex)
    runtime: RequiredState | None = child(HvRuntime)
    synic: RequiredState | None = child(HvSynic)
    stimer: HvStimer | None = child(HvStimer)
    reset: RequiredState | None = child(HvReset)
    vendor_id: HvVendorID | None = child(HvVendorID)
    frequencies: RequiredState | None = child(HvFrequencies)
    reenlightenment: RequiredState | None = child(HvReenlightenment)
    tlbflush: RequiredState | None = child(HvTlbflush)
    ipi: RequiredState | None = child(HvIpi)
    evmcs: RequiredState | None = child(HvEvmcs)
    avic: RequiredState | None = child(HvAvic)

    def check(self, ctx: ParseContext) -> None:
        if self.mode == HypervMode.PASSTHROUGH and any(
                getattr(self, n) is not None for n in ENLIGHTENMENTS):
            raise self.error("<hyperv mode='passthrough'> takes no enlightenments")

    def enabled(self, name: str) -> bool:
        feature = getattr(self, name)
        return feature is not None and feature.on


#: Hyper-V enlightenments in libvirt's order (virDomainHyperv), as QEMU names them.
ENLIGHTENMENTS = ("relaxed", "vapic", "spinlocks", "vpindex", "runtime", "synic", "stimer",
                  "reset", "vendor_id", "frequencies", "reenlightenment", "tlbflush", "ipi",
                  "evmcs", "avic")


# --------------------------------------------------------------------------- kvm
def _kvm(tag: str) -> type[RequiredState]:
    return type(f"Kvm_{tag.replace('-', '_')}", (RequiredState,),
                {"TAG": tag, "__module__": __name__})


KvmHidden = _kvm("hidden")
KvmHintDedicated = _kvm("hint-dedicated")
KvmPollControl = _kvm("poll-control")
KvmPvIpi = _kvm("pv-ipi")


class KvmDirtyRing(RequiredState):
    TAG = "dirty-ring"
    size: int | None = attr(Int(0, 2**32 - 1))

    def check(self, ctx: ParseContext) -> None:
        if self.state:
            size = self.size
            if size is None:
                raise self.error("dirty ring must be enabled with a size")
            if size < 1024 or size > 65536 or size & (size - 1):
                raise self.error(f"dirty ring size must be a power of 2 between 1024 "
                                 f"and 65536, not {size}")


class KVMFeatures(Element):
    TAG = "kvm"
    hidden: RequiredState | None = child(KvmHidden)
    hint_dedicated: RequiredState | None = child(KvmHintDedicated)
    poll_control: RequiredState | None = child(KvmPollControl)
    pv_ipi: RequiredState | None = child(KvmPvIpi)
    dirty_ring: KvmDirtyRing | None = child(KvmDirtyRing)


# --------------------------------------------------------------------------- others
class APIC(Element):
    TAG = "apic"
    eoi: bool | None = attr(ON_OFF)


class HAP(State):
    TAG = "hap"


class PVSpinlock(State):
    TAG = "pvspinlock"


class PMU(State):
    TAG = "pmu"


class VMPort(State):
    TAG = "vmport"


class GIC(Element):
    TAG = "gic"
    version: GICVersion | None = attr(GICVersion)


class TSeg(Scaled):
    """``<tseg unit='MiB'>48</tseg>``: the extended SMM memory (q35's TSEG)."""

    TAG = "tseg"
    DEFAULT_UNIT = "MiB"

    def check(self, ctx: ParseContext) -> None:
        super().check(ctx)
        if self.value % 1024:
            raise self.error("SMM TSEG size must be divisible by 1 MiB")

    @property
    def mib(self) -> int:
        return self.kib // 1024

    def format(self, w: Writer) -> None:
        """libvirt writes the TSEG in MiB."""
        w.text(self.TAG, self.mib, ("unit", "MiB"))


class SMM(State):
    TAG = "smm"
    tseg: TSeg | None = child(TSeg)


class IOAPIC(Element):
    TAG = "ioapic"
    driver: IOAPICDriver = attr(IOAPICDriver, required=True)


class HPTMaxPageSize(Scaled):
    TAG = "maxpagesize"


class HPT(Element):
    TAG = "hpt"
    resizing: HPTResizing | None = attr(HPTResizing)
    maxpagesize: HPTMaxPageSize | None = child(HPTMaxPageSize)


class VMCoreInfo(State):
    TAG = "vmcoreinfo"


class HTM(RequiredState):
    TAG = "htm"


class NestedHV(RequiredState):
    TAG = "nested-hv"


class CCFAssist(RequiredState):
    TAG = "ccf-assist"


class MSRs(Element):
    TAG = "msrs"
    unknown: MSRsUnknown = attr(MSRsUnknown, required=True)


class CFPC(Element):
    TAG = "cfpc"
    value: PowerPCCap = attr(PowerPCCap, required=True)


class SBBC(Element):
    TAG = "sbbc"
    value: PowerPCCap = attr(PowerPCCap, required=True)


class IBS(Element):
    TAG = "ibs"
    value: IBSValue = attr(IBSValue, required=True)


class TBCache(Scaled):
    TAG = "tb-cache"


class TCGFeatures(Element):
    TAG = "tcg"
    tb_cache: TBCache | None = child(TBCache)


class Features(Element):
    """``<features>``, in libvirt's order (virDomainFeature)."""

    TAG = "features"
    acpi: bool = flag("acpi")
    apic_el: APIC | None = child(APIC)
    pae: bool = flag("pae")
    hap: HAP | None = child(HAP)
    viridian: bool = flag("viridian")
    privnet: bool = flag("privnet")
    hyperv: Hyperv | None = child(Hyperv)
    kvm: KVMFeatures | None = child(KVMFeatures)
    pvspinlock: PVSpinlock | None = child(PVSpinlock)
    pmu: PMU | None = child(PMU)
    vmport: VMPort | None = child(VMPort)
    gic: GIC | None = child(GIC)
    smm: SMM | None = child(SMM)
    ioapic: IOAPIC | None = child(IOAPIC)
    hpt: HPT | None = child(HPT)
    vmcoreinfo: VMCoreInfo | None = child(VMCoreInfo)
    htm: HTM | None = child(HTM)
    nested_hv: NestedHV | None = child(NestedHV)
    msrs: MSRs | None = child(MSRs)
    ccf_assist: CCFAssist | None = child(CCFAssist)
    cfpc: CFPC | None = child(CFPC)
    sbbc: SBBC | None = child(SBBC)
    ibs: IBS | None = child(IBS)
    tcg: TCGFeatures | None = child(TCGFeatures)

    @property
    def apic(self) -> bool:
        return self.apic_el is not None

    def present(self) -> bool:
        """Anything to write back."""
        return any(v not in (None, False) for _k, v in self.values())
