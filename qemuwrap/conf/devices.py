"""Device definitions of the domain model: each class reads and writes its own XML.

The reading side (``parse``) consumes exactly the supported attributes and
children and then calls ``Node.finish``, so anything else is refused by name.
"""

from __future__ import annotations

import re

from qemuwrap.conf.guid import RandomSource
from qemuwrap.conf.xmlreader import Node
from qemuwrap.conf.xmlwriter import Writer
from qemuwrap.record import Factory, Record

DISK_BUSES = ("ide", "sata", "virtio")
NET_MODELS = ("virtio", "e1000", "rtl8139")
USB_MODELS = ("piix3-uhci", "qemu-xhci", "nec-xhci", "none")


class PCIAddress(Record):
    """``<address type='pci' .../>``: where a PCI device sits."""

    domain: int = 0
    bus: int = 0
    slot: int = 0
    function: int = 0
    multifunction: str | None = None

    def format(self, w: Writer) -> None:
        w.empty("address", ("type", "pci"), ("domain", f"0x{self.domain:04x}"),
                ("bus", f"0x{self.bus:02x}"), ("slot", f"0x{self.slot:02x}"),
                ("function", f"0x{self.function:x}"), ("multifunction", self.multifunction))


class DriveAddress(Record):
    """``<address type='drive' .../>``: controller, bus and unit of a disk."""

    controller: int = 0
    bus: int = 0
    target: int = 0
    unit: int = 0

    def format(self, w: Writer) -> None:
        w.empty("address", ("type", "drive"), ("controller", self.controller),
                ("bus", self.bus), ("target", self.target), ("unit", self.unit))


Address = PCIAddress | DriveAddress


def parse_address(parent: Node, allowed: tuple[str, ...]) -> Address | None:
    node = parent.take_one("address")
    if node is None:
        return None
    kind = node.require("type", choices=allowed)
    if kind == "pci":
        # libvirt reads PCI parts with strtol base 0: 0x hex, 0 octal ('010' is 8).
        addr: Address = PCIAddress(
            domain=node.get_int("domain", 0, maximum=0xFFFF, base=0),
            bus=node.get_int("bus", 0, maximum=0xFF, base=0),
            slot=node.get_int("slot", 0, maximum=0x1F, base=0),
            function=node.get_int("function", 0, maximum=7, base=0),
            multifunction=node.get("multifunction", choices=("on", "off")))
    else:
        addr = DriveAddress(
            controller=node.get_int("controller", 0, maximum=0xFF),
            bus=node.get_int("bus", 0, maximum=0xFF),
            target=node.get_int("target", 0, maximum=0),
            unit=node.get_int("unit", 0, maximum=0xFF))
    node.finish()
    return addr


def _format_address(w: Writer, addr: Address | None) -> None:
    if addr is not None:
        addr.format(w)


