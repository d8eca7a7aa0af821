"""HMP ``info qtree`` as a tree, and each device's place in it by topology path.

Paused at ``-S``, firmware has numbered no bus behind a bridge or root port, so
``query-pci`` sees only the root bus; ``info qtree`` shows every device. Its text
(QEMU's ``qdev-monitor.c``): a ``bus: NAME`` line, its ``type`` line, then one
``dev: TYPE, id "ID"`` block per device (properties ``name = value``, bus-specific
lines such as PCI's ``class …, addr 00:02.0, pci id 1af4:1041 (sub …)``), each level
indented by two spaces.

A device's *path* names it by where it sits, never by QEMU ids or bus names a tool
chose: ``pcie.0/02.1/00.0`` is function 0 of slot 0 behind the root port at 00:02.1;
``pcie.0/1f.2/bus2/unit=0`` the disk on the third AHCI port; ``pci.0/01.2/port=1`` a
USB device; ``pci.0/01.0/isa-serial@3f8`` the first serial port. Two tools that
build the same machine give the same paths.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

_DEV = re.compile(r'dev: (?P<type>.+), id "(?P<id>.*)"$')
_PROP = re.compile(r"(?P<name>[\w.:-]+) = (?P<value>.*)$")
_INT = re.compile(r"(-?\d+) \(.*\)$")
_PCI = re.compile(r"class (?P<cls>.+), addr (?P<bus>[0-9a-f]{2}):(?P<slot>[0-9a-f]{2})\."
                  r"(?P<fn>[0-7]), pci id (?P<ids>[0-9a-f]{4}:[0-9a-f]{4}) "
                  r"\(sub (?P<sub>[0-9a-f]{4}:[0-9a-f]{4})\)")
_USB = re.compile(r"addr \d+\.\d+, port (?P<port>[\d.]+), speed (?P<speed>[\d.]+)")
_TRAILING_NUMBER = re.compile(r"(\d+)$")


class QtreeError(ValueError):
    """The text is not ``info qtree`` output."""


@dataclass(eq=False)
class Bus:
    """A qdev bus: its QEMU name (tool-chosen except root buses), type and devices."""

    name: str
    parent: Device | None = None
    type: str = ""
    devices: list[Device] = field(default_factory=list)


@dataclass(eq=False)
class Device:
    """A device block: type, id (not compared), properties as text, other lines."""

    type: str
    id: str
    bus: Bus
    props: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    buses: list[Bus] = field(default_factory=list)
    pci_class: str | None = None
    pci_ids: str | None = None
    pci_sub: str | None = None
    usb_port: str | None = None
    usb_speed: str | None = None


def prop_value(raw: str) -> str:
    """A property's value without QEMU's decoration: ``32 (0x20)`` -> ``32``,
    ``"auto"`` -> ``auto``; anything else as printed (``true``, ``02.1``)."""
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return raw[1:-1]
    m = _INT.match(raw)
    return m.group(1) if m else raw


def parse(text: str) -> Bus:
    """Parse ``info qtree`` text into its root bus (``main-system-bus``)."""
    root: Bus | None = None
    # (indent, node) of the open buses and devices, innermost last
    stack: list[tuple[int, Bus | Device]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        line = raw.strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        owner = stack[-1][1] if stack else None
        if line.startswith("bus: "):
            bus = Bus(line[5:])
            if owner is None:
                if root is not None:
                    raise QtreeError(f"line {number}: a second root bus")
                root = bus
            elif isinstance(owner, Device):
                bus.parent = owner
                owner.buses.append(bus)
            else:
                raise QtreeError(f"line {number}: a bus directly inside bus {owner.name}")
            stack.append((indent, bus))
        elif isinstance(owner, Bus):
            m = _DEV.match(line)
            if m:
                dev = Device(m["type"], m["id"], owner)
                owner.devices.append(dev)
                stack.append((indent, dev))
            elif line.startswith("type "):
                owner.type = line[5:]
            else:
                raise QtreeError(f"line {number}: unexpected line in bus {owner.name}: {line}")
        elif isinstance(owner, Device):
            _device_line(owner, line)
        else:
            raise QtreeError(f"line {number}: text before the first bus: {line}")
    if root is None:
        raise QtreeError("no bus in the text")
    return root


def _device_line(dev: Device, line: str) -> None:
    prop = _PROP.match(line)
    if prop:
        dev.props[prop["name"]] = prop_value(prop["value"])
        return
    pci = _PCI.match(line)
    if pci:
        dev.pci_class, dev.pci_ids, dev.pci_sub = pci["cls"], pci["ids"], pci["sub"]
        return
    usb = _USB.match(line)
    if usb:
        dev.usb_port, dev.usb_speed = usb["port"], usb["speed"]
    dev.lines.append(line)


def walk(bus: Bus) -> Iterator[Device]:
    """Every device below ``bus``, parents before children."""
    for dev in bus.devices:
        yield dev
        for child in dev.buses:
            yield from walk(child)


def locate(root: Bus) -> dict[str, Device]:
    """Every device by its topology path (see the module docstring)."""
    out: dict[str, Device] = {}
    _locate_bus(root, "", out)
    return out


def bus_path(bus: Bus, parent_path: str) -> str:
    """A bus is named by its parent device; a host bridge's bus (``pci.0``, ``pcie.0``)
    and the root bus by QEMU's own fixed name."""
    parent = bus.parent
    if parent is None:
        return ""
    if parent.bus.parent is None:  # a device on main-system-bus: a host bridge
        return bus.name
    if len(parent.buses) == 1:
        return parent_path
    ranked = sorted(parent.buses, key=_bus_number)
    return f"{parent_path}/bus{ranked.index(bus)}"


