"""libvirt's CPU and NUMA node sets (``cpuset='0-3,^2,8'``), read and written as
libvirt does (virBitmapParse / virBitmapFormat)."""

from __future__ import annotations

from qemuwrap.conf.xmlmodel import Kind, KindError, _pattern

#: libvirt's VIR_DOMAIN_CPUMASK_LEN: host CPU and node numbers stay below it.
CPUMASK_LEN = 16384
_RNG_PATTERN = r"([0-9]+(-[0-9]+)?|\^[0-9]+)(,([0-9]+(-[0-9]+)?|\^[0-9]+))*"


class CPUSet(frozenset):
    """A set of CPU (or NUMA node) numbers; ``str()`` is libvirt's spelling."""

    def ranges(self) -> list[tuple[int, int]]:
        """Runs of consecutive numbers, lowest first."""
        out: list[tuple[int, int]] = []
        for n in sorted(self):
            if out and out[-1][1] == n - 1:
                out[-1] = (out[-1][0], n)
            else:
                out.append((n, n))
        return out

    def range_strings(self) -> list[str]:
        """``["0-3", "8"]``: what QEMU's ``-numa node,cpus=`` takes, one key per run."""
        return [str(a) if a == b else f"{a}-{b}" for a, b in self.ranges()]

    def __str__(self) -> str:
        return ",".join(self.range_strings())

    def __repr__(self) -> str:
        return f"CPUSet('{self}')"


def parse_cpuset(raw: str, name: str = "value") -> CPUSet:
    """``0-3,^2,8``: ranges and single numbers, ``^N`` taking one out (libvirt's rules:
    no spaces, every number below 16384, the result not empty)."""
    include: set[int] = set()
    exclude: set[int] = set()
    what = "value" if name == "value" else f"attribute '{name}'"
    for item in raw.split(","):
        neg = item.startswith("^")
        body = item[1:] if neg else item
        lo, sep, hi = body.partition("-")
        if (not lo.isascii() or not lo.isdigit() or (sep and (neg or not hi.isascii()
                                                               or not hi.isdigit()))):
            raise KindError(f"{what} '{_short(raw)}' is not a valid CPU set "
                            "(e.g. '0-3,^2,8')")
        first, last = int(lo), int(hi) if sep else int(lo)
        if last >= CPUMASK_LEN:
            raise KindError(f"{what}: CPU {last} is out of range (0 to {CPUMASK_LEN - 1})",
                            declared=False)
        if first > last:
            raise KindError(f"{what}: range '{item}' runs backwards", declared=False)
        (exclude if neg else include).update(range(first, last + 1))
    result = CPUSet(include - exclude)
    if not result:
        raise KindError(f"{what} '{_short(raw)}' is an empty CPU set", declared=False)
    return result


class CPUSetKind(Kind[CPUSet]):
    """An attribute holding a libvirt cpuset."""

    def parse(self, raw: str, name: str) -> CPUSet:
        return parse_cpuset(raw, name)

    def format(self, value: CPUSet) -> str:
        return str(value)

    def rng(self, text: bool = False) -> str:
        return _pattern(_RNG_PATTERN, text)


def _short(raw: str, limit: int = 40) -> str:
    return raw if len(raw) <= limit else raw[:limit] + "..."


CPUSET = CPUSetKind()
