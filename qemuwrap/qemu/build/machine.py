"""The machine as a whole: ``-machine`` and its properties, ``-accel``, the SMM TSEG,
memory (``-m``, the RAM backend, ``-overcommit``), vCPUs (``-smp``), I/O threads,
lifecycle actions and ACPI sleep states (libvirt's qemuBuildMachineCommandLine,
qemuBuildMemCommandLine, qemuBuildSmpCommandLine, qemuBuildPMCommandLine)."""

from __future__ import annotations

from qemuwrap.conf.domain import CrashAction, PowerOffAction, RebootAction, VirtType
from qemuwrap.conf.features import IOAPICDriver
from qemuwrap.conf.memory import MemoryModel
from qemuwrap.conf.xmlmodel import table
from qemuwrap.qemu import tuning
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext
from qemuwrap.qemu.build.boot import PFLASH_CODE, PFLASH_VARS, pflash_images
from qemuwrap.qemu.build.membackend import add_backend, memory_backend

#: on_crash -> QEMU's -action panic=; "restart" is done by the supervisor on GUEST_PANICKED.
PANIC_ACTIONS = table(CrashAction, {CrashAction.DESTROY: "exit-failure",
                                    CrashAction.RESTART: "none",
                                    CrashAction.PRESERVE: "pause"},
                      not_mapped={CrashAction.RENAME_RESTART: "refused (validate/machine)",
                                  CrashAction.COREDUMP_DESTROY: "refused: no core dumps",
                                  CrashAction.COREDUMP_RESTART: "refused: no core dumps"})
#: A reboot turned into a shutdown follows the shutdown action; where that pauses
#: (on_poweroff restart/preserve) the supervisor sees SHUTDOWN's reason and ends QEMU.
SHUTDOWN_ACTIONS = table(PowerOffAction, {PowerOffAction.DESTROY: "poweroff",
                                          PowerOffAction.RESTART: "pause",
                                          PowerOffAction.PRESERVE: "pause"},
                         not_mapped={PowerOffAction.RENAME_RESTART: "refused "
                                                                    "(validate/machine)"})
REBOOT_ACTIONS = table(RebootAction, {RebootAction.RESTART: "reset",
                                      RebootAction.DESTROY: "shutdown"},
                       not_mapped={RebootAction.PRESERVE: "refused (validate/machine)",
                                   RebootAction.RENAME_RESTART: "refused "
                                                                "(validate/machine)"})
KERNEL_IRQCHIP = table(IOAPICDriver, {IOAPICDriver.QEMU: "split", IOAPICDriver.KVM: "on"})
#: The RAM object QEMU's pc and q35 machines (5.0 and later) would make themselves.
DEFAULT_RAM_ID = "pc.ram"


def _switch(value: bool) -> str:
    return "on" if value else "off"


def default_ram_backend(ctx: BuildContext) -> bool:
    """libvirt builds the RAM as a ``pc.ram`` backend object when QEMU names the
    machine's default RAM (7.2 does for every pc and q35 type) and the guest has no
    NUMA cells (whose own backends then hold the RAM)."""
    return ctx.dom.numa is None and ctx.machine.family in ("pc", "q35")


def build_machine(ctx: BuildContext) -> None:
    dom = ctx.dom
    feats = dom.features
    props: dict[str, object] = {"usb": "off"}
    if feats is not None:
        if feats.vmport is not None:
            props["vmport"] = _switch(feats.vmport.on)
        if feats.smm is not None:
            props["smm"] = _switch(feats.smm.on)
        if feats.ioapic is not None:
            props["kernel_irqchip"] = KERNEL_IRQCHIP[feats.ioapic.driver]
    props["dump_guest_core"] = _switch(bool(dom.dump_core))
    backing = dom.memory_backing
    if backing is not None and backing.nosharepages:
        props["mem_merge"] = "off"
    if any(m.model == MemoryModel.NVDIMM for m in dom.devices.memories):
        props["nvdimm"] = "on"
    if default_ram_backend(ctx):
        props["memory_backend"] = DEFAULT_RAM_ID
    if dom.launch_security is not None:
        props["confidential_guest_support"] = "lsec0"
    images = pflash_images(dom)
    if images:
        props["pflash0"] = PFLASH_CODE + "-format"
        if len(images) > 1:
            props["pflash1"] = PFLASH_VARS + "-format"
    if dom.numa is not None and dom.numa.has_hmat:
        props["hmat"] = "on"
    if dom.os.bios is not None and dom.os.bios.useserial:
        props["graphics"] = "off"
    notes = domain_notes(ctx)
    ctx.cmd.add("-machine", optstr(ctx.machine.name, **props), dom.nodes.get("os/type"),
                why="; ".join(notes) if notes else None)


