"""What of a harness run is not qemuwrap's doing, said with its evidence.

The raw figures mix qemuwrap's own refusals and differences with things that come
from this host or from the oracle. Each is classified here, never hidden (the report
prints the raw figures first):

- **Refused for this host only**: qemuwrap refuses, but translates the same copy
  with ``dry-run --no-host-check`` (a host device, file, module or network that is
  absent here). The harness reruns the translation to find out.
- **libvirt's own argv does not start here**: libvirt's command for the definition,
  made bootable exactly as for a comparison, is refused by this QEMU too (the
  harness boots it alone when qemuwrap refuses; when both translate it is booted
  anyway).
- **Boot failures** by side: both failed (this environment or this QEMU), only
  qemuwrap's, only libvirt's.
- **Oracle artifacts** among differences. ``virsh domxml-to-native`` is not what
  libvirtd runs: it rewrites every ``<interface>`` as an ethernet tap and drops the
  NIC's ``<address>``, ``<driver>`` options, ``<rom>``, ``<acpi index>`` and virtio
  options; libvirtd also adds some things only after QEMU started (transient disks
  with ``shareBacking``, hotpluggable vCPUs). Where the corpus has libvirt's own
  expected command line (``NAME.x86_64-latest.args``, libvirt's test suite, QEMU
  7.2), it decides:

  - NIC differences are ``artifact`` when every NIC ``-device`` of that file equals
    qemuwrap's (ids, fds and netdev names aside), ``qemuwrap`` when they differ, and
    ``unverified`` (still counted as different) when there is no such file.
  - A disk only qemuwrap's machine has is an ``artifact`` when the definition has
    ``<transient shareBacking='yes'/>`` disks, and libvirt's expected command line
    has the same disk devices as ``domxml-to-native`` (so libvirt starts QEMU
    without them and adds them after start), exactly that many fewer than
    qemuwrap's.
  - Fewer vCPUs online in libvirt's machine when ``<vcpu current>`` is below the
    maximum: ``artifact`` when the expected command line has the same ``-smp`` as
    ``domxml-to-native`` and no vCPU devices; ``unverified`` without that file.

  Anything else is ``qemuwrap``'s. A NIC is matched by what its ``-device`` says,
  not by where its bus sits: two commands with equal NIC options but different
  controllers behind the same bus name would pass (the controllers' own
  differences stay qemuwrap's).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from qemuwrap.testing.bootargv import ArgvError, option_props, parse_virsh

QEMUWRAP = "qemuwrap"
ARTIFACT = "artifact"
UNVERIFIED = "unverified"

NIC_REWRITE = "domxml-to-native rewrites NICs"
NIC_VERIFIED = NIC_REWRITE + "; libvirt's expected argv agrees with qemuwrap"
DISK_AFTER_START = ("libvirt adds transient shareBacking disks after start; its "
                    "expected argv has no device for them either")
VCPU_AFTER_START = "libvirt hotplugs vCPUs beyond -smp after start"
VCPU_VERIFIED = VCPU_AFTER_START + "; its expected argv has the same -smp"

#: NIC properties that name things of one tool's making, not the guest's hardware.
TOOL_NAMES = frozenset({"id", "netdev", "fd", "fds", "vhostfd", "vhostfds"})
_TRUE = frozenset({"on", "true", "yes"})
_FALSE = frozenset({"off", "false", "no"})
_ONLINE = re.compile(r"^online: (\d+) \(libvirt\) vs (\d+) \(qemuwrap\)$")


def expected_args_path(src: Path) -> Path:
    return src.with_name(f"{src.stem}.x86_64-latest.args")


def expected_argv(src: Path) -> list[str] | None:
    """libvirt's expected command line for ``src`` from its own test suite, if the
    corpus has one beside it."""
    path = expected_args_path(src)
    try:
        return parse_virsh(path.read_text()).argv
    except (OSError, ArgvError):
        return None


def _value(value: object) -> str:
    """An option value as text that is the same in JSON and key=value form."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    text = str(value)
    if text in _TRUE:
        return "on"
    if text in _FALSE:
        return "off"
    return text


