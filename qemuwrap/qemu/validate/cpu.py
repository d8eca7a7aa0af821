"""Checks of ``<cpu>``, vCPUs, NUMA cells and CPU tuning against this QEMU and host
(libvirt's qemuValidateDomainDefCpu, qemuValidateDomainDefNuma, cputune checks)."""

from __future__ import annotations

import os

from qemuwrap.conf.cpu import CacheMode, CPUMode, FeaturePolicy, PhysAddrMode
from qemuwrap.conf.cpuset import CPUSet
from qemuwrap.hints import TYPE_CHECKING
from qemuwrap.qemu.build.cpu import qemu_feature
from qemuwrap.qemu.cpumodels import cpu_features, cpu_models

if TYPE_CHECKING:
    from qemuwrap.conf.domain import Domain
    from qemuwrap.conf.xmlmodel import Element
    from qemuwrap.errors import UnsupportedError
    from qemuwrap.qemu.validate import Validation


def host_cpus() -> CPUSet:
    """The CPUs this process may run on (the host's, minus any affinity limit)."""
    try:
        return CPUSet(os.sched_getaffinity(0))
    except OSError:  # pragma: no cover - every Linux has it
        return CPUSet(range(os.cpu_count() or 1))


def check_cpu(v: Validation) -> None:
    dom = v.dom
    cpu = dom.cpu
    if cpu is None:
        return
    mode = cpu.effective_mode
    name = cpu.model_name
    if mode == CPUMode.CUSTOM and name and name not in cpu_models(v.caps):
        v.refuse(cpu.model, f"CPU model '{name}' is not supported by {v.caps.emulator}")
    known = cpu_features(v.caps)
    for f in cpu.features:
        if f.policy in (FeaturePolicy.FORCE, FeaturePolicy.REQUIRE) and \
                qemu_feature(f.name) not in known and f.name not in known:
            v.refuse(f, f"CPU feature '{f.name}' is not known to {v.caps.emulator}")
    host_like = mode in (CPUMode.HOST_PASSTHROUGH, CPUMode.MAXIMUM)
    cache = cpu.cache
    if cache is not None:
        if cache.mode == CacheMode.PASSTHROUGH and not host_like:
            v.refuse(cache, "CPU cache mode 'passthrough' can only be used with "
                            "'host-passthrough' / 'maximum' CPUs")
        if cache.mode == CacheMode.EMULATE and cache.level != 3:
            v.refuse(cache, "CPU cache mode 'emulate' can only be used with level='3'")
        if cache.mode != CacheMode.EMULATE and cache.level is not None:
            v.refuse(cache, f"CPU cache mode '{cache.mode}' takes no level")
    addr = cpu.maxphysaddr
    if addr is not None:
        if addr.mode == PhysAddrMode.PASSTHROUGH and not host_like:
            v.refuse(addr, "CPU maximum physical address bits mode 'passthrough' can only "
                           "be used with 'host-passthrough' / 'maximum' CPUs")
        if addr.mode == PhysAddrMode.EMULATE and not addr.bits:
            v.refuse(addr, "if using CPU maximum physical address mode='emulate', bits= "
                           "must be specified too")
        if addr.mode == PhysAddrMode.PASSTHROUGH and addr.bits:
            v.refuse(addr, "CPU maximum physical address bits are only taken with "
                           "mode='emulate'")
    if mode == CPUMode.HOST_PASSTHROUGH and dom.type == "kvm" and \
            "kvm" not in v.caps.accelerators:
        v.refuse(cpu, "CPU mode 'host-passthrough' needs KVM")
    if mode == CPUMode.HOST_PASSTHROUGH and dom.type == "qemu":  # libvirt's words
        v.refuse(cpu, f"CPU mode 'host-passthrough' for {dom.os.arch} qemu domain is not "
                      "supported by hypervisor (use mode='maximum' under TCG)")


def check_numa(v: Validation) -> None:
    dom = v.dom
    numa = dom.numa
    if numa is None:
        return
    if numa.has_hmat and not any(c.cpus for c in numa.cells):
        v.refuse(numa, "At least one NUMA node has to have CPUs")
    links = numa.interconnects
    for cell in numa.cells:
        if not cell.caches:
            continue
        latency = links is not None and any(
            ic.target == cell.id and not ic.cache for ic in links.latencies)
        bandwidth = links is not None and any(
            ic.target == cell.id and not ic.cache for ic in links.bandwidths)
        if not (latency and bandwidth):
            v.refuse(cell.caches[0], f"NUMA cell {cell.id} has a memory side cache but no "
                                     "memory latency and bandwidth <interconnects> to it "
                                     "(QEMU needs both)")
    covered: set[int] = set()
    for cell in numa.cells:
        covered.update(cell.cpus or ())
    if len(numa.cells) > 1 and v.machine.family not in ("pc", "q35"):
        v.refuse(numa, f"NUMA is not supported on machine type '{v.machine.name}'")