class Disk(Record):
    """``<disk>``: a file or block device as a disk or cdrom."""

    type: str  # file | block
    device: str  # disk | cdrom
    target_dev: str
    bus: str
    source: str | None = None
    driver_type: str | None = None  # raw | qcow2
    readonly: bool = False
    address: Address | None = None
    node: Node | None = None

    @classmethod
    def parse(cls, node: Node) -> Disk:
        kind = node.get("type", "file", choices=("file", "block"))
        device = node.get("device", "disk", choices=("disk", "cdrom"))
        driver_type = None
        driver = node.take_one("driver")
        if driver is not None:
            driver.get("name", choices=("qemu",))
            driver_type = driver.get("type", choices=("raw", "qcow2"))
            driver.finish()
        source = None
        src = node.take_one("source")
        if src is not None:
            source = src.require("file" if kind == "file" else "dev")
            if not source.startswith("/"):
                raise src.error(f"source path '{source}' must be absolute")
            src.finish()
        elif device == "disk":
            raise node.error("a disk needs a <source>")
        tgt = node.take_one("target")
        if tgt is None:
            raise node.error("missing <target>")
        dev = tgt.require("dev")
        if not re.fullmatch(r"(hd|sd|vd)[a-z]{1,2}", dev):
            raise tgt.error(f"unsupported target dev '{dev}' (expected hdX, sdX or vdX)")
        bus = tgt.get("bus", choices=DISK_BUSES) or {"hd": "ide", "sd": "sata",
                                                        "vd": "virtio"}[dev[:2]]
        tgt.finish()
        readonly = node.flag("readonly")
        address = parse_address(node, ("pci",) if bus == "virtio" else ("drive",))
        node.finish()
        if device == "cdrom":
            if bus == "virtio":
                raise tgt.error("a cdrom cannot be on bus 'virtio' (use ide or sata)")
            readonly = True
        return cls(kind, device, dev, bus, source, driver_type, readonly, address, node)

    @property
    def index(self) -> int:
        """Position encoded in the target name: hda=0, hdb=1, ..., sdaa=26."""
        n = 0
        for ch in self.target_dev[2:]:
            n = n * 26 + (ord(ch) - ord("a") + 1)
        return n - 1

    def format(self, w: Writer) -> None:
        w.open("disk", ("type", self.type), ("device", self.device))
        if self.driver_type:
            w.empty("driver", ("name", "qemu"), ("type", self.driver_type))
        if self.source is not None:
            w.empty("source", ("file" if self.type == "file" else "dev", self.source))
        w.empty("target", ("dev", self.target_dev), ("bus", self.bus))
        if self.readonly:
            w.empty("readonly")
        _format_address(w, self.address)
        w.close("disk")


class Controller(Record):
    """``<controller>``: usb, ide, sata or the PCI root."""

    type: str
    index: int
    model: str | None = None
    address: Address | None = None
    node: Node | None = None

    @classmethod
    def parse(cls, node: Node) -> Controller:
        kind = node.require("type", choices=("usb", "ide", "sata", "pci"))
        index = node.get_int("index", 0, maximum=255)
        models = {"usb": USB_MODELS, "pci": ("pci-root", "pcie-root"),
                  "ide": ("piix3", "piix4"), "sata": ("ahci",)}[kind]
        model = node.get("model", choices=models)
        if kind == "pci" and model is None:
            raise node.error("missing attribute 'model'")
        address = None if kind == "pci" else parse_address(node, ("pci",))
        node.finish()
        return cls(kind, index, model, address, node)

    def format(self, w: Writer) -> None:
        attrs = (("type", self.type), ("index", self.index), ("model", self.model))
        if self.address is None:
            w.empty("controller", *attrs)
            return
        w.open("controller", *attrs)
        self.address.format(w)
        w.close("controller")


class Interface(Record):
    """``<interface type='user'>``: a NIC on QEMU's user-mode network."""

    mac: str
    model: str = "virtio"
    address: Address | None = None
    node: Node | None = None
    mac_generated: bool = False  # no <mac>: made up at this load

    _hidden = frozenset({"node", "mac_generated"})

    @classmethod
    def parse(cls, node: Node, random: RandomSource) -> Interface:
        node.require("type", choices=("user",))
        mac_node = node.take_one("mac")
        if mac_node is not None:
            mac = mac_node.require("address").lower()
            if not re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", mac):
                raise mac_node.error(f"malformed MAC address '{mac}'")
            if int(mac[:2], 16) & 1:
                raise mac_node.error(f"MAC address '{mac}' is a multicast address")
            mac_node.finish()
        else:
            # libvirt's default: QEMU's OUI 52:54:00 and three random bytes.
            mac = "52:54:00:" + ":".join(f"{b:02x}" for b in random(3))
        model_node = node.take_one("model")
        model = "virtio"
        if model_node is not None:
            model = model_node.require("type", choices=NET_MODELS)
            model_node.finish()
        address = parse_address(node, ("pci",))
        node.finish()
        return cls(mac, model, address, node, mac_node is None)

    def format(self, w: Writer) -> None:
        w.open("interface", ("type", "user"))
        w.empty("mac", ("address", self.mac))
        w.empty("model", ("type", self.model))
        _format_address(w, self.address)
        w.close("interface")