def devices(argv: list[str]) -> list[dict[str, str]]:
    """Every ``-device`` of a command, its properties as text (``driver`` included)."""
    out = []
    for opt, value in zip(argv, argv[1:], strict=False):
        if opt != "-device":
            continue
        props = option_props(value)
        if "" in props:
            props["driver"] = props.pop("")
        out.append({k: _value(v) for k, v in props.items()})
    return out


def nic_devices(argv: list[str]) -> list[dict[str, str]]:
    """The NIC devices (those with a ``netdev``), without tool-made names, in a
    stable order (by MAC, then options)."""
    nics = [{k: v for k, v in d.items() if k not in TOOL_NAMES}
            for d in devices(argv) if "netdev" in d]
    return sorted(nics, key=lambda d: (d.get("mac", ""), json.dumps(d, sort_keys=True)))


def nic_types(*argvs: list[str]) -> set[str]:
    """Device types a NIC appears as in the machine: its drivers, and the inner
    ``virtio-net-device`` of a virtio-net proxy."""
    types = {d["driver"] for argv in argvs for d in devices(argv) if "netdev" in d}
    if any(t.startswith("virtio-net") for t in types):
        types.add("virtio-net-device")
    return types


def device_type(diff: dict[str, str]) -> str:
    """The device type a difference is about (``virtio-net-pci.rss = …``, ``e1000
    8086:100e placed differently``, ``pcie-root-port 1b36:000c only in libvirt``)."""
    return re.split(r"[ .]", diff["text"], maxsplit=1)[0]


def is_nic_difference(diff: dict[str, str], types: set[str]) -> bool:
    return diff["category"] == "NIC" or device_type(diff) in types


def _disk_drivers(argv: list[str]) -> Counter[str]:
    return Counter(d["driver"] for d in devices(argv) if "drive" in d)


def disks_added_after_start(expected: list[str] | None, libvirt: list[str],
                            qemuwrap: list[str], shared_transient: int) -> set[str]:
    """Device types of the disks libvirt adds after start, when verified (else
    empty): see the module docstring."""
    if expected is None or shared_transient == 0:
        return set()
    exp = _disk_drivers(expected)
    if exp != _disk_drivers(libvirt):
        return set()
    extra = _disk_drivers(qemuwrap) - exp
    if sum(extra.values()) != shared_transient or exp - _disk_drivers(qemuwrap):
        return set()
    return set(extra)


def _added_disk_at(diff: dict[str, str], types: set[str]) -> str | None:
    """Where qemuwrap's machine has a disk of ``types`` that libvirt's lacks, when
    ``diff`` says only that (a block device absent in libvirt's machine)."""
    _, sep, qw = diff["text"].partition(": absent (libvirt) vs ")
    if diff["category"] != "block" or not sep or not qw.endswith(" (qemuwrap)"):
        return None
    try:
        device = json.loads(qw.removesuffix(" (qemuwrap)"))
    except ValueError:
        return None
    if not isinstance(device, dict) or device.get("type") not in types:
        return None
    return str(device.get("at"))


def _is_added_disk(diff: dict[str, str], types: set[str], places: set[str]) -> bool:
    """A difference that only says qemuwrap's machine has such a disk: the block
    device, its boot index, its PCI function."""
    if diff["category"] == "block":
        return _added_disk_at(diff, types) is not None
    if diff["category"] == "boot":
        where, sep, _ = diff["text"].removeprefix("bootindex at ").partition(
            ": absent (libvirt) vs ")
        return bool(sep) and where in places
    return device_type(diff) in types and diff["text"].endswith("only in qemuwrap") \
        and diff["where"].split(" ", 1)[0] in places


def _smp(argv: list[str]) -> str | None:
    return next((v for o, v in zip(argv, argv[1:], strict=False) if o == "-smp"), None)


