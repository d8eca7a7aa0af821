"""USB ports (libvirt's virDomainUSBAddressSet): every USB controller is a hub with as
many ports as its model has, every ``<hub>`` adds eight; devices without a port take
the first free one, depth first through the hubs, and libvirt adds usb-hubs when the
devices outnumber the ports.
"""

from __future__ import annotations

from qemuwrap.conf.devices.address import Device, USBAddress
from qemuwrap.conf.devices.controller import Controller, ControllerModel, ControllerType
from qemuwrap.conf.devices.hub import Hub, HubType
from qemuwrap.conf.domain import Domain
from qemuwrap.record import Factory, Record

HUB_PORTS = 8
MAX_DEPTH = 4
M = ControllerModel
#: virDomainUSBAddressControllerModelToPorts (companions: their EHCI counts).
PORTS = {M.PIIX3_UHCI: 2, M.PIIX4_UHCI: 2, M.VT82C686B_UHCI: 2, M.EHCI: 6,
         M.ICH9_EHCI1: 6, M.PCI_OHCI: 3, M.NEC_XHCI: 4, M.QEMU_XHCI: 4, M.QUSB1: 8,
         M.QUSB2: 8}
CONFIGURABLE = frozenset({M.NEC_XHCI, M.QEMU_XHCI, M.QUSB1, M.QUSB2})


class USBAddressError(Exception):
    """A USB placement that cannot be had (one line)."""


def controller_ports(ctrl: Controller) -> int:
    """The ports a controller gives (0 for a UHCI companion and for 'none')."""
    if ctrl.model in CONFIGURABLE and ctrl.ports is not None:
        return ctrl.ports
    return PORTS.get(ctrl.model, 0) if ctrl.model is not None else 0



def usb_devices(dom: Domain, hubs: bool = True) -> list[Device]:
    """The devices that sit on USB ports, in libvirt's order
    (virDomainUSBDeviceDefForeach): hubs, host devices, disks, CCID controllers, inputs,
    serial ports, sound cards, redirected devices."""
    devs = dom.devices
    out: list[Device] = []
    if hubs:
        out += [h for h in devs.hubs if h.type == HubType.USB]
    out += [h for h in devs.hostdevs if str(h.type) == "usb"]
    out += [d for d in devs.disks if str(d.bus) == "usb"]
    out += [c for c in devs.controllers if c.type == ControllerType.CCID]
    out += [i for i in devs.inputs if str(i.bus) == "usb"]
    out += [s for s in devs.serials if _target_type(s) == "usb-serial"]
    out += [s for s in devs.sounds if str(s.model) == "usb"]
    out += [r for r in devs.redirdevs if str(r.bus) == "usb"]
    return out


def _target_type(serial: Device) -> str | None:
    target = getattr(serial, "target", None)
    kind = getattr(target, "type", None)
    return str(kind) if kind is not None else None


def _path(addr: USBAddress) -> list[int]:
    return [int(p) for p in addr.port.split(".")] if addr.port else []


class HubPorts(Record):
    """One controller's root hub or one usb-hub: which ports are taken, and the hubs
    plugged into them."""

    ports: int
    taken: set[int] = Factory(set)
    hubs: dict[int, HubPorts] = Factory(dict)

    def find_free(self, depth: int = 0) -> list[int] | None:
        for port in range(1, self.ports + 1):
            if port not in self.taken:
                return [port]
        if depth >= MAX_DEPTH - 1:
            return None
        for port in sorted(self.hubs):
            below = self.hubs[port].find_free(depth + 1)
            if below is not None:
                return [port, *below]
        return None