class CharSource(Record):
    """What a serial port or console is connected to: pty, file or unix socket."""

    type: str  # pty | file | unix
    path: str | None = None
    mode: str | None = None  # unix: bind | connect

    @classmethod
    def parse(cls, node: Node) -> CharSource:
        kind = node.require("type", choices=("pty", "file", "unix"))
        src = node.take_one("source")
        if kind == "pty":
            if src is not None:
                src.get("path")  # libvirt reports the allocated pty here; ignored on input
                src.finish()
            return cls(kind)
        if src is None:
            raise node.error(f"a '{kind}' {node.tag} needs a <source path=.../>")
        path = src.require("path")
        if not path.startswith("/"):
            raise src.error(f"path '{path}' must be absolute")
        mode = src.get("mode", "bind", choices=("bind", "connect")) if kind == "unix" else None
        if kind == "file":
            src.get("append", choices=("off",))
        src.finish()
        return cls(kind, path, mode)

    def format(self, w: Writer) -> None:
        if self.type != "pty":
            w.empty("source", ("mode", self.mode), ("path", self.path))


class Serial(Record):
    """``<serial>``: an ISA serial port (COM1 = port 0)."""

    source: CharSource
    port: int = 0
    node: Node | None = None

    @classmethod
    def parse(cls, node: Node) -> Serial:
        source = CharSource.parse(node)
        port = 0
        tgt = node.take_one("target")
        if tgt is not None:
            tgt.get("type", choices=("isa-serial",))
            port = tgt.get_int("port", 0, maximum=3)
            model = tgt.take_one("model")
            if model is not None:
                model.get("name", choices=("isa-serial",))
                model.finish()
            tgt.finish()
        node.finish()
        return cls(source, port, node)

    def format(self, w: Writer) -> None:
        w.open("serial", ("type", self.source.type))
        self.source.format(w)
        w.empty("target", ("type", "isa-serial"), ("port", self.port))
        w.close("serial")


class Console(Record):
    """``<console>``: target 'serial' is the serial port of that number (libvirt's
    alias), target 'virtio' is a virtio console (hvc0)."""

    source: CharSource
    target_type: str = "serial"
    port: int = 0
    node: Node | None = None

    @classmethod
    def parse(cls, node: Node) -> Console:
        source = CharSource.parse(node)
        target_type, port = "serial", 0
        tgt = node.take_one("target")
        if tgt is not None:
            target_type = tgt.get("type", "serial", choices=("serial", "virtio"))
            port = tgt.get_int("port", 0, maximum=3 if target_type == "serial" else 30)
            tgt.finish()
        node.finish()
        return cls(source, target_type, port, node)

    def format(self, w: Writer) -> None:
        w.open("console", ("type", self.source.type))
        self.source.format(w)
        w.empty("target", ("type", self.target_type), ("port", self.port))
        w.close("console")


class Input(Record):
    """``<input>``: mouse, keyboard or tablet on PS/2 or USB."""

    type: str
    bus: str
    node: Node | None = None

    @classmethod
    def parse(cls, node: Node) -> Input:
        kind = node.require("type", choices=("mouse", "keyboard", "tablet"))
        default_bus = "usb" if kind == "tablet" else "ps2"
        bus = node.get("bus", default_bus, choices=("ps2", "usb"))
        if kind == "tablet" and bus != "usb":
            raise node.error("a tablet can only be on bus 'usb'")
        node.finish()
        return cls(kind, bus, node)

    def format(self, w: Writer) -> None:
        w.empty("input", ("type", self.type), ("bus", self.bus))


class Graphics(Record):
    """``<graphics type='vnc'>``: a VNC server on the given (or a free) port."""

    port: int | None = None  # None: autoport
    listen: str = "127.0.0.1"
    node: Node | None = None

    @classmethod
    def parse(cls, node: Node) -> Graphics:
        node.require("type", choices=("vnc",))
        port = node.get_int("port", -1, minimum=-1, maximum=65535)
        autoport = node.get("autoport", choices=("yes", "no"))
        if autoport == "yes" or port == -1:
            port = None
        elif port < 5900:
            raise node.error(f"VNC port {port} is below 5900")
        listen = node.get("listen")
        for child in node.take("listen"):
            child.get("type", choices=("address",))
            addr = child.get("address")
            if addr is not None:
                if listen is not None and addr != listen:
                    raise child.error(f"listen address '{addr}' differs from '{listen}'")
                listen = addr
            child.finish()
        node.finish()
        return cls(port, listen or "127.0.0.1", node)

    def format(self, w: Writer) -> None:
        port = -1 if self.port is None else self.port
        auto = "yes" if self.port is None else "no"
        w.open("graphics", ("type", "vnc"), ("port", port), ("autoport", auto),
               ("listen", self.listen))
        w.empty("listen", ("type", "address"), ("address", self.listen))
        w.close("graphics")


