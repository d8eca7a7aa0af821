"""Two machines' facts (``facts``) compared: every difference, in words.

Each difference has a category (PCI, USB, block, CPU …), the place or subject it is
about, and a text without that place, so the same kind of difference in many
definitions groups together ("PCI: piix3-usb-uhci 8086:7020 only in libvirt").
A device missing on one side is reported once, not with everything behind it; a
device both sides have at different places is reported as placed differently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: Facts compared within a tolerance rather than exactly (two readings seconds apart).
TOLERANCE = {"clock: RTC ahead of UTC (s)": 120}
ABSENT = "absent"


@dataclass(frozen=True)
class Difference:
    category: str
    where: str
    text: str  # without the place: the grouping key within the category

    @property
    def group(self) -> str:
        return f"{self.category}: {self.text}"

    def line(self) -> str:
        return f"{self.category}: {self.where}: {self.text}" if self.where else self.group

    def to_json(self) -> dict[str, str]:
        return {"category": self.category, "where": self.where, "text": self.text}


def show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def _equal(key: str, a: Any, b: Any) -> bool:
    if key in TOLERANCE and isinstance(a, int | float) and isinstance(b, int | float):
        return abs(a - b) <= TOLERANCE[key]
    return bool(a == b)


def compare(libvirt: dict[str, Any], qemuwrap: dict[str, Any]) -> list[Difference]:
    """Every difference between libvirt's machine and qemuwrap's."""
    return [*_scalars(libvirt["scalars"], qemuwrap["scalars"]),
            *_devices(libvirt["devices"], qemuwrap["devices"])]


def _scalars(lv: dict[str, Any], qw: dict[str, Any]) -> list[Difference]:
    out = []
    cpu_model_differs = lv.get("CPU: model") != qw.get("CPU: model")
    skipped = 0
    for key in sorted(lv.keys() | qw.keys()):
        a, b = lv.get(key, ABSENT), qw.get(key, ABSENT)
        if _equal(key, a, b):
            continue
        cat, _, subject = key.partition(": ")
        if cpu_model_differs and subject.startswith("property "):
            skipped += 1  # a different model differs in most properties: say it once
            continue
        if isinstance(a, dict) and isinstance(b, dict) and cat in ("block", "NIC",
                                                                   "chardev"):
            for field in sorted(a.keys() | b.keys()):
                if a.get(field) != b.get(field):
                    out.append(Difference(cat, subject, f"{field} {show(a.get(field))} "
                                          f"(libvirt) vs {show(b.get(field))} (qemuwrap)"))
            continue
        out.append(Difference(cat, "", f"{subject}: {show(a)} (libvirt) vs {show(b)} "
                                       "(qemuwrap)"))
    if skipped:
        out.append(Difference("CPU", "", f"{skipped} properties differ with the model"))
    return out


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _topmost(paths: set[str]) -> list[str]:
    """Paths none of whose ancestors is in ``paths``."""
    return sorted(p for p in paths if not any(a in paths for a in _ancestors(p)))


def _devices(lv: dict[str, Any], qw: dict[str, Any]) -> list[Difference]:
    """Devices by path. A device with another type at the same path, or at a path the
    other side lacks, is *unmatched*; of the unmatched only the topmost are reported
    (with how many are behind them). An unmatched device the other side has elsewhere
    (same type and ids) is reported as placed differently."""
    out = []
    common = lv.keys() & qw.keys()
    retyped = {p for p in common if lv[p]["what"] != qw[p]["what"]}
    for path in sorted(common - retyped):
        a, b = lv[path], qw[path]
        dev_type = a["what"].split(" ", 1)[0]
        for prop in sorted(a["props"].keys() | b["props"].keys()):
            pa, pb = a["props"].get(prop, ABSENT), b["props"].get(prop, ABSENT)
            if pa != pb:
                out.append(Difference(a["category"], path,
                                      f"{dev_type}.{prop} = {pa} (libvirt) vs {pb} "
                                      "(qemuwrap)"))
    unmatched = {"libvirt": (lv.keys() - qw.keys()) | retyped,
                 "qemuwrap": (qw.keys() - lv.keys()) | retyped}
    devices = {"libvirt": lv, "qemuwrap": qw}
    tops = {side: _topmost(paths) for side, paths in unmatched.items()}
    paired: dict[str, set[str]] = {"libvirt": set(), "qemuwrap": set()}
    for side, other in (("libvirt", "qemuwrap"), ("qemuwrap", "libvirt")):
        for path in tops[side]:
            if path in paired[side]:
                continue
            what = devices[side][path]["what"]
            candidates = [p for p in unmatched[other] if p not in paired[other]
                          and p != path and devices[other][p]["what"] == what]
            if not candidates:
                continue
            match = min(candidates, key=lambda p: (p not in tops[other], p))
            paired[side].add(path)
            paired[other].add(match)
            lv_path, qw_path = (path, match) if side == "libvirt" else (match, path)
            out.append(Difference(devices[side][path]["category"], f"{lv_path} vs {qw_path}",
                                  f"{what} placed differently (libvirt vs qemuwrap)"))
    for side in ("libvirt", "qemuwrap"):
        for path in tops[side]:
            if path in paired[side]:
                continue
            if path in retyped and side == "qemuwrap" and path not in paired["libvirt"]:
                continue  # reported once, as libvirt's type vs qemuwrap's
            behind = sum(1 for p in unmatched[side] if p.startswith(path + "/"))
            where = f"{path} (and {behind} behind it)" if behind else path
            dev = devices[side][path]
            if path in retyped and side == "libvirt" and path not in paired["qemuwrap"]:
                text = f"{dev['what']} (libvirt) vs {qw[path]['what']} (qemuwrap)"
            else:
                text = f"{dev['what']} only in {side}"
            out.append(Difference(dev["category"], where, text))
    return out
