"""Address and id assignment (libvirt 9.0's qemu_domain_address.c and qemu_alias.c).

Every device QEMU needs a place for gets one written into the model: virtio-serial
ports, PCI slots (and the PCI controllers that hold them), USB ports (and the usb-hubs
that provide them), controller/bus/unit for disks (``conf/devices/disk.py``), and an id
(``alias.py``).  Addresses in the XML are honoured on any bus; the rest are filled in
the order and the slots libvirt uses, so a guest moved from libvirt sees the same
hardware, and the same on every start (the live definition shows it).

PCI placement is libvirt's two passes: a dry run places every device, adding buses
where it runs out (a pcie-root-port for each PCIe device on q35, a pci-bridge when the
root bus is full, a pcie-to-pci-bridge for conventional PCI cards on q35); those buses
become controllers; then the real pass places the controllers first and every device
after them, in libvirt's order of device kinds.
"""

from __future__ import annotations

from collections.abc import Iterator

from qemuwrap.conf.devices.address import (
    Device,
    PCIAddress,
    VirtioSerialAddress,
)
from qemuwrap.conf.devices.controller import (
    Controller,
    ControllerModel,
    ControllerModelName,
    ControllerType,
    PCIModel,
    PCIModelName,
    find_controller,
)
from qemuwrap.conf.domain import Domain
from qemuwrap.errors import Problems
from qemuwrap.qemu.alias import assign_aliases
from qemuwrap.qemu.capabilities import Capabilities
from qemuwrap.qemu.pciaddr import NO_FLAGS, AddressError, Bus, Conn, PCIAddressSet
from qemuwrap.qemu.pciconnect import PCI_FLAGS, PCIE_FLAGS, connect_flags
from qemuwrap.qemu.usbaddr import assign_usb
from qemuwrap.qemu.validate import MachineType, refusal

M = ControllerModel
P = PCIModel
#: qemuDomainPCIControllerSetDefaultModelName (pcie-root-port: ioh3420 without it).
MODEL_NAMES = {P.PCI_BRIDGE: PCIModelName.PCI_BRIDGE,
               P.DMI_TO_PCI_BRIDGE: PCIModelName.I82801B11_BRIDGE,
               P.PCIE_TO_PCI_BRIDGE: PCIModelName.PCIE_PCI_BRIDGE,
               P.PCIE_ROOT_PORT: PCIModelName.PCIE_ROOT_PORT,
               P.PCIE_SWITCH_UPSTREAM_PORT: PCIModelName.X3130_UPSTREAM,
               P.PCIE_SWITCH_DOWNSTREAM_PORT: PCIModelName.XIO3130_DOWNSTREAM,
               P.PCI_EXPANDER_BUS: PCIModelName.PXB,
               P.PCIE_EXPANDER_BUS: PCIModelName.PXB_PCIE}
VIRTIO_SERIAL_PORTS = 31
USB2_FUNCTIONS = {M.ICH9_EHCI1: (7, None), M.ICH9_UHCI1: (0, True),
                  M.ICH9_UHCI2: (1, None), M.ICH9_UHCI3: (2, None)}


class Problem(Exception):
    """A device that cannot be placed, and why."""

    def __init__(self, dev: Device, message: str):
        super().__init__(message)
        self.dev = dev


# --------------------------------------------------------------------------- helpers
def all_devices(dom: Domain) -> Iterator[Device]:
    """Every device with an address, in libvirt's virDomainDeviceInfoIterate order."""
    d = dom.devices
    # The first console of target 'serial' is serial port 0 itself (libvirt's
    # virDomainSkipBackcompatConsole): not a device of its own.
    consoles = d.consoles[1:] if d.consoles and str(d.consoles[0].target_type) == "serial" \
        else d.consoles
    yield from (*d.disks, *d.interfaces, *d.sounds, *d.hostdevs, *d.videos, *d.controllers,
                *d.smartcards, *d.serials, *d.parallels, *d.channels, *consoles, *d.inputs,
                *d.filesystems, *d.watchdogs)
    if d.memballoon_el is not None:
        yield d.memballoon_el
    yield from (*d.hubs, *d.shmems, *d.tpms, *d.panics, *d.memories, *d.redirdevs,
                *d.rngs)
    for one in (d.iommu, d.vsock):
        if one is not None:
            yield one


def pci_present(dev: Device) -> bool:
    """virDeviceInfoPCIAddressIsPresent: a PCI address that is not all zeros."""
    a = dev.address
    return isinstance(a, PCIAddress) and bool(a.domain or a.bus or a.slot)


