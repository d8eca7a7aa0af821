"""Facts about this host that a definition may depend on: its NUMA nodes and its
hugetlbfs mounts (libvirt reads the same from /sys and /proc).

Each is read once per process; tests replace them with :func:`override`.
"""

from __future__ import annotations

import functools
import os

from qemuwrap.conf.cpuset import CPUSet, parse_cpuset
from qemuwrap.record import Record


class HugeTLBFS(Record):
    """One hugetlbfs mount and the page size it serves."""

    path: str
    page_kib: int


class HostFacts(Record):
    numa_nodes: CPUSet
    hugetlbfs: list[HugeTLBFS]
    default_hugepage_kib: int | None
    page_kib: int


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _numa_nodes() -> CPUSet:
    online = _read("/sys/devices/system/node/online")
    if online and online.strip():
        try:
            return parse_cpuset(online.strip())
        except ValueError:
            pass
    return CPUSet({0})  # a kernel without NUMA: everything is node 0


def _default_hugepage_kib() -> int | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("Hugepagesize:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1])
    return None


def _hugetlbfs(default_kib: int | None) -> list[HugeTLBFS]:
    out = []
    for line in (_read("/proc/mounts") or "").splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[2] != "hugetlbfs":
            continue
        page = default_kib
        for opt in fields[3].split(","):
            if opt.startswith("pagesize="):
                page = _size_kib(opt[len("pagesize="):])
        if page:
            path = fields[1].replace("\\040", " ")
            out.append(HugeTLBFS(path, page))
    return out


def _size_kib(text: str) -> int | None:
    units = {"K": 1, "M": 1024, "G": 1024 * 1024}
    num, unit = text[:-1], text[-1:].upper()
    if unit in units and num.isdigit():
        return int(num) * units[unit]
    return int(text) // 1024 if text.isdigit() else None


@functools.cache
def _probe() -> HostFacts:
    default = _default_hugepage_kib()
    return HostFacts(_numa_nodes(), _hugetlbfs(default), default,
                     os.sysconf("SC_PAGE_SIZE") // 1024)


_override: HostFacts | None = None


def facts() -> HostFacts:
    """This host's facts (or the ones a test set with :func:`override`)."""
    return _override if _override is not None else _probe()


def override(value: HostFacts | None) -> None:
    """Use ``value`` instead of the real host (None: the real host again)."""
    global _override
    _override = value


def hugetlbfs_for(page_kib: int) -> HugeTLBFS | None:
    """The mount serving pages of ``page_kib``, if any (libvirt's hugetlbfs list)."""
    return next((m for m in facts().hugetlbfs if m.page_kib == page_kib), None)
