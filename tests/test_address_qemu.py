"""The guest-visible layout, proven on a real QEMU 7.2 (TCG, paused at -S).

Address assignment writes slots into the model and the builders put them on the command
line; here QEMU itself says where each device ended up.  ``query-pci`` cannot see behind
root ports and bridges before firmware numbers the buses, so the PCI tree is read from
HMP ``info qtree``, by topology path (``pcie.0/02.1/00.0``), with the vendor:device ID
the guest sees (virtio behind a PCIe root port is modern: 1af4:1041, not 1af4:1000).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from dataclasses import dataclass, field

import pytest

from qemuwrap.conf import guid
from qemuwrap.conf.domain import load
from qemuwrap.qemu.capabilities import Capabilities
from qemuwrap.qemu.command import build_command

from conftest import DEFAULT_CAPS, QEMU, XML2ARGV, needs_qemu, qmp_at

pytestmark = needs_qemu

_DEV = re.compile(r'dev: (?P<type>[\w.-]+), id "(?P<id>[^"]*)"')
_CLASS = re.compile(r"class .*, addr (?P<addr>[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]), "
                    r"pci id (?P<pciid>[0-9a-f]{4}:[0-9a-f]{4})")
_PROP = re.compile(r"(?P<key>[\w-]+) = (?P<value>.*)")


@dataclass
class QDev:
    """A device in QEMU's tree: its type, id, properties, the bus it sits on (with the
    path of that bus from the root) and, for PCI devices, slot.function and IDs."""

    type: str
    id: str
    bus: str
    path: str = ""
    props: dict[str, str] = field(default_factory=dict)
    pci_addr: str | None = None
    pci_id: str | None = None


def parse_qtree(text: str) -> dict[str, QDev]:
    """``info qtree`` as devices by id (``type#n`` for devices without one); each PCI
    device's ``path`` is its place from the root bus: ``pcie.0/02.0/00.0``."""
    devices: dict[str, QDev] = {}
    # (indent, kind, object): the open buses and devices above the current line
    stack: list[tuple[int, str, object]] = []
    counts: dict[str, int] = {}
    for line in text.splitlines():
        indent = len(line) - len(line.lstrip())
        body = line.strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if body.startswith("bus: "):
            stack.append((indent, "bus", body[5:]))
            continue
        match = _DEV.match(body)
        if match:
            bus = next((str(o) for _i, k, o in reversed(stack) if k == "bus"), "")
            parent = next((o for _i, k, o in reversed(stack) if k == "dev"), None)
            dev = QDev(match["type"], match["id"], bus)
            dev.path = parent.path if isinstance(parent, QDev) else ""
            key = dev.id or f"{dev.type}#{counts.get(dev.type, 0)}"
            counts[dev.type] = counts.get(dev.type, 0) + 1
            devices[key] = dev
            stack.append((indent, "dev", dev))
            continue
        current = next((o for _i, k, o in reversed(stack) if k == "dev"), None)
        if not isinstance(current, QDev):
            continue
        match = _CLASS.match(body)
        if match:
            current.pci_addr = match["addr"][3:]
            current.pci_id = match["pciid"]
            parent_path = current.path or current.bus
            current.path = f"{parent_path}/{current.pci_addr}"
            continue
        match = _PROP.match(body)
        if match:
            value = match["value"]
            number = re.fullmatch(r"(\d+) \(0x[0-9a-f]+\)", value)  # "8 (0x8)"
            current.props[match["key"]] = number[1] if number else value.strip('"')
    return devices


async def _hmp(sock: str, command: str) -> str:
    async with qmp_at(sock, "layout") as qmp:
        return str(await qmp.execute("human-monitor-command", {"command-line": command}))


def qtree(name: str, tmp_path) -> dict[str, QDev]:
    """Start golden case ``name`` (without its disks' images: placeholders are made)
    paused, and read QEMU's device tree."""
    _data, dom = load(str(XML2ARGV / f"{name}.xml"), random=guid.counting_random)
    for i, disk in enumerate(dom.devices.disks):
        if disk.source is not None:
            image = tmp_path / f"disk{i}.img"
            subprocess.run(["qemu-img", "create", "-q", "-f", disk.driver_type or "raw",
                            str(image), "1M"], check=True)
            disk.source = str(image)
    dom.devices.emulator = QEMU
    state = tmp_path / "state"
    state.mkdir()
    cmd = build_command(dom, Capabilities.from_file(DEFAULT_CAPS), state)
    proc = subprocess.Popen(cmd.argv, env=cmd.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        text = asyncio.run(_hmp(str(state / "qmp.sock"), "info qtree"))
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read().decode(errors="replace")
    return parse_qtree(text)


def test_q35_puts_each_pcie_device_behind_its_own_root_port(tmp_path):
    """libvirt's q35 layout: VGA at 00:01.0, root ports 00:02.0-02.4 in one
    multifunction slot (chassis 1-5, port 0x10-0x14), one device per port, modern virtio
    IDs because they sit on PCIe."""
    devs = qtree("q35-root-ports", tmp_path)
    assert devs["video0"].path == "pcie.0/01.0"
    for n in range(1, 6):
        port = devs[f"pci.{n}"]
        assert (port.type, port.path) == ("pcie-root-port", f"pcie.0/02.{n - 1}")
        assert port.props["chassis"] == str(n) and port.props["port"] == str(15 + n)
    assert devs["pci.1"].props["multifunction"] == "true"
    assert (devs["net0"].path, devs["net0"].pci_id) == ("pcie.0/02.0/00.0", "1af4:1041")
    assert (devs["usb"].path, devs["usb"].pci_id) == ("pcie.0/02.1/00.0", "1b36:000d")
    assert (devs["virtio-disk0"].path, devs["virtio-disk0"].pci_id) == \
        ("pcie.0/02.2/00.0", "1af4:1042")
    assert (devs["balloon0"].path, devs["balloon0"].pci_id) == \
        ("pcie.0/02.3/00.0", "1af4:1045")
    # the fifth root port stays empty, for hotplug (libvirt's one spare)
    assert not [d for d in devs.values() if d.bus == "pci.5"]


def test_pc_slots_in_libvirts_order(tmp_path):
    """pc: PIIX3 USB at 00:01.2, VGA at 00:02.0, then NICs, controllers, virtio disks
    by target name, balloon; virtio devices on the conventional bus are transitional."""
    devs = qtree("pc-slot-order", tmp_path)
    want = {"usb": "01.2", "video0": "02.0", "net0": "03.0", "net1": "04.0",
            "virtio-serial0": "05.0", "virtio-disk0": "06.0", "virtio-disk1": "07.0",
            "balloon0": "08.0"}
    assert {k: devs[k].path for k in want} == {k: f"pci.0/{v}" for k, v in want.items()}
    assert devs["net1"].pci_id == "1af4:1000" and devs["balloon0"].pci_id == "1af4:1002"
    assert devs["usb"].pci_id == "8086:7020"


def test_q35_conventional_cards_go_behind_a_pcie_to_pci_bridge(tmp_path):
    """e1000 and rtl8139 are conventional PCI: libvirt adds a pcie-root-port holding a
    pcie-pci-bridge, and places them on the bridge from slot 1."""
    devs = qtree("q35-pcie-to-pci-bridge", tmp_path)
    assert (devs["pci.2"].type, devs["pci.2"].path) == ("pcie-pci-bridge",
                                                         "pcie.0/01.0/00.0")
    assert devs["net0"].bus == "pci.2" and devs["net0"].pci_addr == "01.0"
    assert devs["net1"].bus == "pci.2" and devs["net1"].pci_addr == "02.0"
    assert devs["net2"].bus == "pci.3" and devs["net2"].pci_id == "1af4:1041"


def test_usb_ports_hubs_and_companions(tmp_path):
    """A usb-hub on port 2 with the tablet on its port 3; the mouse takes the hub's
    first free port, the keyboard keeps port 1."""
    devs = qtree("usb-explicit-ports", tmp_path)
    assert (devs["hub0"].bus, devs["hub0"].props["port"]) == ("usb.0", "2")
    assert devs["input0"].props["port"] == "2.3"
    assert devs["input1"].props["port"] == "2.1"
    assert devs["input2"].props["port"] == "1"


def test_ich9_usb2_family_shares_one_slot(tmp_path):
    """ich9-ehci1 at function 7 of the first free slot, its UHCI companions at 0-2 of
    the same slot (multifunction), serving the EHCI's ports 0-5."""
    devs = qtree("controller-usb-ich9-companions", tmp_path)
    assert devs["usb"].path == "pci.0/02.7"
    uhci = {d.type: d for d in devs.values() if d.type.startswith("ich9-usb-uhci")}
    assert {t: d.path for t, d in uhci.items()} == {
        "ich9-usb-uhci1": "pci.0/02.0", "ich9-usb-uhci2": "pci.0/02.1",
        "ich9-usb-uhci3": "pci.0/02.2"}
    assert {d.props["firstport"] for d in uhci.values()} == {"0", "2", "4"}
    assert uhci["ich9-usb-uhci1"].props["multifunction"] == "true"


@pytest.mark.parametrize("name", ["q35-pcie-switch", "pci-expander-bus",
                                  "q35-dmi-to-pci-bridge", "pc-pci-bridge-autoadd"])
def test_bridges_and_switches_carry_their_devices(name, tmp_path):
    """Every device QEMU reports sits on the bus the model placed it on."""
    _data, dom = load(str(XML2ARGV / f"{name}.xml"), random=guid.counting_random)
    devs = qtree(name, tmp_path)
    expect = {"q35-pcie-switch": {"net0": ("pci.3", "00.0"), "usb": ("pci.4", "00.0")},
              "pci-expander-bus": {"scsi0": ("pci.1", "00.0"), "pci.2": ("pci.0", "03.0")},
              "q35-dmi-to-pci-bridge": {"pci.1": ("pcie.0", "1e.0"),
                                        "pci.2": ("pci.1", "00.0"),
                                        "net0": ("pci.2", "01.0")},
              "pc-pci-bridge-autoadd": {"net28": ("pci.0", "1f.0"),
                                        "net29": ("pci.1", "01.0"),
                                        "pci.1": ("pci.0", "02.0")}}[name]
    assert {k: (devs[k].bus, devs[k].pci_addr) for k in expect} == expect
