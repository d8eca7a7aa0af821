"""CPU pinning and scheduling of a running QEMU's threads, from ``<vcpu cpuset>`` and
``<cputune>`` (libvirt's qemuProcessSetupVcpu, qemuProcessSetupIOThread and
qemuProcessSetupEmulator, without cgroups).

:func:`plan` is pure: from the definition and what QMP and /proc report (vCPU thread ids
from ``query-cpus-fast``, I/O thread ids from ``query-iothreads``, every thread of the
QEMU process) it says which thread gets which host CPUs and scheduler.  :func:`apply`
does it with ``os.sched_setaffinity`` / ``os.sched_setscheduler``.  The supervisor calls
both once QEMU is up (before the guest runs).  What needs cgroups (CPU shares, CFS
periods and quotas) is not enforced: :func:`unenforced` says so, for ``--explain``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from qemuwrap.conf.cpuset import CPUSet
from qemuwrap.conf.domain import Domain
from qemuwrap.conf.tuning import Scheduler
from qemuwrap.conf.xmlmodel import table
from qemuwrap.record import Record

#: <*sched scheduler=...> -> the Linux policy.
POLICIES = table(Scheduler, {Scheduler.BATCH: os.SCHED_BATCH, Scheduler.IDLE: os.SCHED_IDLE,
                             Scheduler.FIFO: os.SCHED_FIFO, Scheduler.RR: os.SCHED_RR})


class ThreadTuning(Record):
    """What one QEMU thread gets: host CPUs (None: leave as is) and a scheduler."""

    thread_id: int
    role: str  # "vcpu 0", "iothread1", "emulator"
    cpus: CPUSet | None = None
    scheduler: Scheduler | None = None
    priority: int = 0


def plan(dom: Domain, vcpu_threads: Mapping[int, int], iothread_threads: Mapping[int, int],
         all_threads: Iterable[int], host_cpus: CPUSet | None = None) -> list[ThreadTuning]:
    """The tuning of every QEMU thread the definition says something about.

    ``vcpu_threads``: vCPU index -> thread id (``query-cpus-fast``'s cpu-index and
    thread-id); ``iothread_threads``: I/O thread number (``iothreadN``) -> thread id
    (``query-iothreads``); ``all_threads``: every thread of the process
    (``/proc/PID/task``), the rest of which are emulator threads.  CPU sets are cut to
    ``host_cpus`` (a CPU this host lacks cannot be used; validation refused sets with
    none at all)."""
    tune = dom.cputune
    default = dom.vcpu.cpuset if dom.vcpu is not None else None

    def usable(cpus: CPUSet | None) -> CPUSet | None:
        if cpus is None or host_cpus is None:
            return cpus
        return CPUSet(cpus & host_cpus) or None

    out: list[ThreadTuning] = []
    pins = {p.vcpu: p.cpuset for p in tune.vcpupins} if tune is not None else {}
    for index, tid in sorted(vcpu_threads.items()):
        item = ThreadTuning(tid, f"vcpu {index}", usable(pins.get(index, default)))
        for sched in tune.vcpuscheds if tune is not None else ():
            if sched.vcpus is None or index in sched.vcpus:
                item.scheduler, item.priority = sched.scheduler, sched.priority or 0
        out.append(item)
    tpins = {p.iothread: p.cpuset for p in tune.iothreadpins} if tune is not None else {}
    for number, tid in sorted(iothread_threads.items()):
        item = ThreadTuning(tid, f"iothread{number}", usable(tpins.get(number, default)))
        for tsched in tune.iothreadscheds if tune is not None else ():
            if tsched.iothreads is None or number in tsched.iothreads:
                item.scheduler, item.priority = tsched.scheduler, tsched.priority or 0
        out.append(item)
    emulator = (tune.emulatorpin.cpuset if tune is not None and tune.emulatorpin is not None
                else default)
    esched = tune.emulatorsched if tune is not None else None
    taken = set(vcpu_threads.values()) | set(iothread_threads.values())
    for tid in sorted(set(all_threads) - taken):
        item = ThreadTuning(tid, "emulator", usable(emulator))
        if esched is not None:
            item.scheduler, item.priority = esched.scheduler, esched.priority or 0
        out.append(item)
    return [t for t in out if t.cpus is not None or t.scheduler is not None]


def vcpu_threads(query_cpus_fast: list[dict]) -> dict[int, int]:
    """vCPU index -> thread id, from QMP ``query-cpus-fast``."""
    return {int(c["cpu-index"]): int(c["thread-id"]) for c in query_cpus_fast}


def iothread_threads(query_iothreads: list[dict]) -> dict[int, int]:
    """I/O thread number -> thread id, from QMP ``query-iothreads`` (ids ``iothreadN``)."""
    out = {}
    for t in query_iothreads:
        name = str(t.get("id", ""))
        if name.startswith("iothread") and name[8:].isdigit():
            out[int(name[8:])] = int(t["thread-id"])
    return out


def process_threads(pid: int) -> list[int]:
    """Every thread of process ``pid``."""
    try:
        return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return []


def apply(tunings: Iterable[ThreadTuning]) -> list[str]:
    """Pin and schedule each thread; the failures (a thread gone, no permission for a
    real-time policy), one line each."""
    problems = []
    for t in tunings:
        try:
            if t.cpus is not None:
                os.sched_setaffinity(t.thread_id, t.cpus)
            if t.scheduler is not None:
                os.sched_setscheduler(t.thread_id, POLICIES[t.scheduler],
                                      os.sched_param(t.priority))
        except OSError as exc:
            problems.append(f"{t.role} (thread {t.thread_id}): {exc.strerror}")
    return problems


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