class USBAddressSet:
    def __init__(self) -> None:
        self.buses: dict[int, HubPorts] = {}

    def add_controller(self, ctrl: Controller) -> None:
        ports = controller_ports(ctrl)
        if ports == 0:
            return  # UHCI companions: their EHCI master has the ports
        if ctrl.index in self.buses:
            raise USBAddressError(f"duplicate USB controllers with index {ctrl.index}")
        self.buses[ctrl.index] = HubPorts(ports)

    def _find(self, addr: USBAddress) -> tuple[HubPorts, int]:
        hub = self.buses.get(addr.bus)
        if hub is None:
            raise USBAddressError(f"there is no USB bus {addr.bus} (no USB controller with "
                                  "that index)")
        path = _path(addr)
        for port in path[:-1]:
            if port > hub.ports:
                raise USBAddressError(f"port {port} is out of range in USB address bus "
                                      f"{addr.bus} port {addr.port}")
            below = hub.hubs.get(port)
            if below is None:
                raise USBAddressError(f"there is no hub at port {port} of USB address bus "
                                      f"{addr.bus} port {addr.port}")
            hub = below
        if path[-1] > hub.ports:
            raise USBAddressError(f"USB port {addr.port} is not present on USB bus "
                                  f"{addr.bus}")
        return hub, path[-1]

    def reserve(self, addr: USBAddress) -> None:
        hub, port = self._find(addr)
        if port in hub.taken:
            raise USBAddressError(f"USB address bus {addr.bus} port {addr.port} is used "
                                  "twice")
        hub.taken.add(port)

    def add_hub(self, addr: USBAddress) -> None:
        hub, port = self._find(addr)
        if port in hub.hubs:
            raise USBAddressError(f"two USB hubs on bus {addr.bus} port {addr.port}")
        hub.taken.add(port)
        hub.hubs[port] = HubPorts(HUB_PORTS)

    def assign(self, dev: Device) -> USBAddress:
        """The first free port: on the bus the device's address names, else on any."""
        wanted = dev.address if isinstance(dev.address, USBAddress) else None
        if wanted is not None and wanted.bus not in self.buses:
            raise USBAddressError(f"USB bus {wanted.bus} requested but no controller with "
                                  "that index is present")
        buses = [wanted.bus] if wanted is not None else sorted(self.buses)
        for bus in buses:
            path = self.buses[bus].find_free()
            if path is not None:
                addr = USBAddress(bus=bus, port=".".join(map(str, path)))
                self.reserve(addr)
                return addr
        raise USBAddressError("no free USB port is left")


def _placed(dev: Device) -> bool:
    return isinstance(dev.address, USBAddress) and bool(dev.address.port)


def usb_enabled(dom: Domain) -> bool:
    """virDomainDefHasUSB: a USB controller that is not model 'none'."""
    return any(c.type == ControllerType.USB and c.model != M.NONE
               for c in dom.devices.controllers)


def count_ports(dom: Domain) -> int:
    ctrls = [c for c in dom.devices.controllers if c.type == ControllerType.USB]
    return sum(controller_ports(c) for c in ctrls if c.model != M.NONE) + \
        HUB_PORTS * sum(1 for h in dom.devices.hubs if h.type == HubType.USB)


def add_hubs(dom: Domain) -> None:
    """qemuDomainUSBAddressAddHubs: enough usb-hubs for every USB device to get a port
    (each hub takes one port and gives eight)."""
    count = len(usb_devices(dom))
    if count == 0:
        return
    if not usb_enabled(dom):
        raise USBAddressError("USB is disabled for this domain (no USB controller, or "
                              "model 'none'), but USB devices are present")
    available = count_ports(dom)
    if count > available:
        needed = -(-(count - available + 1) // (HUB_PORTS - 1))
        dom.devices.hubs.extend(Hub(type=HubType.USB) for _ in range(needed))


def assign_usb(dom: Domain) -> list[tuple[Device, str]]:
    """Ports for every USB device (libvirt's qemuDomainAssignUSBAddresses for a new
    definition); the problems, each with the device it concerns."""
    problems: list[tuple[Device, str]] = []
    if not usb_devices(dom):
        return problems  # nothing to place (the controllers' ports stay free)
    try:
        add_hubs(dom)
    except USBAddressError as exc:
        first = usb_devices(dom)[0]
        return [(first, str(exc))]
    addrs = USBAddressSet()
    for ctrl in dom.devices.controllers:
        if ctrl.type == ControllerType.USB and ctrl.model != M.NONE:
            try:
                addrs.add_controller(ctrl)
            except USBAddressError as exc:
                problems.append((ctrl, str(exc)))
    hubs = [h for h in dom.devices.hubs if h.type == HubType.USB]
    for hub in hubs:
        if _placed(hub):
            try:
                addrs.add_hub(hub.address)  # type: ignore[arg-type]
            except USBAddressError as exc:
                problems.append((hub, str(exc)))
    for dev in usb_devices(dom, hubs=False):
        if _placed(dev):
            try:
                addrs.reserve(dev.address)  # type: ignore[arg-type]
            except USBAddressError as exc:
                problems.append((dev, str(exc)))
    if problems:
        return problems
    for hub in hubs:
        if not _placed(hub):
            try:
                hub.address = addrs.assign(hub)
                hub_addr = hub.address
                # the port assign() took becomes the new hub's
                target, port = addrs._find(hub_addr)
                target.hubs[port] = HubPorts(HUB_PORTS)
            except USBAddressError as exc:
                problems.append((hub, str(exc)))
    for dev in usb_devices(dom, hubs=False):
        if not _placed(dev):
            try:
                dev.address = addrs.assign(dev)
            except USBAddressError as exc:
                problems.append((dev, str(exc)))
    return problems