def pci_wanted(dev: Device) -> bool:
    """virDeviceInfoPCIAddressIsWanted: no address, or an empty PCI one."""
    return dev.address is None or (isinstance(dev.address, PCIAddress)
                                   and not pci_present(dev))


def _same(a: PCIAddress, bus: int, slot: int, function: int) -> bool:
    return (a.domain, a.bus, a.slot, a.function) == (0, bus, slot, function)


# --------------------------------------------------------------------------- PCI
class PCIPass:
    """One pass of libvirt's qemuDomainAssignPCIAddresses over ``dom``."""

    def __init__(self, dom: Domain, machine: MachineType, caps: Capabilities, nbuses: int,
                 dry_run: bool):
        self.dom = dom
        self.i440fx = machine.family == "pc"
        self.q35 = machine.family == "q35"
        self.caps = caps
        self.dry_run = dry_run
        ctrls = dom.devices.controllers
        self.pcie_root = any(c.model == M.PCIE_ROOT for c in ctrls)
        self.pci_root = any(c.model == M.PCI_ROOT for c in ctrls)
        self.pcie = PCIE_FLAGS if self.pcie_root else PCI_FLAGS
        self.virtio = self.pcie  # QEMU >= 4.0: virtio devices are PCIe where they can be
        self._flags: dict[int, int] = {}
        self.set = PCIAddressSet(self._buses(nbuses), dry_run,
                                 pcie_to_pci_bridge=caps.has_device("pcie-pci-bridge"))

    def flags(self, dev: Device) -> int:
        key = id(dev)
        if key not in self._flags:
            self._flags[key] = connect_flags(dev, self.pcie, self.virtio)
        return self._flags[key]

    def _buses(self, nbuses: int) -> list[Bus]:
        buses: list[Bus | None] = [None] * nbuses
        for ctrl in self.dom.devices.controllers:
            model = ctrl.pci_model
            if model is not None and 0 <= ctrl.index < nbuses:
                buses[ctrl.index] = Bus.of(model, ctrl.hotplug)
        if nbuses and buses[0] is None:
            buses[0] = Bus.of(P.PCI_ROOT)
        default = P.PCIE_ROOT_PORT if self.pcie_root else P.PCI_BRIDGE
        return [b if b is not None else Bus.of(default) for b in buses]

    # -- taking addresses -------------------------------------------------------------
    def reserve(self, dev: Device, addr: PCIAddress, flags: int) -> None:
        try:
            self.set.reserve(addr, flags, from_config=True)
        except AddressError as exc:
            raise Problem(dev, str(exc)) from None

    def place(self, dev: Device, flags: int | None = None, function: int = -1) \
            -> PCIAddress:
        """The next free address for ``dev``, written into it unless a dry run."""
        try:
            addr = self.set.reserve_next(self.flags(dev) if flags is None else flags,
                                         function)
        except AddressError as exc:
            raise Problem(dev, str(exc)) from None
        if not self.dry_run:
            dev.address = addr
        return addr

    def collect(self) -> None:
        """Reserve every address the definition gives (qemuDomainCollectPCIAddress)."""
        bus0_pci = bool(self.set.buses) and bool(self.set.buses[0].flags & Conn.PCI_DEVICE)
        for dev in all_devices(self.dom):
            if not pci_present(dev):
                continue
            addr = dev.address
            assert isinstance(addr, PCIAddress)
            if isinstance(dev, Controller) and _is_piix3_function(dev):
                if not bus0_pci:
                    raise Problem(dev, "the integrated PIIX3 USB and IDE controllers "
                                       "need a PCI (not PCIe) root bus")
                continue  # reserved with the rest of the PIIX3 below
            self.reserve(dev, addr, self.flags(dev) or Conn.PCI_DEVICE)

    # -- the chipset's own slots --------------------------------------------------------
    def chipset(self) -> None:
        if self.i440fx:
            self.piix3()
        elif self.q35:
            self.ich9()

    def piix3(self) -> None:
        """PIIX3 at slot 1: ISA bridge 1.0, IDE 1.1, USB 1.2, ACPI 1.3; the primary
        video card at slot 2 (qemuDomainValidateDevicePCISlotsPIIX3)."""
        flags = Conn.AUTOASSIGN | Conn.PCI_DEVICE
        for ctrl in self.dom.devices.controllers:
            if ctrl.type == ControllerType.IDE and ctrl.index == 0:
                fn, what = 1, "the primary IDE controller"
            elif (ctrl.type == ControllerType.USB and ctrl.index == 0
                  and ctrl.model in (M.PIIX3_UHCI, None)):
                fn, what = 2, "the PIIX3 USB controller at index 0"
            else:
                continue
            if pci_present(ctrl):
                assert isinstance(ctrl.address, PCIAddress)
                if not _same(ctrl.address, 0, 1, fn):
                    raise Problem(ctrl, f"{what} is built into the PIIX3: its PCI address "
                                        f"must be 0000:00:01.{fn}")
            else:
                ctrl.address = PCIAddress(slot=1, function=fn)
            self.reserve(ctrl, ctrl.address, flags)
        self.chipset_functions(1, (0, 3), flags, "PIIX3's ISA bridge and ACPI")
        self.primary_video(2, flags)

    def ich9(self) -> None:
        """ICH9 at slot 0x1f (LPC 1f.0, SATA 1f.2, SMBus 1f.3), USB2 at 1d/1a, the
        DMI-to-PCI bridge at 1e, HD audio at 1b, the primary video card at slot 1
        (qemuDomainValidateDevicePCISlotsQ35)."""
        flags = Conn.PCIE_DEVICE
        for ctrl in self.dom.devices.controllers:
            if ctrl.type == ControllerType.SATA and ctrl.index == 0:
                if pci_present(ctrl):
                    assert isinstance(ctrl.address, PCIAddress)
                    if not _same(ctrl.address, 0, 0x1F, 2):
                        raise Problem(ctrl, "the primary SATA controller is built into "
                                            "the ICH9: its PCI address must be "
                                            "0000:00:1f.2")
                else:
                    ctrl.address = PCIAddress(slot=0x1F, function=2)
            elif ctrl.model == M.ICH9_UHCI1 and ctrl.address is None:
                for slot in (0x1D, 0x1A):
                    if not self.set.in_use(0, slot):
                        addr = PCIAddress(slot=slot, function=0, multifunction=True)
                        self.reserve(ctrl, addr, flags)
                        ctrl.address = addr
                        break
            elif ctrl.model == M.DMI_TO_PCI_BRIDGE and ctrl.address is None:
                if not self.set.in_use(0, 0x1E):
                    addr = PCIAddress(slot=0x1E)
                    self.reserve(ctrl, addr, flags)
                    ctrl.address = addr
        self.chipset_functions(0x1F, (0, 3), flags, "ICH9's LPC bridge and SMBus")
        self.primary_video(1, flags)
        if not self.set.in_use(0, 0x1B):
            for sound in self.dom.devices.sounds:
                if str(sound.model) == "ich9" and pci_wanted(sound):
                    addr = PCIAddress(slot=0x1B)
                    self.reserve(sound, addr, flags)
                    sound.address = addr
                    break

    def chipset_functions(self, slot: int, functions: tuple[int, ...], flags: int,
                          what: str) -> None:
        """Functions of the root bus the chipset itself occupies."""
        for fn in functions:
            addr = PCIAddress(slot=slot, function=fn)
            try:
                self.set.reserve(addr, flags)
            except AddressError:
                taker = next(d for d in all_devices(self.dom)
                             if isinstance(d.address, PCIAddress)
                             and _same(d.address, 0, slot, fn))
                raise Problem(taker, f"PCI address {addr} is taken by {what} "
                                     f"(00:{slot:02x}.0 and .3)") from None

    def primary_video(self, slot: int, flags: int) -> None:
        """QEMU puts the first VGA card in the first free slot after the chipset's;
        libvirt writes that slot down (or the next free one)."""
        videos = self.dom.devices.videos
        if not videos or str(videos[0].model.type) in ("none", "ramfb"):
            return
        video = videos[0]
        if not pci_wanted(video):
            return
        addr = PCIAddress(slot=slot)
        try:
            self.set.validate(addr, flags, from_config=True)
        except AddressError as exc:
            raise Problem(video, str(exc)) from None
        if self.set.in_use(0, slot):
            self.place(video)
        else:
            self.reserve(video, addr, flags)
            video.address = addr

    # -- every other device ------------------------------------------------------------
    def devices(self) -> None:
        """qemuDomainAssignDevicePCISlots: PCI controllers first, then each kind of
        device in libvirt's order."""
        devs = self.dom.devices
        for ctrl in devs.controllers:
            if ctrl.type == ControllerType.PCI and not ctrl.is_pci_root and pci_wanted(ctrl):
                self.place(ctrl)
        self.place_all(devs.filesystems)
        self.place_all(n for n in devs.interfaces if str(n.type) != "hostdev")
        self.place_all(s for s in devs.sounds
                       if str(s.model) not in ("sb16", "pcspk", "usb"))
        for ctrl in devs.controllers:
            self.place_controller(ctrl)
        for disk in devs.disks:
            if str(disk.bus) != "virtio" or pci_present(disk):
                continue
            if not pci_wanted(disk):
                kind = disk.address.VARIANT if disk.address is not None else "none"
                raise Problem(disk, f"a virtio disk cannot have an address of type "
                                    f"'{kind}'")
            self.place(disk)
        self.place_all(h for h in devs.hostdevs
                       if str(h.mode) == "subsystem"
                       and str(h.type) in ("pci", "scsi_host", "mdev")
                       and not (h.address is not None and h.address.VARIANT == "unassigned"))
        if devs.memballoon_el is not None:
            self.place_all([devs.memballoon_el])
        self.place_all(devs.rngs)
        self.place_all(w for w in devs.watchdogs if str(w.model) == "i6300esb")
        self.place_all(v for v in devs.videos if str(v.model.type) not in ("none", "ramfb"))
        self.place_all(devs.shmems)
        self.place_all(i for i in devs.inputs if str(i.bus) == "virtio")
        self.place_all(devs.serials)
        self.place_all([d for d in (devs.iommu, devs.vsock) if d is not None])
        self.place_all(devs.memories)
        self.place_all(devs.panics)

    def place_all(self, devices) -> None:
        for dev in devices:
            if pci_wanted(dev) and self.flags(dev) != NO_FLAGS:
                self.place(dev)

    def place_controller(self, ctrl: Controller) -> None:
        """Device controllers (SCSI, USB, SATA, virtio-serial; not PCI, FDC, CCID or the
        built-in IDE); a USB2 family shares one slot, EHCI at function 7."""
        if (ctrl.type in (ControllerType.PCI, ControllerType.FDC, ControllerType.CCID)
                or (ctrl.type == ControllerType.USB and ctrl.model == M.NONE)
                or (ctrl.type == ControllerType.IDE and ctrl.index == 0)
                or ctrl.model == M.NCR53C90 or not pci_wanted(ctrl)
                or self.flags(ctrl) == NO_FLAGS):
            return
        if not ctrl.is_usb2:
            self.place(ctrl)
            return
        function, multi = USB2_FUNCTIONS[ctrl.model]  # type: ignore[index]
        sibling = next((c for c in self.dom.devices.controllers
                        if c.is_usb2 and c.index == ctrl.index and pci_present(c)), None)
        if sibling is not None:
            assert isinstance(sibling.address, PCIAddress)
            addr = PCIAddress(bus=sibling.address.bus, slot=sibling.address.slot,
                              function=function, multifunction=multi)
            self.reserve(ctrl, addr, self.flags(ctrl))
            ctrl.address = addr
            return
        addr = self.place(ctrl, function=function)
        if not self.dry_run:
            addr.multifunction = multi

    # -- the passes ----------------------------------------------------------------------
    def run(self) -> None:
        self.collect()
        self.chipset()
        if self.dry_run and self.pci_root and not self.set.fully_reserved():
            # A slot kept free for a future bridge (first pass only): a nearly full
            # root bus gets its pci-bridge now.
            try:
                self.set.reserve_next(Conn.AUTOASSIGN | Conn.PCI_DEVICE)
            except AddressError:
                pass
        self.devices()


