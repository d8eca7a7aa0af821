"""QEMU's threads pinned and scheduled as the definition says, without cgroups.

The launcher turns ``<vcpu cpuset>`` and ``<cputune>`` into a pinning spec (plain JSON,
``qemu/tuning.py: pinning``): one entry per vCPU, per I/O thread, for the emulator
threads and for QEMU's main thread, each with its host CPUs and/or scheduler.  Here,
in the lean supervisor, :func:`tunings` puts thread ids on those entries (what
``query-cpus-fast``, ``query-iothreads`` and ``/proc/PID/task`` report) and
:func:`apply` sets them with ``sched_setaffinity``/``sched_setscheduler``.

libvirt 9.0 without cgroups does the same (qemuProcessSetupEmulator before QEMU runs,
qemuProcessSetupVcpus/IOThreads and the emulator scheduler once the monitor is up): every
thread but the vCPUs and I/O threads is an emulator thread and takes the emulator's
CPUs; the emulator's scheduler goes to the main thread only ("not for the main thread"
in qemuProcessSetupPid, then virProcessSetScheduler(vm->pid)).  Where the definition
says nothing, a thread keeps the affinity QEMU inherited (libvirt would reset it to every
host CPU; a supervisor started under ``taskset`` or a service's CPUAffinity= keeps it).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Mapping

from qemuwrap.errors import QemuwrapError
from qemuwrap.record import Record

#: libvirt's scheduler names -> the Linux policy.
POLICIES = {"batch": os.SCHED_BATCH, "idle": os.SCHED_IDLE, "fifo": os.SCHED_FIFO,
            "rr": os.SCHED_RR}

#: The kinds of pinning entry: which threads each is for.
VCPU, IOTHREAD, EMULATOR, MAIN = "vcpu", "iothread", "emulator", "main"


class PinningError(QemuwrapError):
    """A thread the definition tunes is not there, or cannot be tuned as it says."""


class ThreadTuning(Record):
    """What one QEMU thread gets: host CPUs (None: left as is) and a scheduler; ``role``
    names the thread, ``*_from`` the element each comes from (for a one-line error)."""

    thread_id: int
    role: str  # "vcpu 0", "iothread1", "emulator", "main"
    cpus: frozenset[int] | None = None
    scheduler: str | None = None
    priority: int = 0
    cpus_from: str = ""
    scheduler_from: str = ""


def tunings(spec: Iterable[Mapping], vcpu_threads: Mapping[int, int],
            iothread_threads: Mapping[int, int], all_threads: Iterable[int],
            main_thread: int) -> list[ThreadTuning]:
    """Thread ids put on the spec's entries.  ``vcpu_threads``: vCPU index -> thread id;
    ``iothread_threads``: I/O thread number -> thread id; ``all_threads``: every thread
    of the process, the rest of which are emulator threads; ``main_thread``: QEMU's pid.
    A vCPU the spec names that QEMU does not run (not plugged at start) is skipped."""
    taken = set(vcpu_threads.values()) | set(iothread_threads.values())
    emulators = sorted(set(all_threads) - taken)
    out = []
    for entry in spec:
        kind, ident = entry["thread"], int(entry.get("id", -1))
        if kind == VCPU:
            tids = [(f"vcpu {ident}", vcpu_threads[ident])] if ident in vcpu_threads else []
        elif kind == IOTHREAD:
            if ident not in iothread_threads:
                where = entry.get("cpus_from") or entry.get("scheduler_from")
                raise PinningError(f"{where}: QEMU runs no iothread{ident}")
            tids = [(f"iothread{ident}", iothread_threads[ident])]
        elif kind == EMULATOR:
            tids = [("emulator", tid) for tid in emulators]
        else:
            tids = [("main", main_thread)]
        cpus = entry.get("cpus")
        for role, tid in tids:
            out.append(ThreadTuning(tid, role, frozenset(cpus) if cpus is not None else None,
                                    entry.get("scheduler"), entry.get("priority") or 0,
                                    entry.get("cpus_from", ""),
                                    entry.get("scheduler_from", "")))
    return out


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


def apply(items: Iterable[ThreadTuning]) -> list[str]:
    """Pin and schedule each thread; the failures (a real-time priority out of the
    host's range, as libvirt's virProcessSetScheduler says it; no permission; CPUs
    outside what this process may use), one line each.  An emulator thread that ended
    meanwhile (QEMU's worker threads come and go) is no failure."""
    problems = []
    for t in items:
        steps = [("pin", t.cpus_from)] if t.cpus is not None else []
        steps += [("schedule", t.scheduler_from)] if t.scheduler is not None else []
        for verb, source in steps:
            where = f"{source}: " if source else ""
            try:
                if verb == "pin":
                    os.sched_setaffinity(t.thread_id, t.cpus or ())
                    continue
                policy = POLICIES[t.scheduler or ""]
                low, high = os.sched_get_priority_min(policy), os.sched_get_priority_max(policy)
                if not low <= t.priority <= high:
                    problems.append(f"{where}scheduler priority {t.priority} is out of range "
                                    f"[{low}, {high}]")
                    continue
                os.sched_setscheduler(t.thread_id, policy, os.sched_param(t.priority))
            except OSError as exc:
                if exc.errno == errno.ESRCH and t.role == EMULATOR:
                    break  # ended meanwhile: nothing left to tune
                problems.append(f"{where}cannot {verb} {t.role} (thread {t.thread_id}): "
                                f"{exc.strerror}")
    return problems
