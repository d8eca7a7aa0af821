"""``-cpu``: the model and every CPU flag libvirt derives from ``<cpu>``, ``<features>``
and ``<clock>`` (qemuBuildCpuCommandLine, qemuBuildCpuHypervCommandLine)."""

from __future__ import annotations

from qemuwrap.conf.clock import TimerName
from qemuwrap.conf.cpu import CacheMode, CPUMode, FeaturePolicy, PhysAddrMode
from qemuwrap.conf.domain import VirtType
from qemuwrap.conf.features import ENLIGHTENMENTS, HypervMode
from qemuwrap.conf.xmlmodel import table
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext
from qemuwrap.qemu.cpumodels import cpu_features, tcg_cpu_features

#: libvirt's CPU feature names that QEMU spells otherwise (virQEMUCapsCPUFeaturesX86).
FEATURE_NAMES = {"cmp_legacy": "cmp-legacy", "ds_cpl": "ds-cpl", "fxsr_opt": "fxsr-opt",
                 "kvm_pv_eoi": "kvm-pv-eoi", "kvm_pv_unhalt": "kvm-pv-unhalt",
                 "lahf_lm": "lahf-lm", "nodeid_msr": "nodeid-msr", "pclmuldq": "pclmulqdq",
                 "perfctr_core": "perfctr-core", "perfctr_nb": "perfctr-nb",
                 "tsc_adjust": "tsc-adjust"}
FEATURE_SWITCH = table(FeaturePolicy, {FeaturePolicy.FORCE: "on", FeaturePolicy.REQUIRE: "on",
                                       FeaturePolicy.DISABLE: "off",
                                       FeaturePolicy.FORBID: "off"},
                       not_mapped={FeaturePolicy.OPTIONAL: "what the host CPU has"})


def qemu_feature(name: str) -> str:
    return FEATURE_NAMES.get(name, name)


def cpu_model(ctx: BuildContext) -> tuple[str, str | None]:
    """The ``-cpu`` model and, when qemuwrap differs from libvirt, why."""
    dom = ctx.dom
    cpu = dom.cpu
    tcg = dom.type != VirtType.KVM
    if cpu is None or (cpu.effective_mode == CPUMode.CUSTOM and not cpu.model_name):
        # libvirt 9.0 fills in the machine's default CPU model: qemu-system-i386's is
        # qemu32, qemu-system-x86_64's qemu64 (for an i686 guest too)
        binary = ctx.cmd.binary
        return ("qemu32" if dom.os.arch == "i686" and binary.endswith("i386")
                else "qemu64"), None
    mode = cpu.effective_mode
    if mode == CPUMode.CUSTOM:
        return cpu.model_name or "qemu64", None
    if mode == CPUMode.MAXIMUM:
        return "max", None
    if mode == CPUMode.HOST_PASSTHROUGH:
        if tcg:
            return "max", "TCG has no host CPU to pass through: QEMU's 'max' model"
        return "host", None
    # host-model: libvirt expands it from its CPU map into a named model and features
    if tcg:
        return "max", ("host-model under TCG: QEMU's 'max' model (libvirt names the "
                       "closest model in its CPU map)")
    return "host", ("host-model: the host CPU as QEMU sees it (libvirt names the closest "
                    "model in its CPU map)")


def cpu_options(ctx: BuildContext) -> list[str]:
    """``MODEL,flag=...`` parts, in libvirt's order."""
    dom = ctx.dom
    cpu = dom.cpu
    model, _why = cpu_model(ctx)
    parts = [optstr(model)]
    if cpu is not None:
        mode = cpu.effective_mode
        if mode in (CPUMode.HOST_PASSTHROUGH, CPUMode.MAXIMUM):
            migratable = cpu.migratable
            if migratable is None and mode == CPUMode.HOST_PASSTHROUGH:
                migratable = True  # libvirt's default for x86
            # libvirt probes the host CPU model (and so 'migratable') only on the
            # binary of the host's own architecture: qemu-system-i386 never gets it
            if migratable is not None and not ctx.cmd.binary.endswith("-i386"):
                parts.append(optstr(migratable="on" if migratable else "off"))
        if cpu.model is not None and cpu.model.vendor_id is not None:
            parts.append(optstr(vendor=cpu.model.vendor_id))
        known = cpu_features(ctx.caps)
        host = _host_flags(ctx)
        for feature in cpu.features:
            name = qemu_feature(feature.name)
            switch = FEATURE_SWITCH.get(feature.policy)
            if switch is None:  # optional: what the host CPU has, when we know it
                if host is None:
                    continue
                switch = "on" if name in host or feature.name in host else "off"
            if switch == "off" and name not in known and feature.name not in known:
                continue  # unknown to QEMU: already off (libvirt skips it too)
            parts.append(optstr(**{name: switch}))
    parts.extend(_flags(ctx))
    return parts