class MemBalloon(Record):
    """``<memballoon>``: virtio balloon or none (libvirt's default is virtio)."""

    model: str = "virtio"
    address: Address | None = None
    node: Node | None = None

    @classmethod
    def parse(cls, node: Node) -> MemBalloon:
        model = node.require("model", choices=("virtio", "none"))
        address = parse_address(node, ("pci",))
        node.finish()
        return cls(model, address, node)

    def format(self, w: Writer) -> None:
        if self.address is None:
            w.empty("memballoon", ("model", self.model))
            return
        w.open("memballoon", ("model", self.model))
        self.address.format(w)
        w.close("memballoon")


class Devices(Record):
    """``<devices>``, formatted in libvirt's order."""

    emulator: str | None = None
    disks: list[Disk] = Factory(list)
    controllers: list[Controller] = Factory(list)
    interfaces: list[Interface] = Factory(list)
    serials: list[Serial] = Factory(list)
    consoles: list[Console] = Factory(list)
    inputs: list[Input] = Factory(list)
    graphics: list[Graphics] = Factory(list)
    memballoon: MemBalloon = Factory(MemBalloon)

    @classmethod
    def parse(cls, node: Node | None, random: RandomSource) -> Devices:
        if node is None:
            return cls()
        emulator = None
        em = node.take_one("emulator")
        if em is not None:
            emulator = em.stripped_text
            if not emulator.startswith("/"):
                raise em.error(f"emulator path '{emulator}' must be absolute")
            em.finish(text_allowed=True)
        devs = cls(
            emulator=emulator,
            disks=[Disk.parse(n) for n in node.take("disk")],
            controllers=[Controller.parse(n) for n in node.take("controller")],
            interfaces=[Interface.parse(n, random) for n in node.take("interface")],
            serials=[Serial.parse(n) for n in node.take("serial")],
            consoles=[Console.parse(n) for n in node.take("console")],
            inputs=[Input.parse(n) for n in node.take("input")],
            graphics=[Graphics.parse(n) for n in node.take("graphics")],
        )
        balloon = node.take_one("memballoon")
        if balloon is not None:
            devs.memballoon = MemBalloon.parse(balloon)
        node.finish()
        devs._check(node)
        return devs

    def _check(self, node: Node) -> None:
        """Conflicts inside the device list itself (not QEMU-specific)."""
        seen: dict[str, Disk] = {}
        for disk in self.disks:
            if disk.target_dev in seen:
                raise disk.node.error(f"target dev '{disk.target_dev}' is used twice")
            seen[disk.target_dev] = disk
        ctrls: set[tuple[str, int]] = set()
        for ctrl in self.controllers:
            if (ctrl.type, ctrl.index) in ctrls:
                raise ctrl.node.error(f"controller type '{ctrl.type}' index {ctrl.index} "
                                      "is defined twice")
            ctrls.add((ctrl.type, ctrl.index))
        ports: set[int] = set()
        for serial in self.serials:
            if serial.port in ports:
                raise serial.node.error(f"serial port {serial.port} is defined twice")
            ports.add(serial.port)
        if len(self.graphics) > 1:
            raise self.graphics[1].node.error("only one <graphics> is supported")
        macs: set[str] = set()
        for nic in self.interfaces:
            if nic.mac in macs:
                raise nic.node.error(f"MAC address {nic.mac} is used twice")
            macs.add(nic.mac)

    def format(self, w: Writer) -> None:
        w.open("devices")
        w.text("emulator", self.emulator)
        for group in (self.disks, self.controllers, self.interfaces, self.serials,
                      self.consoles, self.inputs, self.graphics):
            for dev in group:
                dev.format(w)
        self.memballoon.format(w)
        w.close("devices")