def domain_notes(ctx: BuildContext) -> list[str]:
    """What the definition asks for that no option carries: applied after start by the
    supervisor, or not enforced at all (said in --explain, never dropped silently)."""
    dom = ctx.dom
    out = []
    tune = dom.cputune
    if (dom.vcpu is not None and dom.vcpu.cpuset is not None) or (tune is not None and (
            tune.vcpupins or tune.emulatorpin or tune.iothreadpins or tune.vcpuscheds
            or tune.iothreadscheds or tune.emulatorsched)):
        out.append("CPU pinning and schedulers applied to QEMU's threads after start "
                   "(qemu/tuning.py)")
    out.extend(tuning.unenforced(dom))
    if (dom.current_memory_kib is not None and dom.current_memory_kib < dom.memory_kib
            and dom.devices.memballoon.model == "none"):
        out.append("<currentMemory> not applied: without a memballoon the guest has all "
                   "of <memory> (as under libvirt)")
    if dom.seclabels:
        out.append("<seclabel> not applied (qemuwrap runs no security driver)")
    if dom.perf is not None:
        out.append("<perf> events not collected")
    if dom.on_lockfailure is not None:
        out.append("<on_lockfailure> not used (no lock manager)")
    if dom.idmap is not None:
        out.append("<idmap> ignored (containers only)")
    feats = dom.features
    if feats is not None:
        xen = [n for n in ("hap", "viridian", "privnet") if getattr(feats, n)]
        if xen:
            out.append(f"<{'>, <'.join(xen)}> ignored (Xen features)")
        if feats.msrs is not None:
            out.append("<msrs> not applied (a host KVM module setting)")
        kvm = feats.kvm
        if kvm is not None and kvm.dirty_ring is not None and dom.type != VirtType.KVM:
            out.append("<dirty-ring> ignored under TCG")
    return out


def build_accel(ctx: BuildContext) -> None:
    dom = ctx.dom
    feats = dom.features
    props: dict[str, object] = {}
    if dom.type == VirtType.KVM:
        ring = feats.kvm.dirty_ring if feats is not None and feats.kvm is not None else None
        if ring is not None and ring.state:
            props["dirty_ring_size"] = ring.size
        ctx.cmd.add("-accel", optstr("kvm", **props), dom.node)
        return
    tcg = feats.tcg if feats is not None else None
    if tcg is not None and tcg.tb_cache is not None and tcg.tb_cache.kib > 0:
        props["tb_size"] = tcg.tb_cache.kib >> 10  # MiB
    ctx.cmd.add("-accel", optstr("tcg", **props), dom.node)


def build_tseg(ctx: BuildContext) -> None:
    feats = ctx.dom.features
    tseg = feats.smm.tseg if feats is not None and feats.smm is not None else None
    if tseg is not None:
        ctx.cmd.add("-global", f"mch.extended-tseg-mbytes={tseg.mib}", tseg.node)