def vcpu_class(diff: dict[str, str], expected: list[str] | None, libvirt: list[str],
               vcpus: tuple[int, int] | None) -> str | None:
    """The class of a difference in online vCPUs when ``<vcpu current>`` is below the
    maximum and libvirt's machine has exactly ``-smp``'s CPUs, else None."""
    match = _ONLINE.match(diff["text"]) if diff["category"] == "CPU" else None
    smp = _smp(libvirt)
    if match is None or vcpus is None or smp is None:
        return None
    current, maximum = vcpus
    lv_online, qw_online = int(match[1]), int(match[2])
    if not (current < maximum and qw_online == current
            and smp.split(",")[0] == str(lv_online)):
        return None
    if expected is None:
        return f"{UNVERIFIED}: {VCPU_AFTER_START}"
    if _smp(expected) == smp and not any(d["driver"].endswith("-x86_64-cpu")
                                         for d in devices(expected)):
        return f"{ARTIFACT}: {VCPU_VERIFIED}"
    return None


def classify_differences(diffs: list[dict[str, str]], *, expected: list[str] | None,
                         libvirt: list[str], qemuwrap: list[str], shared_transient: int = 0,
                         vcpus: tuple[int, int] | None = None) -> list[str]:
    """The class of each difference: ``qemuwrap``, ``artifact: WHY`` or
    ``unverified: WHY``. ``libvirt``/``qemuwrap``: the two translations (before the
    boot rewrite), ``expected``: libvirt's expected argv or None."""
    types = nic_types(libvirt, qemuwrap)
    if expected is None:
        nic_class = f"{UNVERIFIED}: {NIC_REWRITE}"
    elif nic_devices(expected) == nic_devices(qemuwrap):
        nic_class = f"{ARTIFACT}: {NIC_VERIFIED}"
    else:
        nic_class = QEMUWRAP
    added = disks_added_after_start(expected, libvirt, qemuwrap, shared_transient)
    places = {p for p in (_added_disk_at(d, added) for d in diffs) if p}
    out = []
    for diff in diffs:
        if is_nic_difference(diff, types):
            out.append(nic_class)
        elif places and _is_added_disk(diff, added, places):
            out.append(f"{ARTIFACT}: {DISK_AFTER_START}")
        else:
            out.append(vcpu_class(diff, expected, libvirt, vcpus) or QEMUWRAP)
    return out


def verdict(classes: list[str]) -> str:
    """A definition's differences as a whole: ``qemuwrap`` if any is qemuwrap's, else
    ``unverified`` if any is unverified, else ``artifact`` (none: ``alike``)."""
    if not classes:
        return "alike"
    kinds = {c.split(":", 1)[0] for c in classes}
    for kind in (QEMUWRAP, UNVERIFIED, ARTIFACT):
        if kind in kinds:
            return kind
    raise ValueError(f"unknown classes {classes}")


def boot_failure(result: dict[str, Any]) -> str | None:
    """Which side(s) of a boot-failed definition failed: ``both``, ``qemuwrap``,
    ``libvirt`` (None when not boot-failed)."""
    if result.get("outcome") != "boot-failed":
        return None
    failed = [side for side in ("libvirt", "qemuwrap")
              if not (result["boot"].get(side) or {}).get("ok")]
    return "both" if len(failed) == 2 else failed[0] if failed else None


def libvirt_starts(result: dict[str, Any]) -> bool | None:
    """Whether libvirt's own argv started here (None: it was not booted)."""
    boot = result.get("boot", {}).get("libvirt")
    return None if not boot else bool(boot.get("ok"))


def host_only(result: dict[str, Any]) -> bool:
    """qemuwrap refused, but translated with ``--no-host-check``."""
    rerun = result.get("qemuwrap_no_host_check")
    return bool(result.get("qemuwrap") and not result["qemuwrap"]["ok"] and rerun
                and rerun.get("ok"))
