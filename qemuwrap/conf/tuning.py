"""Host-side tuning: ``<vcpu>``/``<vcpus>``, ``<iothreads>``/``<iothreadids>``/
``<defaultiothread>``, ``<cputune>`` (pinning, scheduling, CFS quotas),
``<blkiotune>`` and ``<resource>``.

Pinning and scheduler policies are applied to QEMU's threads after start
(``qemuwrap/qemu/tuning.py``); the cgroup settings (shares, periods, quotas, block
I/O weights, a resource partition) are kept and written back but not enforced:
qemuwrap runs no cgroup manager.
"""

from __future__ import annotations

from qemuwrap.conf.cpuset import CPUSET, CPUSet
from qemuwrap.conf.numa import Placement
from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import (
    YES_NO,
    Element,
    Int,
    ParseContext,
    Path,
    Str,
    attr,
    child,
    children,
    text,
    text_child,
)

UINT = Int(0, 2**32 - 1)
#: libvirt's limits (cpuperiod, cpuquota in domaincommon.rng).
PERIOD = Int(1000, 1000000)
QUOTA = Int(-1, 17592186044415)


class Scheduler(ValueSet):
    BATCH = "batch"
    IDLE = "idle"
    FIFO = "fifo"
    RR = "rr"


class CacheType(ValueSet):
    BOTH = "both"
    CODE = "code"
    DATA = "data"


# --------------------------------------------------------------------------- vCPUs
class Vcpu(Element):
    """``<vcpu placement cpuset current>N</vcpu>``."""

    TAG = "vcpu"
    placement: Placement = attr(Placement, default=Placement.STATIC)
    cpuset: CPUSet | None = attr(CPUSET)
    current: int | None = attr(Int(1, 65535))
    count: int = text(Int(1, 65535), required=True)

    def check(self, ctx: ParseContext) -> None:
        if self.current is not None and self.current > self.count:
            raise self.error(f"attribute 'current' {self.current} is out of range "
                             f"(1 to {self.count})")


class VcpuState(Element):
    """``<vcpus><vcpu id enabled hotpluggable order/></vcpus>``: per-vCPU state."""

    TAG = "vcpu"
    id: int = attr(Int(0, 65534), required=True)
    enabled: bool = attr(YES_NO, required=True)
    hotpluggable: bool | None = attr(YES_NO)
    order: int | None = attr(UINT)


class Vcpus(Element):
    TAG = "vcpus"
    vcpus: list[VcpuState] = children(VcpuState)


# --------------------------------------------------------------------------- iothreads
class IOThreadID(Element):
    TAG = "iothread"
    id: int = attr(Int(1, 2**32 - 1), required=True)
    thread_pool_min: int | None = attr(UINT)
    thread_pool_max: int | None = attr(UINT)

    def check(self, ctx: ParseContext) -> None:
        _check_pool(self)


class IOThreadIDs(Element):
    TAG = "iothreadids"
    iothreads: list[IOThreadID] = children(IOThreadID)

    def check(self, ctx: ParseContext) -> None:
        seen: set[int] = set()
        for t in self.iothreads:
            if t.id in seen:
                ctx.record(t.error(f"duplicate iothread id '{t.id}' found"))
            seen.add(t.id)


class DefaultIOThread(Element):
    """``<defaultiothread>``: QEMU's main loop thread pool sizes."""

    TAG = "defaultiothread"
    thread_pool_min: int | None = attr(UINT)
    thread_pool_max: int | None = attr(UINT)

    def check(self, ctx: ParseContext) -> None:
        _check_pool(self)


def _check_pool(el: IOThreadID | DefaultIOThread) -> None:
    lo, hi = el.thread_pool_min, el.thread_pool_max
    if lo is not None and hi is not None and lo > hi:
        raise el.error(f"thread_pool_min {lo} must be less than or equal to "
                       f"thread_pool_max {hi}")
    if hi == 0:
        raise el.error("thread_pool_max must be a positive integer")


# --------------------------------------------------------------------------- <cputune>
class VcpuPin(Element):
    TAG = "vcpupin"
    vcpu: int = attr(Int(0, 65535), required=True)
    cpuset: CPUSet = attr(CPUSET, required=True)


class EmulatorPin(Element):
    TAG = "emulatorpin"
    cpuset: CPUSet = attr(CPUSET, required=True)


class IOThreadPin(Element):
    TAG = "iothreadpin"
    iothread: int = attr(UINT, required=True)
    cpuset: CPUSet = attr(CPUSET, required=True)


class Sched(Element):
    """A scheduler policy (``priority`` for the real-time ones)."""

    FIELDS_LAST = True  # libvirt writes vcpus/iothreads first
    scheduler: Scheduler = attr(Scheduler, required=True)
    priority: int | None = attr(Int(0, 65535))

    def check(self, ctx: ParseContext) -> None:
        realtime = self.scheduler in (Scheduler.FIFO, Scheduler.RR)
        if realtime and self.priority is None:
            raise self.error(f"scheduler '{self.scheduler}' needs a priority")
        if not realtime and self.priority is not None:
            raise self.error(f"scheduler '{self.scheduler}' takes no priority")


class VcpuSched(Sched):
    TAG = "vcpusched"
    vcpus: CPUSet | None = attr(CPUSET)


class IOThreadSched(Sched):
    TAG = "iothreadsched"
    iothreads: CPUSet | None = attr(CPUSET)