def _host_flags(ctx: BuildContext) -> frozenset[str] | None:
    """The flags an optional ``<feature>`` of a custom CPU is checked against, as
    libvirt turns it into on or off: under TCG, what QEMU's ``max`` has there (libvirt's
    host CPU for a TCG guest). None under KVM (not probed: the model decides)."""
    if ctx.dom.type == VirtType.KVM or ctx.dom.cpu is None or \
            ctx.dom.cpu.effective_mode != CPUMode.CUSTOM:
        return None
    return tcg_cpu_features(ctx.caps)


def _flags(ctx: BuildContext) -> list[str]:
    dom = ctx.dom
    out: list[str] = []
    clock = dom.clock
    for timer in clock.timers if clock is not None else ():
        if timer.name == TimerName.KVMCLOCK and timer.present is not None:
            out.append(optstr(kvmclock="on" if timer.present else "off"))
        elif timer.name == TimerName.HYPERVCLOCK and timer.present:
            out.append(optstr(hv_time="on"))
        elif timer.name == TimerName.TSC and timer.frequency:
            out.append(optstr(tsc_frequency=timer.frequency))
    feats = dom.features
    if feats is not None:
        if feats.apic_el is not None and feats.apic_el.eoi is not None:
            out.append(optstr(kvm_pv_eoi="on" if feats.apic_el.eoi else "off"))
        if feats.pvspinlock is not None:
            out.append(optstr(kvm_pv_unhalt="on" if feats.pvspinlock.on else "off"))
        hv = feats.hyperv
        if hv is not None:
            if hv.mode == HypervMode.PASSTHROUGH:
                out.append(optstr(hv_passthrough="on"))
            for name in ENLIGHTENMENTS:
                if not hv.enabled(name):
                    continue
                if name == "spinlocks" and hv.spinlocks is not None:
                    out.append(optstr(hv_spinlocks=f"{hv.spinlocks.retries or 0:#x}"))
                elif name == "vendor_id" and hv.vendor_id is not None:
                    out.append(optstr(hv_vendor_id=hv.vendor_id.value))
                else:
                    out.append(optstr(**{f"hv-{name}": "on"}))
                    if name == "stimer" and hv.stimer is not None and \
                            hv.stimer.direct is not None and hv.stimer.direct.on:
                        out.append(optstr(hv_stimer_direct="on"))
    if any(getattr(p, "model", None) == "hyperv" for p in dom.devices.panics):
        out.append("hv-crash")
    if feats is not None:
        kvm = feats.kvm
        if kvm is not None:
            if kvm.hidden is not None and kvm.hidden.on:
                out.append(optstr(kvm="off"))
            if kvm.hint_dedicated is not None and kvm.hint_dedicated.on:
                out.append(optstr(kvm_hint_dedicated="on"))
            if kvm.poll_control is not None and kvm.poll_control.on:
                out.append(optstr(kvm_poll_control="on"))
            if kvm.pv_ipi is not None and not kvm.pv_ipi.on:
                out.append(optstr(kvm_pv_ipi="off"))
        if feats.pmu is not None:
            out.append(optstr(pmu="on" if feats.pmu.on else "off"))
    cpu = dom.cpu
    if cpu is not None and cpu.cache is not None:
        mode = cpu.cache.mode
        host_like = cpu.effective_mode in (CPUMode.HOST_PASSTHROUGH, CPUMode.MAXIMUM)
        if mode == CacheMode.EMULATE:
            out.append(optstr(l3_cache="on"))
        elif mode == CacheMode.PASSTHROUGH:
            out.append(optstr(host_cache_info="on"))
        if mode in (CacheMode.EMULATE, CacheMode.DISABLE) and host_like:
            out.append(optstr(host_cache_info="off"))
        if mode in (CacheMode.PASSTHROUGH, CacheMode.DISABLE):
            out.append(optstr(l3_cache="off"))
    if cpu is not None and cpu.maxphysaddr is not None:
        addr = cpu.maxphysaddr
        if addr.mode == PhysAddrMode.PASSTHROUGH:
            out.append(optstr(host_phys_bits="on"))
        elif addr.bits:
            out.append(optstr(phys_bits=addr.bits))
    return out


def build_cpu(ctx: BuildContext) -> None:
    _model, why = cpu_model(ctx)
    cpu = ctx.dom.cpu
    ctx.cmd.add("-cpu", ",".join(cpu_options(ctx)), cpu.node if cpu is not None else None,
                why=why or "libvirt's default CPU model for the architecture")