def initial_memory_mib(ctx: BuildContext) -> int:
    """The guest's RAM in MiB as QEMU gets it: libvirt aligns each NUMA cell (or the
    whole RAM) up to a whole MiB."""
    numa = ctx.dom.numa
    if numa is not None:
        return sum(-(-c.memory_kib // 1024) for c in numa.cells)
    return -(-ctx.dom.memory_kib // 1024)


def build_memory(ctx: BuildContext) -> None:
    """``-m`` (with slots and maxmem for hotplug), the RAM backend, ``-overcommit``."""
    dom = ctx.dom
    node = dom.nodes.get("memory")
    mib = initial_memory_mib(ctx)
    if dom.max_memory is not None:
        value = optstr(size=f"{mib * 1024}k", slots=dom.max_memory.slots,
                       maxmem=f"{dom.max_memory.kib}k")
        ctx.cmd.add("-m", value, node)
    else:
        ctx.cmd.add("-m", str(mib), node)
    if default_ram_backend(ctx):
        size_kib = mib * 1024
        backend = memory_backend(ctx, DEFAULT_RAM_ID, size_kib, node=None, system=True,
                                 force=True)
        if backend is not None:
            add_backend(ctx, backend, node)
    backing = dom.memory_backing
    locked = backing is not None and backing.locked
    ctx.cmd.add("-overcommit", f"mem-lock={_switch(locked)}",
                backing.node_of("locked") if locked and backing is not None else None,
                why="libvirt's default: guest memory not locked")


def hotplugged_vcpus(ctx: BuildContext) -> list[int]:
    """The enabled hot-pluggable vCPUs of ``<vcpus>``, in their ``order``: QEMU starts
    with them as ``-device`` (libvirt adds them over QMP before the guest runs)."""
    states = ctx.dom.vcpus_el
    if states is None:
        return []
    plugged = [s for s in states.vcpus if s.enabled and s.hotpluggable]
    return [s.id for s in sorted(plugged, key=lambda s: (s.order or 0, s.id))]


def build_smp(ctx: BuildContext) -> None:
    dom = ctx.dom
    topo = dom.topology
    maxcpus = dom.vcpus
    plugged = hotplugged_vcpus(ctx)
    if dom.vcpus_el is not None:  # the enabled vCPUs that are not hot-pluggable
        online = sum(1 for s in dom.vcpus_el.vcpus if s.enabled) - len(plugged)
    else:
        online = dom.vcpu_current or maxcpus
    props: dict[str, object] = {}
    if online != maxcpus:
        props["maxcpus"] = maxcpus
    if topo is not None:
        props.update(sockets=topo.sockets, dies=topo.dies, cores=topo.cores,
                     threads=topo.threads)
    else:
        props.update(sockets=maxcpus, cores=1, threads=1)
    ctx.cmd.add("-smp", optstr(online, **props), dom.nodes.get("vcpu") or dom.nodes.get("cpu"),
                why="default: one vCPU")
    if plugged:
        from qemuwrap.qemu.build.cpu import cpu_model

        model, _why = cpu_model(ctx)
        arch = "i386" if ctx.cmd.binary.endswith("i386") else "x86_64"
        sockets, dies, cores, threads = ((topo.sockets, topo.dies, topo.cores, topo.threads)
                                         if topo else (maxcpus, 1, 1, 1))
        for vid in plugged:
            place: dict[str, object] = {"socket_id": vid // (dies * cores * threads)}
            if dies > 1:
                place["die_id"] = vid // (cores * threads) % dies
            place.update(core_id=vid // threads % cores, thread_id=vid % threads)
            ctx.cmd.add("-device", optstr(f"{model}-{arch}-cpu", id=f"vcpu{vid}", **place),
                        dom.nodes.get("vcpus"),
                        why="a hot-pluggable vCPU enabled at start (libvirt hot-plugs it)")


def build_iothreads(ctx: BuildContext) -> None:
    """``-object iothread`` per I/O thread (libvirt's ids), and the main loop's pool."""
    dom = ctx.dom
    listed = {t.id: t for t in dom.iothreadids_el.iothreads} if dom.iothreadids_el else {}
    source = dom.nodes.get("iothreadids") or dom.nodes.get("iothreads")
    for tid in dom.iothreadids:
        t = listed.get(tid)
        ctx.cmd.add("-object", optstr("iothread", id=f"iothread{tid}",
                                      thread_pool_min=t.thread_pool_min if t else None,
                                      thread_pool_max=t.thread_pool_max if t else None),
                    t.node if t is not None else source)
    default = dom.defaultiothread
    if default is not None:
        ctx.cmd.add("-object", optstr("main-loop", id="main-loop",
                                      thread_pool_min=default.thread_pool_min,
                                      thread_pool_max=default.thread_pool_max), default.node)


def build_actions(ctx: BuildContext) -> None:
    """on_poweroff/on_reboot/on_crash as QEMU's -action where QEMU has one; the rest
    (restart after poweroff or panic) is the supervisor's, on QMP events."""
    dom = ctx.dom
    value = optstr(reboot=REBOOT_ACTIONS[dom.on_reboot],
                   shutdown=SHUTDOWN_ACTIONS[dom.on_poweroff],
                   panic=PANIC_ACTIONS[dom.on_crash])
    nodes = dom.nodes
    source = nodes.get("on_poweroff") or nodes.get("on_reboot") or nodes.get("on_crash")
    ctx.cmd.add("-action", value, source, why="libvirt's default lifecycle actions")
    if not dom.acpi:  # libvirt 9.0's qemuBuildPMCommandLine: here, not in -machine
        features = nodes.get("features")
        ctx.cmd.add("-no-acpi", None, features,
                    why="no <acpi/> in <features>" if features is not None else "no <features>")


def build_pm(ctx: BuildContext) -> None:
    """``<pm>``: S3/S4 switched off (or on) in the chipset's power management."""
    pm = ctx.dom.pm
    if pm is None:
        return
    device = "ICH9-LPC" if ctx.q35 else "PIIX4_PM"
    for state, el, name in ((pm.s3, pm.suspend_to_mem, "disable_s3"),
                            (pm.s4, pm.suspend_to_disk, "disable_s4")):
        if state is not None and el is not None:
            ctx.cmd.add("-global", f"{device}.{name}={0 if state else 1}", el.node)