class EmulatorSched(Sched):
    TAG = "emulatorsched"


class CacheTuneCache(Element):
    TAG = "cache"
    id: int = attr(UINT, required=True)
    level: int = attr(UINT, required=True)
    type: CacheType = attr(CacheType, required=True)
    size: int = attr(Int(0, 2**64 - 1), required=True)
    unit: str | None = attr(Str(r"[A-Za-z]+", what="unit"))


class CacheTuneMonitor(Element):
    TAG = "monitor"
    level: int | None = attr(UINT)
    vcpus: CPUSet = attr(CPUSET, required=True)


class CacheTune(Element):
    """Host cache allocation (resctrl): read, refused when built (no resctrl here)."""

    TAG = "cachetune"
    vcpus: CPUSet = attr(CPUSET, required=True)
    id: str | None = attr(Str(what="cachetune id"))
    caches: list[CacheTuneCache] = children(CacheTuneCache)
    monitors: list[CacheTuneMonitor] = children(CacheTuneMonitor)


class MemoryTuneNode(Element):
    TAG = "node"
    id: int = attr(UINT, required=True)
    bandwidth: int = attr(UINT, required=True)


class MemoryTune(Element):
    TAG = "memorytune"
    vcpus: CPUSet = attr(CPUSET, required=True)
    nodes: list[MemoryTuneNode] = children(MemoryTuneNode)
    monitors: list[CacheTuneMonitor] = children(CacheTuneMonitor)


class CPUTune(Element):
    """``<cputune>`` in libvirt's order."""

    TAG = "cputune"
    shares: int | None = text_child("shares", Int(0, 2**64 - 1))
    global_period: int | None = text_child("global_period", PERIOD)
    global_quota: int | None = text_child("global_quota", QUOTA)
    period: int | None = text_child("period", PERIOD)
    quota: int | None = text_child("quota", QUOTA)
    emulator_period: int | None = text_child("emulator_period", PERIOD)
    emulator_quota: int | None = text_child("emulator_quota", QUOTA)
    iothread_period: int | None = text_child("iothread_period", PERIOD)
    iothread_quota: int | None = text_child("iothread_quota", QUOTA)
    vcpupins: list[VcpuPin] = children(VcpuPin)
    emulatorpin: EmulatorPin | None = child(EmulatorPin)
    iothreadpins: list[IOThreadPin] = children(IOThreadPin)
    emulatorsched: EmulatorSched | None = child(EmulatorSched)
    vcpuscheds: list[VcpuSched] = children(VcpuSched)
    iothreadscheds: list[IOThreadSched] = children(IOThreadSched)
    cachetunes: list[CacheTune] = children(CacheTune)
    memorytunes: list[MemoryTune] = children(MemoryTune)

    def check(self, ctx: ParseContext) -> None:
        seen: set[int] = set()
        for pin in self.vcpupins:
            if pin.vcpu in seen:
                ctx.record(pin.error(f"duplicate vcpupin for vCPU {pin.vcpu}"))
            seen.add(pin.vcpu)
        for scheds, what in ((self.vcpuscheds, "vcpus"), (self.iothreadscheds, "iothreads")):
            covered: set[int] = set()
            for sched in scheds:
                ids = set(getattr(sched, what) or ())
                if ids & covered:
                    ctx.record(sched.error(f"'{sched.TAG}' attributes '{what}' must not "
                                           "overlap"))
                covered |= ids
        threads: set[int] = set()
        for tpin in self.iothreadpins:
            if tpin.iothread in threads:
                ctx.record(tpin.error(f"duplicate iothreadpin for iothread "
                                      f"{tpin.iothread}"))
            threads.add(tpin.iothread)

    @property
    def cgroup_settings(self) -> list[str]:
        """The settings that need a cgroup manager (not enforced by qemuwrap)."""
        names = ("shares", "global_period", "global_quota", "period", "quota",
                 "emulator_period", "emulator_quota", "iothread_period", "iothread_quota")
        return [n for n in names if getattr(self, n) is not None]


# --------------------------------------------------------------------------- <blkiotune>
class BlkioDevice(Element):
    TAG = "device"
    path: str = text_child("path", Path(), required=True)
    weight: int | None = text_child("weight", Int(100, 1000))
    read_iops_sec: int | None = text_child("read_iops_sec", UINT)
    write_iops_sec: int | None = text_child("write_iops_sec", UINT)
    read_bytes_sec: int | None = text_child("read_bytes_sec", Int(0, 2**64 - 1))
    write_bytes_sec: int | None = text_child("write_bytes_sec", Int(0, 2**64 - 1))


class Blkiotune(Element):
    """Block I/O weights and limits on host devices (cgroups): kept, not enforced."""

    TAG = "blkiotune"
    weight: int | None = text_child("weight", Int(100, 1000))
    devices: list[BlkioDevice] = children(BlkioDevice)


# --------------------------------------------------------------------------- <resource>
class FibreChannel(Element):
    TAG = "fibrechannel"
    appid: str = attr(Str(r"[ -~]{1,128}", what="application id"), required=True)


class Resource(Element):
    """``<resource><partition>``: the cgroup partition libvirt places the guest in."""

    TAG = "resource"
    partition: str | None = text_child("partition", Path())
    fibrechannel: FibreChannel | None = child(FibreChannel)


__all__ = ["Blkiotune", "CPUTune", "DefaultIOThread", "IOThreadIDs", "Resource", "Vcpu",
           "Vcpus"]