def _is_piix3_function(ctrl: Controller) -> bool:
    a = ctrl.address
    if not isinstance(a, PCIAddress) or (a.domain, a.bus, a.slot) != (0, 0, 1):
        return False
    if ctrl.type == ControllerType.IDE and ctrl.index == 0 and a.function == 1:
        return True
    return (ctrl.type == ControllerType.USB and ctrl.index == 0
            and ctrl.model in (M.PIIX3_UHCI, None) and a.function == 2)


def assign_pci(dom: Domain, machine: MachineType, caps: Capabilities) -> None:
    """qemuDomainAssignPCIAddresses (raises Problem)."""
    ctrls = dom.devices.controllers
    max_index = max((c.index for c in ctrls if c.type == ControllerType.PCI), default=-1)
    nbuses = max_index + 1
    if nbuses > 0 and needs_dry_run(dom, machine, nbuses):
        first = PCIPass(dom, machine, caps, nbuses, dry_run=True)
        first.run()
        addrs = first.set
        if max_index <= 0 and len(addrs.buses) > max_index + 1 and first.pcie_root:
            # libvirt leaves one empty pcie-root-port for hotplug on a new q35 guest.
            try:
                addrs.reserve_next(Conn.PCIE_DEVICE | Conn.AUTOASSIGN)
            except AddressError as exc:
                raise Problem(ctrls[0], str(exc)) from None
        index = 1
        while index < len(addrs.buses):
            model = addrs.buses[index].model
            if find_controller(ctrls, ControllerType.PCI, index) is None:
                ctrl = Controller(type=ControllerType.PCI, index=index,
                                  model=ControllerModel(model.value))
                ctrls.append(ctrl)
                if model not in (P.PCI_ROOT, P.PCIE_ROOT):
                    first.place(ctrl)
            index += 1
        nbuses = len(addrs.buses)
    second = PCIPass(dom, machine, caps, nbuses, dry_run=False)
    second.run()
    set_all_multi(dom)
    controller_options(dom, caps)