def _bus_number(bus: Bus) -> tuple[int, str]:
    m = _TRAILING_NUMBER.search(bus.name)
    return (int(m.group(1)) if m else -1, bus.name)


def _locate_bus(bus: Bus, path: str, out: dict[str, Device]) -> None:
    for key, dev in _keys(bus):
        dev_path = f"{path}/{key}" if path else key
        if dev_path in out:  # two devices claim one place: keep both visible
            dev_path = f"{dev_path}#{sum(p.startswith(dev_path) for p in out)}"
        out[dev_path] = dev
        for child in dev.buses:
            _locate_bus(child, bus_path(child, dev_path), out)


def _keys(bus: Bus) -> list[tuple[str, Device]]:
    """Each device's key on its bus: its address where the bus has addresses, else its
    type, numbered among same-type siblings in an order of their contents."""
    keyed: list[tuple[str, Device]] = []
    unaddressed: dict[str, list[Device]] = {}
    for dev in bus.devices:
        key = device_key(bus.type, dev)
        if key is None:
            unaddressed.setdefault(_type_key(bus.type, dev), []).append(dev)
        else:
            keyed.append((key, dev))
    for base, devs in unaddressed.items():
        if len(devs) == 1:
            keyed.append((base, devs[0]))
            continue
        devs.sort(key=lambda d: sorted(d.props.items()))
        keyed.extend((f"{base}#{i}", d) for i, d in enumerate(devs))
    return keyed


#: Buses whose devices are addressed by one property: bus type -> (property, label).
ADDRESS_PROP = {"IDE": ("unit", "unit"), "floppy-bus": ("unit", "unit"),
                "virtio-serial-bus": ("nr", "nr"), "HDA": ("cad", "cad"),
                "i2c-bus": ("address", "i2c"), "ccid-bus": ("slot", "slot")}


def device_key(bus_type: str, dev: Device) -> str | None:
    """The address of ``dev`` on a bus of ``bus_type``; None where the bus has none."""
    p = dev.props
    if bus_type in ("PCI", "PCIE"):
        return p.get("addr")
    if bus_type == "usb-bus":
        return f"port={dev.usb_port}" if dev.usb_port else None
    if bus_type == "SCSI" and "scsi-id" in p:
        return f"scsi={p.get('channel', '0')}:{p['scsi-id']}:{p.get('lun', '0')}"
    prop, label = ADDRESS_PROP.get(bus_type, ("", ""))
    return f"{label}={p[prop]}" if prop in p else None


def _type_key(bus_type: str, dev: Device) -> str:
    if bus_type == "ISA" and "iobase" in dev.props and dev.props["iobase"] not in ("-1", ""):
        return f"{dev.type}@{int(dev.props['iobase']):x}"
    if bus_type == "virtio-pci-bus":
        return "virtio"
    return dev.type
