"""Domain model + QEMU capabilities -> the exact QEMU command (libvirt's qemu_command.c).

One ``_build_*`` function per part of the definition, called in the order the
options appear. The vmgenid device is built in :func:`build_vmgenid`, right after
``-uuid``. PCI addresses are assigned here up front (as libvirt does) so a guest
keeps the same hardware layout on every start, which save/restore relies on.
"""

from __future__ import annotations

import os

from qemuwrap.conf import guid
from qemuwrap.conf.devices import Controller, Disk, DriveAddress, PCIAddress, Serial
from qemuwrap.conf.domain import Domain
from qemuwrap.conf.xmlreader import Node
from qemuwrap.errors import UnsupportedError
from qemuwrap.qemu.argv import Arg, Command, optstr
from qemuwrap.qemu.capabilities import Capabilities
from qemuwrap.qemu.validate import MachineType, validate
from qemuwrap.record import Factory, Record

#: QEMU's environment: fixed, so a command is the same wherever it is built.
QEMU_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
QMP_SOCKET = "qmp.sock"  # the supervisor's QMP monitor
CONTROL_SOCKET = "control.sock"  # a second QMP monitor for shutdown/destroy/status
PIDFILE = "qemu.pid"

_NIC_DEVICES = {"virtio": "virtio-net-pci", "e1000": "e1000", "rtl8139": "rtl8139"}
_USB_DEVICES = {"piix3-uhci": "piix3-usb-uhci", "qemu-xhci": "qemu-xhci",
                "nec-xhci": "nec-usb-xhci"}
_INPUT_DEVICES = {"mouse": "usb-mouse", "keyboard": "usb-kbd", "tablet": "usb-tablet"}
_BOOT_LETTERS = {"fd": "a", "hd": "c", "cdrom": "d", "network": "n"}
#: on_crash -> QEMU's -action panic=; "restart" is done by the launcher on GUEST_PANICKED.
_PANIC_ACTIONS = {"destroy": "exit-failure", "restart": "none", "preserve": "pause"}


class Paths(Record):
    """Where a running guest keeps its files (the launcher's state directory)."""

    state_dir: str

    @property
    def qmp_socket(self) -> str:
        return os.path.join(self.state_dir, QMP_SOCKET)

    @property
    def control_socket(self) -> str:
        return os.path.join(self.state_dir, CONTROL_SOCKET)

    @property
    def pidfile(self) -> str:
        return os.path.join(self.state_dir, PIDFILE)

    def serial_log(self, port: int) -> str:
        return os.path.join(self.state_dir, f"serial{port}.log")


def _fail(node: Node | None, message: str) -> UnsupportedError:
    where = f"{node.path} (line {node.line}): " if node is not None else ""
    return UnsupportedError(where + message)


class _PCIBus(Record):
    """Slot allocation on the root bus: explicit addresses first, then the free slots."""

    name: str
    reserved: set[int]
    used: dict[tuple[int, int], Node | None] = Factory(dict)

    def claim(self, addr: PCIAddress, node: Node | None) -> None:
        if addr.domain != 0 or addr.bus != 0:
            raise _fail(node, "only PCI domain 0, bus 0 (the root bus) is supported")
        key = (addr.slot, addr.function)
        if addr.slot in self.reserved or key in self.used:
            raise _fail(node, f"PCI address {addr.slot:#04x}.{addr.function} is already in use")
        self.used[key] = node

    def check_functions(self) -> None:
        for (slot, fn), node in self.used.items():
            if fn and (slot, 0) not in self.used and slot not in self.reserved:
                raise _fail(node, f"PCI slot {slot:#04x} has function {fn} but no function 0")

    def allocate(self) -> PCIAddress:
        for slot in range(1, 32):
            if slot not in self.reserved and not any(s == slot for s, _ in self.used):
                addr = PCIAddress(slot=slot)
                self.used[(slot, 0)] = None
                return addr
        raise UnsupportedError("no free PCI slot left on the root bus")

    def option(self, addr: PCIAddress) -> dict[str, str]:
        value = f"{addr.slot:#x}" if addr.function == 0 else f"{addr.slot:#x}.{addr.function:#x}"
        props = {"bus": self.name, "addr": value}
        if addr.multifunction == "on":
            props["multifunction"] = "on"
        return props