#: Devices on pc's root bus below which the first pass cannot add a bridge: 30 free
#: slots (2-31) less the one it keeps for a bridge, with room to spare.
PC_ROOT_ROOM = 24


def needs_dry_run(dom: Domain, machine: MachineType, nbuses: int) -> bool:
    """Whether libvirt's first pass could add a PCI controller: not for a pc whose
    only bus is the root and whose devices fit it with room to spare (most guests; the
    second pass alone then places everything exactly as both would)."""
    if machine.family != "pc" or nbuses != 1:
        return True
    count = 0
    for dev in all_devices(dom):
        a = dev.address
        if isinstance(a, PCIAddress) and pci_present(dev):
            if a.bus != 0:
                return True
            count += 1
        elif pci_wanted(dev) and connect_flags(dev, PCI_FLAGS, PCI_FLAGS) != NO_FLAGS:
            count += 1
    return count > PC_ROOT_ROOM


def set_all_multi(dom: Domain) -> None:
    """multifunction='on' for function 0 of every slot with more functions in use
    (unless the XML says 'off')."""
    first: dict[tuple[int, int], PCIAddress] = {}
    others: set[tuple[int, int]] = set()
    for dev in all_devices(dom):
        a = dev.address
        if isinstance(a, PCIAddress) and a.domain == 0:
            if a.function == 0:
                first.setdefault((a.bus, a.slot), a)
            else:
                others.add((a.bus, a.slot))
    for slot in others:
        a = first.get(slot)
        if a is not None and a.multifunction is None:
            a.multifunction = True