def check_vcpus(v: Validation) -> None:
    """``<vcpus>``: QEMU onlines vCPUs 0 to N-1 from ``-smp``; the other enabled ones
    must be hot-pluggable (they become ``-device`` CPUs), as libvirt requires."""
    dom = v.dom
    states = dom.vcpus_el
    if states is None:
        return
    fixed = sorted(s.id for s in states.vcpus if s.enabled and not s.hotpluggable)
    if fixed != list(range(len(fixed))) or not fixed:
        v.refuse(states, "the enabled vCPUs that are not hot-pluggable must be vCPUs 0 "
                         "to N-1 (QEMU starts exactly those)")
    for s in states.vcpus:
        if not s.enabled and s.hotpluggable is False:
            v.refuse(s, f"vCPU {s.id} can't be offline and not hot-pluggable")
    enabled = sum(1 for s in states.vcpus if s.enabled)
    if dom.vcpu_current is not None and enabled != dom.vcpu_current:
        v.refuse(states, f"{enabled} vCPUs enabled in <vcpus> but <vcpu current> says "
                         f"{dom.vcpu_current}")


def check_cputune(v: Validation) -> None:
    dom = v.dom
    tune = dom.cputune
    if tune is None:
        return
    for pin in tune.vcpupins:
        if pin.vcpu >= dom.vcpus:
            v.refuse(pin, f"vcpupin for vCPU {pin.vcpu}: the guest has {dom.vcpus} vCPUs")
    ids = set(dom.iothreadids)
    for tpin in tune.iothreadpins:
        if tpin.iothread not in ids:
            v.refuse(tpin, f"iothreadpin names iothread {tpin.iothread}, which the guest "
                           "does not have")
    for sched in tune.vcpuscheds:
        for n in sched.vcpus or ():
            if n >= dom.vcpus:
                v.refuse(sched, f"vcpusched names vCPU {n}: the guest has {dom.vcpus}")
                break
    for tsched in tune.iothreadscheds:
        missing = [n for n in tsched.iothreads or () if n not in ids]
        if missing:
            v.refuse(tsched, f"iothreadsched names iothread {missing[0]}, which the guest "
                             "does not have")
    for ct in tune.cachetunes:
        v.refuse(ct, "cache allocation (<cachetune>) needs the host's resctrl file system, "
                     "which qemuwrap does not manage")
    for mt in tune.memorytunes:
        v.refuse(mt, "memory bandwidth allocation (<memorytune>) needs the host's resctrl "
                     "file system, which qemuwrap does not manage")


def check_hyperv(v: Validation) -> None:
    feats = v.dom.features
    hv = feats.hyperv if feats is not None else None
    if hv is not None and v.dom.type != "kvm" and hv.enabled("vpindex"):
        v.refuse(hv.vpindex, "the Hyper-V vpindex enlightenment needs KVM: QEMU 7.2 "
                             "under TCG refuses it (kernel doesn't allow setting HyperV "
                             "VP_INDEX)")


CHECKS = [check_cpu, check_numa, check_vcpus, check_cputune, check_hyperv]


def host_cpusets(dom: Domain) -> list[UnsupportedError]:
    """A host check: every CPU set the supervisor pins threads to names at least one
    CPU of this host (``--no-host-check`` translates as for another host)."""
    from qemuwrap.qemu.validate import refusal

    host = host_cpus()
    tune = dom.cputune
    pinned: list[tuple[Element, CPUSet]] = []
    if dom.vcpu is not None and dom.vcpu.cpuset is not None:
        pinned.append((dom.vcpu, dom.vcpu.cpuset))
    if tune is not None:
        ids = set(dom.iothreadids)
        pinned += [(p, p.cpuset) for p in tune.vcpupins if p.vcpu < dom.vcpus]
        if tune.emulatorpin is not None:
            pinned.append((tune.emulatorpin, tune.emulatorpin.cpuset))
        pinned += [(p, p.cpuset) for p in tune.iothreadpins if p.iothread in ids]
    return [refusal(where, f"cpuset '{cpus}' names no CPU of this host")
            for where, cpus in pinned if not (cpus & host)]