class _Builder:
    def __init__(self, dom: Domain, caps: Capabilities, machine: MachineType, paths: Paths):
        self.dom = dom
        self.caps = caps
        self.machine = machine
        self.paths = paths
        self.q35 = machine.family == "q35"
        self.cmd = Command(binary=dom.devices.emulator or caps.emulator)
        # pc: 0 host bridge, 1 PIIX3 (ISA, IDE, USB at .2, PM); q35: 0 host, 0x1f ICH9.
        self.pci = _PCIBus("pcie.0" if self.q35 else "pci.0", {0, 0x1F} if self.q35 else {0, 1})
        self.addresses: dict[int, PCIAddress] = {}  # id(device) -> address

    # -- helpers -----------------------------------------------------------------
    def require_device(self, name: str, node: Node | None) -> None:
        if not self.caps.has_device(name):
            raise _fail(node, f"{self.caps.emulator} has no '{name}' device")

    def pci_props(self, device: object) -> dict[str, str]:
        return self.pci.option(self.addresses[id(device)])

    # -- PCI layout ------------------------------------------------------------
    def assign_pci(self) -> None:
        devs = self.dom.devices
        pci_devices: list[tuple[object, Node | None]] = []
        if devs.graphics:
            pci_devices.append((devs.graphics[0], devs.graphics[0].node))
        for ctrl in devs.controllers:
            if self._controller_device(ctrl) is not None:
                pci_devices.append((ctrl, ctrl.node))
        pci_devices += [(nic, nic.node) for nic in devs.interfaces]
        pci_devices += [(d, d.node) for d in devs.disks if d.bus == "virtio"]
        if self._virtio_consoles():
            pci_devices.append((devs.consoles, None))
        if devs.memballoon.model == "virtio":
            pci_devices.append((devs.memballoon, devs.memballoon.node))

        for dev, node in pci_devices:
            addr = getattr(dev, "address", None)
            piix_usb = (not self.q35 and isinstance(dev, Controller) and dev.type == "usb"
                        and dev.model in (None, "piix3-uhci"))
            if piix_usb and (addr is None or (addr.slot, addr.function) == (1, 2)):
                self.addresses[id(dev)] = PCIAddress(slot=1, function=2)  # PIIX3's own USB
            elif isinstance(addr, PCIAddress):
                self.pci.claim(addr, node)
                self.addresses[id(dev)] = addr
        self.pci.check_functions()
        for dev, _node in pci_devices:
            if id(dev) not in self.addresses:
                self.addresses[id(dev)] = self.pci.allocate()

    def _virtio_consoles(self) -> list:
        return [c for c in self.dom.devices.consoles if c.target_type == "virtio"]

    def _controller_device(self, ctrl: Controller) -> str | None:
        """The -device a controller needs, or None when the machine has it built in."""
        if ctrl.type == "usb":
            model = ctrl.model or ("qemu-xhci" if self.q35 else "piix3-uhci")
            return None if model == "none" else _USB_DEVICES[model]
        if ctrl.type == "sata":
            return None if self.q35 and ctrl.index == 0 else "ich9-ahci"
        return None

    # -- the options, in order -------------------------------------------------
    def build(self) -> Command:
        dom, cmd = self.dom, self.cmd
        cmd.env.update(LC_ALL="C", PATH=QEMU_PATH, HOME=self.paths.state_dir)
        self.assign_pci()
        cmd.add("-name", optstr(guest=dom.name, debug_threads="on"), dom.nodes["name"])
        cmd.add("-S", why="start paused: qemuwrap checks the genid over QMP, then resumes")
        cmd.add("-machine", optstr(self.machine.name, usb="off", dump_guest_core="off",
                                   acpi="on" if dom.acpi else "off"),
                dom.nodes["os/type"])
        cmd.add("-accel", "kvm" if dom.type == "kvm" else "tcg", dom.nodes["domain"])
        self.build_memory()
        self.build_smp()
        cmd.add("-uuid", dom.uuid_str, dom.nodes.get("uuid"),
                why="uuid generated (not in the XML)")
        self.build_vmgenid()
        if not dom.devices.graphics:
            cmd.add("-display", "none", why="no <graphics> in the XML")
        cmd.add("-no-user-config", why="only what the XML says")
        cmd.add("-nodefaults", why="only what the XML says")
        cmd.add("-chardev", optstr("socket", id="charmonitor", path=self.paths.qmp_socket,
                                   server="on", wait="off"),
                why="QMP monitor socket in the state directory")
        cmd.add("-mon", optstr(chardev="charmonitor", id="monitor", mode="control"),
                why="QMP monitor")
        cmd.add("-chardev", optstr("socket", id="charcontrol", path=self.paths.control_socket,
                                   server="on", wait="off"),
                why="second QMP socket, for shutdown/destroy/status beside the supervisor")
        cmd.add("-mon", optstr(chardev="charcontrol", id="control", mode="control"),
                why="QMP monitor for qemuwrap's other commands")
        cmd.add("-pidfile", self.paths.pidfile, why="QEMU's pid for status/adoption")
        cmd.add("-rtc", optstr(base=dom.clock_offset), dom.nodes.get("clock"),
                why="default clock offset utc")
        self.build_actions()
        self.build_boot()
        self.build_controllers()
        self.build_disks()
        self.build_interfaces()
        self.build_chardevs()
        self.build_inputs()
        self.build_graphics()
        self.build_memballoon()
        cmd.add("-msg", "timestamp=on", why="timestamps in QEMU's log")
        return cmd

    def build_memory(self) -> None:
        mib = -(-self.dom.memory_kib // 1024)  # whole MiB, rounded up as libvirt does
        self.cmd.add("-m", str(mib), self.dom.nodes["memory"])

    def build_smp(self) -> None:
        dom = self.dom
        topo = dom.topology
        sockets, dies, cores, threads = ((topo.sockets, topo.dies, topo.cores, topo.threads)
                                         if topo else (dom.vcpus, 1, 1, 1))
        value = optstr(dom.vcpu_current or dom.vcpus,
                       maxcpus=dom.vcpus if dom.vcpu_current else None,
                       sockets=sockets, dies=dies if dies > 1 else None, cores=cores,
                       threads=threads)
        self.cmd.add("-smp", value, dom.nodes.get("vcpu") or dom.nodes.get("cpu"),
                     why="default: one vCPU")

    def build_vmgenid(self) -> None:
        """``-device vmgenid,guid=GUID,id=vmgenid0``: the guest's VM Generation ID."""
        if self.dom.genid_requested:
            self.cmd.add("-device", optstr("vmgenid", guid=guid.format(self.dom.genid),
                                           id="vmgenid0"), self.dom.nodes["genid"])

    def build_actions(self) -> None:
        """on_poweroff/on_reboot/on_crash as QEMU's -action where QEMU has one; the
        rest (restart after poweroff or panic) is the launcher's, on QMP events."""
        dom = self.dom
        if self.caps.version < (6, 0, 0):
            raise _fail(dom.nodes.get("on_poweroff"), f"{self.caps.emulator} is older than "
                        "QEMU 6.0 and lacks -action")
        # A reboot turned into a shutdown follows the shutdown action; where that pauses
        # (on_poweroff restart/preserve) the launcher sees SHUTDOWN's reason and ends QEMU.
        shutdown = "poweroff" if dom.on_poweroff == "destroy" else "pause"
        reboot = "reset" if dom.on_reboot == "restart" else "shutdown"
        value = optstr(reboot=reboot, shutdown=shutdown, panic=_PANIC_ACTIONS[dom.on_crash])
        source = dom.nodes.get("on_poweroff") or dom.nodes.get("on_reboot") or \
            dom.nodes.get("on_crash")
        self.cmd.add("-action", value, source, why="libvirt's default lifecycle actions")

    def build_boot(self) -> None:
        dom = self.dom
        if dom.os.kernel:
            self.cmd.add("-kernel", dom.os.kernel, dom.os.node)
            if dom.os.initrd:
                self.cmd.add("-initrd", dom.os.initrd, dom.os.node)
            if dom.os.cmdline is not None:
                self.cmd.add("-append", dom.os.cmdline, dom.os.node)
        if dom.os.boot:
            order = "".join(_BOOT_LETTERS[b] for b in dom.os.boot)
            self.cmd.add("-boot", optstr(order=order), dom.os.node)

    def build_controllers(self) -> None:
        for ctrl in self.dom.devices.controllers:
            node = ctrl.node
            if ctrl.type == "pci":
                expected = "pcie-root" if self.q35 else "pci-root"
                if ctrl.index != 0 or ctrl.model != expected:
                    raise _fail(node, f"machine '{self.machine.name}' has only a "
                                      f"'{expected}' PCI controller with index 0")
                continue
            if ctrl.type == "ide":
                if self.q35 or ctrl.index != 0:
                    what = "no IDE controller" if self.q35 else "one IDE controller (index 0)"
                    raise _fail(node, f"machine '{self.machine.name}' has {what}")
                continue
            if ctrl.type == "usb" and ctrl.index != 0:
                raise _fail(node, "only one USB controller (index 0) is supported")
            device = self._controller_device(ctrl)
            if device is None:
                continue
            self.require_device(device, node)
            dev_id = "usb" if ctrl.type == "usb" else f"sata{ctrl.index}"
            self.cmd.add("-device", optstr(device, id=dev_id, **self.pci_props(ctrl)), node)

    def _sata_bus(self, disk: Disk, controller: int, unit: int) -> str:
        ctrls = {c.index for c in self.dom.devices.controllers if c.type == "sata"}
        if self.q35 and controller == 0:
            return f"ide.{unit}"  # ICH9's built-in AHCI names its ports ide.0 .. ide.5
        if controller not in ctrls:
            raise _fail(disk.node, f"disk '{disk.target_dev}' needs <controller type='sata' "
                                   f"index='{controller}'/>")
        return f"sata{controller}.{unit}"

    def build_disks(self) -> None:
        for disk in self.dom.devices.disks:
            node = disk.node
            drive_id = f"drive-{disk.target_dev}"
            if disk.readonly and disk.device == "disk" and disk.bus != "virtio":
                # QEMU's ide-hd refuses a read-only drive; libvirt says the same up front.
                raise _fail(node, f"readonly {disk.bus} disks are not supported")
            if disk.source is not None:
                proto = "file" if disk.type == "file" else \
                    ("host_cdrom" if disk.device == "cdrom" else "host_device")
                self.cmd.add("-blockdev", optstr(**{
                    "driver": disk.driver_type or "raw", "node-name": drive_id,
                    "read-only": "on" if disk.readonly else "off",
                    "file.driver": proto, "file.filename": disk.source}), node)
            idx = disk.index
            addr = disk.address if isinstance(disk.address, DriveAddress) else None
            if disk.bus == "virtio":
                props = {"id": f"virtio-disk{idx}", **self.pci_props(disk)}
                device = "virtio-blk-pci"
            elif disk.bus == "ide":
                if self.q35:
                    raise _fail(node, f"machine '{self.machine.name}' has no IDE bus; "
                                      "use bus='sata'")
                bus, unit = (addr.bus, addr.unit) if addr else divmod(idx, 2)
                if bus > 1 or unit > 1:
                    raise _fail(node, f"IDE disk '{disk.target_dev}' is beyond the 4 IDE "
                                      "positions (hda..hdd)")
                props = {"bus": f"ide.{bus}", "unit": str(unit), "id": f"ide0-{bus}-{unit}"}
                device = "ide-cd" if disk.device == "cdrom" else "ide-hd"
            else:
                controller, unit = (addr.controller, addr.unit) if addr else divmod(idx, 6)
                if unit > 5:
                    raise _fail(node, f"SATA unit {unit} is beyond the 6 ports of a controller")
                props = {"bus": self._sata_bus(disk, controller, unit),
                         "id": f"sata{controller}-0-{unit}"}
                device = "ide-cd" if disk.device == "cdrom" else "ide-hd"
            if disk.source is not None:
                props["drive"] = drive_id
            self.require_device(device, node)
            self.cmd.add("-device", optstr(device, **props), node)

    def build_interfaces(self) -> None:
        for n, nic in enumerate(self.dom.devices.interfaces):
            device = _NIC_DEVICES[nic.model]
            self.require_device(device, nic.node)
            self.cmd.add("-netdev", optstr("user", id=f"hostnet{n}"), nic.node)
            self.cmd.add("-device", optstr(device, netdev=f"hostnet{n}", id=f"net{n}",
                                           mac=nic.mac, **self.pci_props(nic)), nic.node)

    def _chardev(self, chr_id: str, source, node: Node | None, log: str | None = None) -> None:
        if source.type == "pty":
            # A pty drops output nobody reads: keep the console in the state directory too.
            value = optstr("pty", id=chr_id, logfile=log, logappend="off" if log else None)
        elif source.type == "file":
            value = optstr("file", id=chr_id, path=source.path)
        else:
            server = source.mode == "bind"
            value = optstr("socket", id=chr_id, path=source.path,
                           server="on" if server else "off",
                           wait="off" if server else None)
        self.cmd.add("-chardev", value, node)

    def build_chardevs(self) -> None:
        devs = self.dom.devices
        serials = list(devs.serials)
        for console in devs.consoles:
            if console.target_type == "serial":
                match = [s for s in serials if s.port == console.port]
                if match:
                    if match[0].source != console.source:
                        raise _fail(console.node, f"console and serial port {console.port} "
                                                  "are the same device but differ in type "
                                                  "or path")
                    continue
                serials.append(Serial(console.source, console.port, console.node))
        for serial in sorted(serials, key=lambda s: s.port):
            self._chardev(f"charserial{serial.port}", serial.source, serial.node,
                          self.paths.serial_log(serial.port))
            self.cmd.add("-device", optstr("isa-serial", chardev=f"charserial{serial.port}",
                                           id=f"serial{serial.port}", index=serial.port),
                         serial.node)
        virtio = self._virtio_consoles()
        if virtio:
            self.require_device("virtio-serial-pci", virtio[0].node)
            self.cmd.add("-device", optstr("virtio-serial-pci", id="virtio-serial0",
                                           **self.pci_props(devs.consoles)), virtio[0].node)
            seen = set()
            for console in virtio:
                if console.port in seen:
                    raise _fail(console.node, f"virtio console port {console.port} is "
                                              "defined twice")
                seen.add(console.port)
                chr_id = f"charconsole{console.port}"
                self._chardev(chr_id, console.source, console.node)
                self.cmd.add("-device", optstr("virtconsole", chardev=chr_id,
                                               id=f"console{console.port}",
                                               nr=console.port), console.node)

    def _usb_bus(self, node: Node | None) -> str:
        ctrls = [c for c in self.dom.devices.controllers if c.type == "usb"]
        if not ctrls or self._controller_device(ctrls[0]) is None:
            raise _fail(node, "a USB device needs <controller type='usb'/> (not model 'none')")
        return "usb.0"

    def build_inputs(self) -> None:
        port = 0
        for n, inp in enumerate(self.dom.devices.inputs):
            if inp.bus == "ps2":
                continue  # the i8042 of pc and q35: built in, no option
            port += 1
            device = _INPUT_DEVICES[inp.type]
            self.require_device(device, inp.node)
            self.cmd.add("-device", optstr(device, id=f"input{n}", bus=self._usb_bus(inp.node),
                                           port=port), inp.node)

    def build_graphics(self) -> None:
        for gfx in self.dom.devices.graphics:
            host = f"[{gfx.listen}]" if ":" in gfx.listen else gfx.listen
            display = 0 if gfx.port is None else gfx.port - 5900
            value = optstr(f"{host}:{display}", to=99 if gfx.port is None else None)
            self.cmd.add("-vnc", value, gfx.node)
            self.require_device("VGA", gfx.node)
            self.cmd.add("-device", optstr("VGA", id="video0", **self.pci_props(gfx)), gfx.node)

    def build_memballoon(self) -> None:
        balloon = self.dom.devices.memballoon
        if balloon.model == "virtio":
            self.require_device("virtio-balloon-pci", balloon.node)
            self.cmd.add("-device", optstr("virtio-balloon-pci", id="balloon0",
                                           **self.pci_props(balloon)), balloon.node,
                         why="libvirt's default memballoon (virtio)")


def build_command(dom: Domain, caps: Capabilities, state_dir: os.PathLike | str, *,
                  incoming: bool = False, loadvm: str | None = None) -> Command:
    """Validate ``dom`` against ``caps`` and build its QEMU command.

    ``incoming``: QEMU waits for a saved state (``-incoming defer``; the restore feeds
    it over QMP). ``loadvm``: QEMU starts from an internal snapshot of that name.
    """
    machine = validate(dom, caps)
    cmd = _Builder(dom, caps, machine, Paths(os.fspath(state_dir))).build()
    if incoming:
        cmd.args.insert(-1, Arg("-incoming", "defer", why="restore: state comes over QMP"))
    if loadvm is not None:
        cmd.args.insert(-1, Arg("-loadvm", loadvm, why="revert: start from this snapshot"))
    return cmd