def controller_options(dom: Domain, caps: Capabilities) -> None:
    """What libvirt fills in for each PCI controller once it is placed: the QEMU device
    (``<model name>``), chassis and port numbers, the bus number of an expander bus."""
    ctrls = dom.devices.controllers
    for ctrl in ctrls:
        model = ctrl.pci_model
        if model is None:
            continue
        if ctrl.model_name is None and model in MODEL_NAMES:
            name = MODEL_NAMES[model]
            if name == PCIModelName.PCIE_ROOT_PORT and not caps.has_device("pcie-root-port"):
                name = PCIModelName.IOH3420
            ctrl.model_name = ControllerModelName(name=name)
        addr = ctrl.address if isinstance(ctrl.address, PCIAddress) else PCIAddress()
        if model == P.PCI_BRIDGE:
            if ctrl.opts.chassisNr is None:
                ctrl.opts.chassisNr = ctrl.index
        elif model == P.PCIE_ROOT_PORT:
            if ctrl.opts.chassis is None:
                ctrl.opts.chassis = ctrl.index
            if ctrl.opts.port is None:
                ctrl.opts.port = (addr.slot << 3) + addr.function
        elif model == P.PCIE_SWITCH_DOWNSTREAM_PORT:
            if ctrl.opts.chassis is None:
                ctrl.opts.chassis = ctrl.index
            if ctrl.opts.port is None:
                ctrl.opts.port = addr.slot
        elif model in (P.PCI_EXPANDER_BUS, P.PCIE_EXPANDER_BUS):
            if ctrl.opts.busNr is None:
                lowest = min((c.target.busNr for c in ctrls
                              if c.type == ControllerType.PCI and c.target is not None
                              and c.target.busNr is not None), default=256)
                if lowest <= 2:
                    raise Problem(ctrl, "no bus number below the lowest one in use is "
                                        "free for this expander bus: set <target busNr>")
                ctrl.opts.busNr = lowest - 2
        if model == P.PCI_BRIDGE and ctrl.index <= addr.bus:
            if ctrl.index == addr.bus:  # no other bus took it: it went into its own
                raise Problem(ctrl, "no PCI slot can take this pci-bridge (on q35 it needs "
                                    "a dmi-to-pci-bridge or a pcie-to-pci-bridge)")
            raise Problem(ctrl, f"a pci-bridge at index {ctrl.index} sits on bus "
                                f"{addr.bus}: its index must be larger than its bus")


