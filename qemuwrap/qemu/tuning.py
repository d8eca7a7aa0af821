"""CPU pinning and scheduling of QEMU's threads, from ``<vcpu cpuset>`` and ``<cputune>``
(libvirt's qemuProcessSetupVcpu, qemuProcessSetupIOThread and qemuProcessSetupEmulator,
without cgroups).

:func:`pinning` is pure: from the definition, which host CPUs and scheduler each vCPU,
each I/O thread, the emulator threads and QEMU's main thread get, as plain JSON.  The
launcher hands it to the supervisor, which, once QEMU is up and before the guest runs,
puts thread ids on it and applies it (``runtime/pinning.py``, ``runtime/afterstart.py``).
What needs cgroups (CPU shares, CFS periods and quotas) is not enforced:
:func:`unenforced` says so, for ``--explain``.

``<numatune>`` is memory policy here (``host-nodes``/``policy`` of the memory backends,
``qemu/build/membackend.py``).  The one thread affinity libvirt draws from it
(qemuProcessInitCpuAffinity: a strict nodeset's CPUs) is replaced before QEMU runs by
the emulator's (qemuProcessSetupEmulator) when there are no cgroups, and its
``placement='auto'`` form needs numad, which is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from qemuwrap.conf.cpuset import CPUSet
from qemuwrap.conf.domain import Domain
from qemuwrap.conf.xmlreader import Node
from qemuwrap.runtime.pinning import (
    EMULATOR,
    IOTHREAD,
    MAIN,
    VCPU,
    ThreadTuning,
    apply,
    iothread_threads,
    process_threads,
    tunings,
    vcpu_threads,
)

__all__ = ["ThreadTuning", "apply", "describe", "iothread_threads", "pinning", "plan",
           "process_threads", "unenforced", "vcpu_threads"]


def _where(node: Node | None, text: str) -> str:
    """An element as the messages name it: ``line 7: <vcpupin vcpu='1' cpuset='1'/>``."""
    return f"line {node.line}: {text}" if node is not None else text


def _sched(sched, what: str = "") -> tuple[str, int, str]:
    prio = f" priority='{sched.priority}'" if sched.priority is not None else ""
    return (str(sched.scheduler), sched.priority or 0,
            _where(sched.node, f"<{sched.TAG}{what} scheduler='{sched.scheduler}'{prio}/>"))


def pinning(dom: Domain) -> list[dict]:
    """What the supervisor sets on QEMU's threads once QEMU is up: a list of entries
    ``{"thread": "vcpu"|"iothread"|"emulator"|"main", "id": N, "cpus": [...],
    "cpus_from": ELEMENT, "scheduler": NAME, "priority": N, "scheduler_from": ELEMENT}``
    (only the keys that apply).  libvirt's precedence: a thread's own pin, else
    ``<vcpu cpuset>``; the emulator's set is for every thread but the vCPUs and I/O
    threads, its scheduler for the main thread only (qemuProcessLaunch)."""
    tune = dom.cputune
    default = dom.vcpu.cpuset if dom.vcpu is not None else None
    default_from = (_where(dom.vcpu.node, f"<vcpu cpuset='{default}'>")
                    if dom.vcpu is not None and default is not None else "")
    out: list[dict] = []

    def entry(thread: str, ident: int | None, pin: CPUSet | None, pin_from: str,
              sched: tuple[str, int, str] | None, *, inherits: bool = True) -> None:
        item: dict = {"thread": thread}
        if ident is not None:
            item["id"] = ident
        cpus, cpus_from = (pin, pin_from) if pin is not None or not inherits \
            else (default, default_from)
        if cpus is not None:
            item.update(cpus=sorted(cpus), cpus_from=cpus_from)
        if sched is not None:
            item.update(scheduler=sched[0], priority=sched[1], scheduler_from=sched[2])
        if "cpus" in item or "scheduler" in item:
            out.append(item)

    pins = {p.vcpu: p for p in tune.vcpupins} if tune is not None else {}
    for index in range(dom.vcpus):
        pin = pins.get(index)
        sched = next((_sched(s, f" vcpus='{s.vcpus}'" if s.vcpus is not None else "")
                      for s in (tune.vcpuscheds if tune is not None else ())
                      if s.vcpus is None or index in s.vcpus), None)
        entry(VCPU, index, pin.cpuset if pin else None,
              _where(pin.node, f"<vcpupin vcpu='{index}' cpuset='{pin.cpuset}'/>")
              if pin else "", sched)
    tpins = {p.iothread: p for p in tune.iothreadpins} if tune is not None else {}
    for number in dom.iothreadids:
        tpin = tpins.get(number)
        tsched = next((_sched(s, f" iothreads='{s.iothreads}'"
                              if s.iothreads is not None else "")
                       for s in (tune.iothreadscheds if tune is not None else ())
                       if s.iothreads is None or number in s.iothreads), None)
        entry(IOTHREAD, number, tpin.cpuset if tpin else None,
              _where(tpin.node, f"<iothreadpin iothread='{number}' cpuset='{tpin.cpuset}'/>")
              if tpin else "", tsched)
    epin = tune.emulatorpin if tune is not None else None
    entry(EMULATOR, None, epin.cpuset if epin else None,
          _where(epin.node, f"<emulatorpin cpuset='{epin.cpuset}'/>") if epin else "", None)
    if tune is not None and tune.emulatorsched is not None:
        # its CPUs are the emulator threads' (it is one of them)
        entry(MAIN, None, None, "", _sched(tune.emulatorsched), inherits=False)
    return out


def describe(spec: list[dict]) -> list[tuple[str, str]]:
    """``--explain``'s lines for a pinning spec: (what is done, the element it comes
    from), one per element, its threads together (``vCPUs 0,2-3, iothread1``)."""
    grouped: dict[tuple[str, str], dict[str, list[int]]] = {}
    for e in spec:
        kinds = []
        if "cpus" in e:
            kinds.append((f"pinned to host CPUs {CPUSet(e['cpus'])}", e["cpus_from"]))
        if "scheduler" in e:
            prio = f" priority {e['priority']}" if e["scheduler"] in ("fifo", "rr") else ""
            kinds.append((f"scheduler {e['scheduler']}{prio}", e["scheduler_from"]))
        for key in kinds:
            grouped.setdefault(key, {}).setdefault(e["thread"], []).append(e.get("id", 0))
    out = []
    for (what, source), threads in grouped.items():
        who = []
        for kind, ids in threads.items():
            if kind in (VCPU, IOTHREAD):
                name = "vCPU" if kind == VCPU else "iothread"
                who.append(f"{name} {ids[0]}" if len(ids) == 1
                           else f"{name}s {CPUSet(ids)}")
            else:
                who.append("emulator threads" if kind == EMULATOR else "QEMU's main thread")
        out.append((f"{', '.join(who)} {what}", source))
    return out


def plan(dom: Domain, vcpu_threads: Mapping[int, int], iothread_threads: Mapping[int, int],
         all_threads: Iterable[int], host_cpus: CPUSet | None = None,
         main_thread: int | None = None) -> list[ThreadTuning]:
    """The tuning of every QEMU thread the definition says something about, in one step
    (:func:`pinning`, then ``runtime.pinning.tunings``); CPU sets cut to ``host_cpus``
    (the kernel does that cut itself when the supervisor applies them)."""
    spec = pinning(dom)
    if main_thread is None:
        spec = [e for e in spec if e["thread"] != MAIN]
    out = tunings(spec, vcpu_threads, iothread_threads, all_threads, main_thread or 0)
    if host_cpus is not None:
        for t in out:
            if t.cpus is not None:
                t.cpus = frozenset(t.cpus & host_cpus) or None
    return [t for t in out if t.cpus is not None or t.scheduler is not None]


def unenforced(dom: Domain) -> list[str]:
    """The tuning qemuwrap reads but does not apply (it runs no cgroup manager)."""
    out = []
    tune = dom.cputune
    if tune is not None and tune.cgroup_settings:
        out.append(f"<cputune> {', '.join(tune.cgroup_settings)} not enforced (cgroups)")
    if dom.blkiotune is not None:
        out.append("<blkiotune> not enforced (cgroups)")
    if dom.memtune is not None:
        out.append("<memtune> not enforced (cgroups)")
    if dom.resource is not None:
        out.append("<resource> partition not used (cgroups)")
    return out
