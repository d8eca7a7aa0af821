"""A QEMU's raw report (``collect``) as facts two tools can be compared on.

What legitimately differs between libvirt and qemuwrap is normalised away: QEMU ids,
bus names a tool chose, node names and backend names (``drive``, ``chardev``,
``netdev`` … properties), socket paths, and values a tool generates at random when
the XML does not give them (uuid, ``<genid/>``, MAC addresses), which become
``(generated)`` when well-formed. Everything else is kept.

Facts are plain data: ``scalars`` maps ``"category: subject"`` to a value;
``devices`` maps a topology path (``qtree``) to the device's category, what it is
(type, PCI vendor:device) and its properties.
"""

from __future__ import annotations

import calendar
import json
import re
from dataclasses import dataclass, field
from typing import Any

from qemuwrap.testing import qtree

GENERATED = "(generated)"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_MAC = re.compile(r"^52:54:00(:[0-9a-f]{2}){3}$")

#: Properties that name a backend or an object (legitimately tool-chosen), not hardware.
IGNORED_PROPS = frozenset({"drive", "chardev", "netdev", "audiodev", "memdev", "iothread",
                           "rng", "tpmdev", "fsdev", "vhostfd", "host"})
#: Machine properties that are not about the hardware or are read elsewhere.
IGNORED_MACHINE = frozenset({"rtc-time", "type", "memory-backend"})
#: ``auto`` of the machine's OnOffAuto properties as QEMU 7.2 resolves it for an x86
#: pc/q35 guest under TCG (hw/i386/x86.c, pc.c): an explicit ``on`` is the same machine.
MACHINE_AUTO = {"acpi": "on", "smm": "on", "vmport": "on", "pit": "on", "pic": "on"}
#: The bus a device sits on decides its category.
BUS_CATEGORY = {
    "PCI": "PCI", "PCIE": "PCI", "virtio-pci-bus": "PCI", "usb-bus": "USB",
    "ccid-bus": "USB", "ISA": "ISA", "System": "system", "i2c-bus": "system",
    "IDE": "block", "SCSI": "block", "floppy-bus": "block",
    "virtio-serial-bus": "chardev", "HDA": "audio",
}
#: Frontend types that are block devices even without a ``drive`` (empty cdroms).
BLOCK_TYPES = re.compile(r"^(ide-(hd|cd|drive)|scsi-(hd|cd|block|generic|disk)|floppy|"
                         r"virtio-blk-device|usb-storage|nvme|nvme-ns|usb-bot)$")


@dataclass
class Context:
    """What the definition says about values a tool may generate."""

    macs: set[str] = field(default_factory=set)
    has_uuid: bool = True
    genid: str | None = None  # None: no <genid>; "": <genid/>; else the GUID
    scratch: str = ""  # placeholder paths are shown relative to it


def category(dev: qtree.Device) -> str:
    return BUS_CATEGORY.get(dev.bus.type, dev.bus.type or "other")


def describe(dev: qtree.Device) -> str:
    """What a device is, as a person would name it: type and PCI ids or USB speed."""
    what = dev.type
    if dev.pci_ids:
        what += f" {dev.pci_ids}"
    if dev.usb_speed:
        what += f" (USB speed {dev.usb_speed})"
    return what


def frontend(dev: qtree.Device) -> qtree.Device:
    """The device a guest sees: a virtio-pci proxy rather than its virtio child."""
    parent = dev.bus.parent
    if dev.bus.type == "virtio-pci-bus" and parent is not None:
        return parent
    return dev