# --------------------------------------------------------------------------- virtio-serial
def assign_virtio_serial(dom: Domain) -> None:
    """Ports on the virtio-serial controllers (qemuDomainAssignVirtioSerialAddresses):
    virtio consoles may take port 0 (and keep no address: QEMU numbers them), channels
    start at port 1; a controller is added when all are full."""
    devs = dom.devices
    ports: dict[int, set[int]] = {}
    sizes: dict[int, int] = {}
    for ctrl in devs.controllers:
        if ctrl.type == ControllerType.VIRTIO_SERIAL:
            ports[ctrl.index] = set()
            sizes[ctrl.index] = ctrl.ports if ctrl.ports is not None else VIRTIO_SERIAL_PORTS
    for dev in all_devices(dom):
        a = dev.address
        if isinstance(a, VirtioSerialAddress) and a.port:
            if a.controller not in ports:
                raise Problem(dev, f"virtio-serial controller {a.controller} is missing")
            if a.port >= sizes[a.controller]:
                raise Problem(dev, f"virtio-serial controller {a.controller} has no port "
                                   f"{a.port}")
            if a.port in ports[a.controller]:
                raise Problem(dev, f"virtio-serial port {a.port} on controller "
                                   f"{a.controller} is already taken")
            ports[a.controller].add(a.port)

    def take(dev: Device, allow_zero: bool) -> VirtioSerialAddress:
        a = dev.address
        if isinstance(a, VirtioSerialAddress):  # a controller but no port: its next one
            used = ports.get(a.controller)
            if used is None:
                raise Problem(dev, f"virtio-serial controller {a.controller} is missing")
            free = next((p for p in range(1, sizes[a.controller]) if p not in used), None)
            if free is None:
                raise Problem(dev, f"no free port on virtio-serial controller "
                                   f"{a.controller}")
            used.add(free)
            return VirtioSerialAddress(controller=a.controller, bus=0, port=free)
        start = 0 if allow_zero else 1
        for index in sorted(ports):
            free = next((p for p in range(start, sizes[index]) if p not in ports[index]),
                        None)
            if free is not None:
                ports[index].add(free)
                return VirtioSerialAddress(controller=index, bus=0, port=free)
        index = 0
        while index in ports:
            index += 1
        devs.controllers.append(Controller(type=ControllerType.VIRTIO_SERIAL, index=index))
        ports[index], sizes[index] = {start}, VIRTIO_SERIAL_PORTS
        return VirtioSerialAddress(controller=index, bus=0, port=start)

    for console in devs.consoles:
        if str(console.target_type) == "virtio" and not _serial_complete(console):
            take(console, allow_zero=True)  # reserved, not written (libvirt's way)
    for chan in devs.channels:
        if str(chan.target.type) == "virtio" and not _serial_complete(chan):
            chan.address = take(chan, allow_zero=False)


def _serial_complete(dev: Device) -> bool:
    return isinstance(dev.address, VirtioSerialAddress) and bool(dev.address.port)


# --------------------------------------------------------------------------- all of it
def assign_addresses(dom: Domain, machine: MachineType, caps: Capabilities) -> None:
    """Addresses for every device (libvirt's qemuDomainAssignAddresses, after its
    post-parse placed the drives), then libvirt's ids.  Raises every problem found."""
    if dom.devices.disks:
        from qemuwrap.conf.devices.disk import assign_drive_addresses

        assign_drive_addresses(dom)
    problems: list = []
    try:
        assign_virtio_serial(dom)
        assign_pci(dom, machine, caps)
    except Problem as exc:
        problems.append(refusal(exc.dev, str(exc)))
    if not problems:
        problems += [refusal(dev, message) for dev, message in assign_usb(dom)]
    if problems:
        raise Problems.of(problems)
    assign_aliases(dom)