def normalise(raw: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Facts from one QEMU's raw report."""
    located = qtree.locate(qtree.parse(raw.get("qtree", "")))
    where = {id(dev): path for path, dev in located.items()}
    scalars: dict[str, Any] = {}
    _identity(raw, ctx, scalars)
    _machine(raw, scalars)
    _cpu(raw, scalars)
    _memory(raw, scalars)
    _block(raw, ctx, located, where, scalars)
    peripheral = raw.get("peripheral") or {}
    _chardevs(raw, peripheral, located, where, scalars)
    _nics(ctx, located, where, scalars)
    _boot(peripheral, located, where, scalars)
    scalars["display: vnc"] = bool((raw.get("vnc") or {}).get("enabled"))
    scalars["display: spice"] = bool((raw.get("spice") or {}).get("enabled"))
    for n, tpm in enumerate(raw.get("tpm") or []):
        scalars[f"TPM: tpm{n}"] = {"model": tpm.get("model"),
                                   "type": (tpm.get("options") or {}).get("type")}
    devices = {
        path: {"category": category(dev), "what": describe(dev),
               "props": {k: v for k, v in dev.props.items() if k not in IGNORED_PROPS}}
        for path, dev in located.items()
    }
    return {"scalars": scalars, "devices": devices}


def _identity(raw: dict[str, Any], ctx: Context, out: dict[str, Any]) -> None:
    out["identity: name"] = raw.get("name")
    uuid = raw.get("uuid")
    out["identity: uuid"] = GENERATED if not ctx.has_uuid and _UUID.match(uuid or "") \
        else uuid
    genid = raw.get("genid")
    if ctx.genid == "" and genid and _UUID.match(genid.lower()):
        genid = GENERATED
    out["identity: genid"] = genid


def _machine(raw: dict[str, Any], out: dict[str, Any]) -> None:
    machine = raw.get("machine") or {}
    mtype = machine.get("type")
    out["machine: type"] = mtype.removesuffix("-machine") if isinstance(mtype, str) else mtype
    for name, value in machine.items():
        if name in IGNORED_MACHINE or name == "smp":
            continue
        if value == "auto" and name in MACHINE_AUTO:
            value = MACHINE_AUTO[name]
        if name == "boot":
            out["boot: order, menu, strict"] = value
        else:
            out[f"machine: {name}"] = value
    rtc = machine.get("rtc-time")
    if isinstance(rtc, dict) and raw.get("collected_at"):
        out["clock: RTC ahead of UTC (s)"] = rtc_offset(rtc, raw["collected_at"])


def rtc_offset(tm: dict[str, int], now: float) -> int:
    """Seconds the guest's RTC (QOM ``rtc-time``, a struct tm) is ahead of UTC."""
    rtc = calendar.timegm((tm["tm_year"] + 1900, tm["tm_mon"] + 1, tm["tm_mday"],
                           tm["tm_hour"], tm["tm_min"], tm["tm_sec"], 0, 0, 0))
    return round(rtc - now)


def _cpu(raw: dict[str, Any], out: dict[str, Any]) -> None:
    out["CPU: online"] = len(raw.get("cpus") or [])
    out["CPU: slots"] = len(raw.get("hotpluggable") or [])
    out["CPU: topology"] = (raw.get("machine") or {}).get("smp")
    props = dict(raw.get("cpu") or {})
    model = props.pop("type", None)
    out["CPU: model"] = re.sub(r"-(x86_64|i386)-cpu$", "", model) if model else model
    for name, value in props.items():
        out[f"CPU: property {name}"] = value


def _memory(raw: dict[str, Any], out: dict[str, Any]) -> None:
    memory = raw.get("memory") or {}
    out["memory: base"] = memory.get("base-memory")
    out["memory: plugged"] = memory.get("plugged-memory", 0)
    backends = [{k: v for k, v in m.items() if k != "id"} for m in raw.get("memdev") or []]
    out["memory: backends"] = sorted(backends, key=lambda b: sorted(b.items(), key=str))
    out["memory: NUMA"] = [line.strip() for line in (raw.get("numa") or "").splitlines()
                           if line.strip()]


def _relative(path: str, scratch: str) -> str:
    if scratch and path.startswith(scratch.rstrip("/") + "/"):
        return path[len(scratch.rstrip("/")) + 1:]
    return path


def _unfiltered(image: str, fmt: str | None) -> tuple[str, str | None]:
    """The image and format under a throttle filter or a transient disk's overlay:
    qemuwrap throttles with a ``throttle`` node in the command and lets QEMU make a
    transient disk's overlay (``snapshot=on``: a temporary file with the image as
    backing), libvirt does both over QMP once QEMU runs (absent from a dry
    translation); the guest's disk is the same."""
    while image.startswith("json:"):
        try:
            spec = json.loads(image[len("json:"):])
        except ValueError:
            break
        if fmt != "throttle":
            backing = spec.get("backing")
            leaf = backing.get("file") if isinstance(backing, dict) else None
            if isinstance(leaf, dict) and "filename" in leaf:
                return leaf["filename"], backing.get("driver", fmt)
            break
        inner = spec.get("file")
        if not isinstance(inner, dict):
            break
        fmt = inner.get("driver")
        leaf = inner.get("file")
        image = leaf.get("filename", image) if isinstance(leaf, dict) else \
            inner.get("filename", image)
    return image, fmt


def _nvram_name(image: str) -> str:
    """A UEFI variable store lives in each tool's own directory (libvirt's
    ``…/qemu/nvram/NAME_VARS.fd``, qemuwrap's ``…/nvram/NAME_VARS.fd``): compared by
    name, as both make it from the same template."""
    return "nvram/" + image.rsplit("/", 1)[-1] if "/nvram/" in image else image


def _block(raw: dict[str, Any], ctx: Context, located: dict[str, qtree.Device],
           where: dict[int, str], out: dict[str, Any]) -> None:
    """Each disk or cdrom by its image (the same placeholder for both tools), or by
    place when it has no medium: where it sits, its type, medium, format, read-only."""
    by_name: dict[str, dict[str, Any]] = {}
    by_id: dict[str, dict[str, Any]] = {}
    for entry in raw.get("block") or []:
        if entry.get("device"):
            by_name[entry["device"]] = entry
        inserted = entry.get("inserted") or {}
        if inserted.get("node-name"):
            by_name[inserted["node-name"]] = entry
        qdev = entry.get("qdev") or ""
        m = re.match(r"/machine/peripheral/([^/]+)", qdev)
        if m:
            by_id[m.group(1)] = entry
    for path, dev in located.items():
        drive = dev.props.get("drive")
        if not drive and not BLOCK_TYPES.match(dev.type):
            continue
        front = frontend(dev)
        entry = by_name.get(drive or "") or by_id.get(front.id) or {}
        inserted = entry.get("inserted") or {}
        fact = {"at": where[id(front)], "type": front.type,
                "format": inserted.get("drv"), "read-only": inserted.get("ro"),
                "removable": entry.get("removable")}
        image = inserted.get("file")
        if image:
            image, fact["format"] = _unfiltered(image, fact["format"])
            image = _nvram_name(image)
        subject = _relative(image, ctx.scratch) if image else f"empty at {path}"
        out[f"block: {subject}"] = fact


def _chardevs(raw: dict[str, Any], peripheral: dict[str, dict[str, Any]],
              located: dict[str, qtree.Device], where: dict[int, str],
              out: dict[str, Any]) -> None:
    """Each character-device frontend by place: its type, port name, and the kind of
    backend (pty, unix, file, spicevmc …; not its path)."""
    kinds = {c.get("label"): backend_kind(c.get("filename", "")) for c in
             raw.get("chardev") or []}
    for path, dev in located.items():
        label = dev.props.get("chardev") or peripheral.get(dev.id, {}).get("chardev")
        if not label:
            continue
        fact = {"type": dev.type, "backend": kinds.get(label)}
        if dev.props.get("name"):
            fact["name"] = dev.props["name"]
        out[f"chardev: {path}"] = fact


def backend_kind(filename: str) -> str:
    """``disconnected:unix:/p,server=on`` -> ``unix server``; ``pty:/dev/pts/3`` -> ``pty``."""
    text = filename.removeprefix("disconnected:")
    kind = text.split(":", 1)[0].split(",", 1)[0]
    return f"{kind} server" if ",server=on" in text else kind


def _nics(ctx: Context, located: dict[str, qtree.Device], where: dict[int, str],
          out: dict[str, Any]) -> None:
    """Each NIC by its MAC (or, for a generated MAC, by place): model and place."""
    generated = 0
    for dev in sorted((d for d in located.values() if "mac" in d.props),
                      key=lambda d: where[id(frontend(d))]):
        front = frontend(dev)
        mac = dev.props["mac"].lower()
        if mac not in ctx.macs and _MAC.match(mac):
            subject = f"{GENERATED} MAC #{generated}"
            generated += 1
        else:
            subject = mac
        out[f"NIC: {subject}"] = {"at": where[id(front)], "model": front.type}


def _boot(peripheral: dict[str, dict[str, Any]], located: dict[str, qtree.Device],
          where: dict[int, str], out: dict[str, Any]) -> None:
    by_id = {dev.id: dev for dev in located.values() if dev.id}
    for dev_id, props in peripheral.items():
        dev = by_id.get(dev_id)
        if dev is not None and "bootindex" in props:
            out[f"boot: bootindex at {where[id(dev)]}"] = props["bootindex"]
