"""The PCI buses of a guest and which slots and functions are taken (libvirt's
virDomainPCIAddressSet, domain_addr.c).

Each bus says what may plug into it (connect flags: a conventional PCI device, a PCIe
device, a root port, a bridge, ...) and which slots it has; each device says what it is.
Free slots are found the way libvirt finds them (lowest bus, lowest slot; root ports
share a slot, one per function), and a dry run adds the buses it runs out of (a
pcie-root-port for a PCIe device, a pci-bridge, or on a pure PCIe machine a
pcie-root-port with a pcie-to-pci-bridge, for a conventional one), which is how libvirt
decides which controllers to add.
"""

from __future__ import annotations

from qemuwrap.conf.devices.address import PCIAddress
from qemuwrap.conf.devices.controller import PCIModel
from qemuwrap.record import Factory, Record


class Conn:
    """virDomainPCIConnectFlags: what a device is, or what a bus accepts (plain int bits:
    an IntFlag's operators cost more than the rest of a placement)."""

    HOTPLUGGABLE = 1 << 0
    AUTOASSIGN = 1 << 1
    AGGREGATE_SLOT = 1 << 2  # root ports: several in one slot, one per function
    INTEGRATED = 1 << 3  # must sit on the root bus (pvpanic, virtio-iommu)
    PCI_DEVICE = 1 << 4
    PCIE_DEVICE = 1 << 5
    PCIE_ROOT_PORT = 1 << 6
    PCIE_SWITCH_UPSTREAM_PORT = 1 << 7
    PCIE_SWITCH_DOWNSTREAM_PORT = 1 << 8
    DMI_TO_PCI_BRIDGE = 1 << 9
    PCIE_EXPANDER_BUS = 1 << 10
    PCI_EXPANDER_BUS = 1 << 11
    PCIE_TO_PCI_BRIDGE = 1 << 12
    PCI_BRIDGE = 1 << 13


TYPES_MASK = (Conn.PCI_DEVICE | Conn.PCIE_DEVICE | Conn.PCIE_ROOT_PORT
              | Conn.PCIE_SWITCH_UPSTREAM_PORT | Conn.PCIE_SWITCH_DOWNSTREAM_PORT
              | Conn.DMI_TO_PCI_BRIDGE | Conn.PCIE_EXPANDER_BUS | Conn.PCI_EXPANDER_BUS
              | Conn.PCIE_TO_PCI_BRIDGE | Conn.PCI_BRIDGE)
ENDPOINTS = Conn.PCI_DEVICE | Conn.PCIE_DEVICE
SLOT_LAST = 31
NO_FLAGS = 0

P = PCIModel
A, HP = Conn.AUTOASSIGN, Conn.HOTPLUGGABLE
#: virDomainPCIAddressBusSetModel: what each bus accepts downstream (before hotplug),
#: and its slot range.
BUS_RULES: dict[PCIModel, tuple[int, int, int]] = {
    P.PCI_ROOT: (A | Conn.PCI_DEVICE | Conn.PCI_BRIDGE | Conn.PCI_EXPANDER_BUS | HP, 1, 31),
    P.PCI_BRIDGE: (A | Conn.PCI_DEVICE | Conn.PCI_BRIDGE | HP, 1, 31),
    P.PCI_EXPANDER_BUS: (A | Conn.PCI_DEVICE | Conn.PCI_BRIDGE | HP, 0, 31),
    P.PCIE_ROOT: (Conn.PCIE_DEVICE | Conn.PCIE_ROOT_PORT | Conn.DMI_TO_PCI_BRIDGE
                  | Conn.PCIE_EXPANDER_BUS, 1, 31),
    P.DMI_TO_PCI_BRIDGE: (Conn.PCI_DEVICE | Conn.PCI_BRIDGE, 0, 31),
    P.PCIE_TO_PCI_BRIDGE: (A | Conn.PCI_DEVICE | Conn.PCI_BRIDGE | HP, 1, 31),
    P.PCIE_ROOT_PORT: (A | Conn.PCIE_DEVICE | Conn.PCIE_SWITCH_UPSTREAM_PORT
                       | Conn.PCIE_TO_PCI_BRIDGE | HP, 0, 0),
    P.PCIE_SWITCH_DOWNSTREAM_PORT: (A | Conn.PCIE_DEVICE | Conn.PCIE_SWITCH_UPSTREAM_PORT
                                    | Conn.PCIE_TO_PCI_BRIDGE | HP, 0, 0),
    P.PCIE_SWITCH_UPSTREAM_PORT: (Conn.PCIE_SWITCH_DOWNSTREAM_PORT, 0, 31),
    P.PCIE_EXPANDER_BUS: (Conn.PCIE_ROOT_PORT | Conn.DMI_TO_PCI_BRIDGE, 0, 31),
}
#: virDomainPCIControllerModelToConnectType: what a PCI controller is, upstream.
CONTROLLER_CONNECT: dict[PCIModel, int] = {
    P.PCI_ROOT: NO_FLAGS, P.PCIE_ROOT: NO_FLAGS,
    P.PCI_BRIDGE: Conn.PCI_BRIDGE,
    P.PCI_EXPANDER_BUS: Conn.PCI_EXPANDER_BUS,
    P.PCIE_EXPANDER_BUS: Conn.PCIE_EXPANDER_BUS,
    P.DMI_TO_PCI_BRIDGE: Conn.DMI_TO_PCI_BRIDGE,
    P.PCIE_TO_PCI_BRIDGE: Conn.PCIE_TO_PCI_BRIDGE,
    P.PCIE_ROOT_PORT: Conn.PCIE_ROOT_PORT | Conn.AGGREGATE_SLOT,
    P.PCIE_SWITCH_UPSTREAM_PORT: Conn.PCIE_SWITCH_UPSTREAM_PORT,
    P.PCIE_SWITCH_DOWNSTREAM_PORT: Conn.PCIE_SWITCH_DOWNSTREAM_PORT,
}
#: How a refusal names what a device needs (virDomainPCIAddressFlagsCompatible).
_NEEDS = ((Conn.PCI_DEVICE, "standard PCI device"), (Conn.PCIE_DEVICE, "PCI Express device"),
          (Conn.PCIE_ROOT_PORT, "pcie-root-port"),
          (Conn.PCIE_SWITCH_UPSTREAM_PORT, "pcie-switch-upstream-port"),
          (Conn.PCIE_SWITCH_DOWNSTREAM_PORT, "pcie-switch-downstream-port"),
          (Conn.DMI_TO_PCI_BRIDGE, "dmi-to-pci-bridge"),
          (Conn.PCIE_TO_PCI_BRIDGE, "pcie-to-pci-bridge"),
          (Conn.PCI_EXPANDER_BUS, "pci-expander-bus"),
          (Conn.PCIE_EXPANDER_BUS, "pcie-expander-bus"), (Conn.PCI_BRIDGE, "pci-bridge"))


class AddressError(Exception):
    """An address that cannot be had; the text is the reason (one line)."""


def _slots_free() -> list[int]:
    return [0] * (SLOT_LAST + 1)


def _slots_whole() -> list[bool]:
    return [False] * (SLOT_LAST + 1)


class Bus(Record):
    """One PCI bus: what plugs into it, its slots, and each slot's used functions."""

    model: PCIModel
    flags: int
    min_slot: int
    max_slot: int
    functions: list[int] = Factory(_slots_free)
    aggregate: list[bool] = Factory(_slots_whole)

    @classmethod
    def of(cls, model: PCIModel, hotplug: bool = True) -> Bus:
        flags, low, high = BUS_RULES[model]
        if not hotplug:
            flags &= ~Conn.HOTPLUGGABLE
        return cls(model, flags, low, high)

    def empty(self) -> bool:
        return not any(self.functions[self.min_slot:self.max_slot + 1])

    def full(self) -> bool:
        return all(self.functions[self.min_slot:self.max_slot + 1])


def _fmt(bus: int, slot: int, function: int) -> str:
    return f"0000:{bus:02x}:{slot:02x}.{function}"


def compatible(bus_flags: int, dev_flags: int, bus: int, from_config: bool) -> str | None:
    """Why a device of ``dev_flags`` cannot plug into a bus of ``bus_flags`` (None if
    it can); an address from the XML may put a PCI device in a PCIe slot and back."""
    if dev_flags & Conn.INTEGRATED:
        if bus != 0:
            return "needs to be an integrated device (bus=0)"
        bus_flags |= Conn.AUTOASSIGN
    if from_config:
        if bus_flags & ENDPOINTS:
            bus_flags |= ENDPOINTS
        if dev_flags & Conn.PCI_BRIDGE:
            dev_flags |= Conn.PCI_DEVICE
    elif dev_flags & Conn.AUTOASSIGN and not bus_flags & Conn.AUTOASSIGN:
        return f"was auto-assigned, but the PCI controller with index='{bus}' doesn't " \
               "allow auto-assignment"
    if dev_flags & Conn.HOTPLUGGABLE and not bus_flags & Conn.HOTPLUGGABLE:
        return f"requires hotplug, but the PCI controller with index='{bus}' doesn't " \
               "support hotplug"
    if not dev_flags & bus_flags & TYPES_MASK:
        needs = next((name for flag, name in _NEEDS if dev_flags & flag), "PCI slot")
        return f"cannot be plugged into the PCI controller with index='{bus}' (it needs " \
               f"a controller that accepts a {needs})"
    return None


class PCIAddressSet:
    """The buses of one assignment pass.  ``dry_run``: addresses are not written to
    devices and buses are added where a device finds no slot (libvirt's first pass)."""

    def __init__(self, buses: list[Bus], dry_run: bool, pcie_to_pci_bridge: bool = True):
        self.buses = buses
        self.dry_run = dry_run
        self.pcie_to_pci_bridge = pcie_to_pci_bridge

    # -- checking and taking one address --------------------------------------------------
    def validate(self, addr: PCIAddress, flags: int, from_config: bool) -> None:
        if (addr.domain == 0 and addr.bus < len(self.buses)
                and self.buses[addr.bus].min_slot <= addr.slot <= self.buses[addr.bus].max_slot
                and compatible(self.buses[addr.bus].flags, flags, addr.bus,
                               from_config) is None):
            return  # the common case, without building a message
        where = _fmt(addr.bus, addr.slot, addr.function)
        if addr.domain != 0:
            raise AddressError(f"PCI address {where}: only PCI domain 0 is available")
        if addr.bus >= len(self.buses):
            raise AddressError(f"PCI address {where}: there is no PCI bus {addr.bus} (only "
                               f"buses up to {len(self.buses) - 1})")
        bus = self.buses[addr.bus]
        reason = compatible(bus.flags, flags, addr.bus, from_config)
        if reason is not None:
            raise AddressError(f"the device at PCI address {where} {reason}")
        if addr.slot < bus.min_slot:
            raise AddressError(f"PCI address {where}: slot must be >= {bus.min_slot} on a "
                               f"{bus.model}")
        if addr.slot > bus.max_slot:
            raise AddressError(f"PCI address {where}: slot must be <= {bus.max_slot} on a "
                               f"{bus.model}")

    def reserve(self, addr: PCIAddress, flags: int, from_config: bool = True) -> None:
        """Take ``addr`` (virDomainPCIAddressReserveAddr)."""
        if self.dry_run:
            self.grow(addr, flags)
        self.validate(addr, flags, from_config)
        bus = self.buses[addr.bus]
        if bus.functions[addr.slot] & (1 << addr.function):
            raise AddressError(f"PCI address {_fmt(addr.bus, addr.slot, addr.function)} is "
                               "already in use")
        if not bus.functions[addr.slot] and flags & Conn.AGGREGATE_SLOT:
            bus.aggregate[addr.slot] = True
        bus.functions[addr.slot] |= 1 << addr.function

    def in_use(self, bus: int, slot: int) -> bool:
        return bool(self.buses[bus].functions[slot])

    def fully_reserved(self) -> bool:
        return all(b.full() for b in self.buses)

    # -- finding a free one -------------------------------------------------------------
    def _free_on_bus(self, index: int, flags: int, function: int) -> PCIAddress | None:
        bus = self.buses[index]
        if compatible(bus.flags, flags, index, False) is not None:
            return None
        fn = max(function, 0)
        for slot in range(bus.min_slot, bus.max_slot + 1):
            used = bus.functions[slot]
            if not used:
                return PCIAddress(bus=index, slot=slot, function=fn)
            if flags & Conn.AGGREGATE_SLOT and bus.aggregate[slot]:
                if not used & (1 << fn):
                    return PCIAddress(bus=index, slot=slot, function=fn)
                if function == -1:
                    for other in range(fn, 8):
                        if not used & (1 << other):
                            return PCIAddress(bus=index, slot=slot, function=other)
        return None

    def next_free(self, flags: int, function: int = -1) -> PCIAddress:
        """The first free slot (or root-port function) a device of ``flags`` fits
        (virDomainPCIAddressGetNextAddr); a dry run adds a bus when there is none."""
        for index in range(len(self.buses)):
            found = self._free_on_bus(index, flags, function)
            if found is not None:
                return found
        if not self.dry_run:
            raise AddressError("no free PCI slot is left")
        addr = PCIAddress(bus=len(self.buses), slot=0, function=max(function, 0))
        self.grow(addr, flags)
        addr.slot = self.buses[addr.bus].min_slot
        return addr

    def reserve_next(self, flags: int, function: int = -1) -> PCIAddress:
        """Find and take the next free address (virDomainPCIAddressReserveNextAddr)."""
        addr = self.next_free(flags, function)
        self.reserve(addr, flags, from_config=False)
        return addr

    # -- adding buses (dry run) ------------------------------------------------------
    def grow(self, addr: PCIAddress, flags: int) -> None:
        """Add the buses up to ``addr.bus`` that a device of ``flags`` needs
        (virDomainPCIAddressSetGrow); may move ``addr`` one bus on, past the root port
        a pure PCIe machine needs for its first pcie-to-pci-bridge."""
        add = addr.bus - len(self.buses) + 1
        if add <= 0:
            return
        need_bridge = False
        if flags & Conn.PCI_DEVICE:
            model = P.PCI_BRIDGE
            need_bridge = not any(b.flags & Conn.PCI_BRIDGE for b in self.buses)
            if need_bridge and add == 1:
                add += 1
                addr.bus += 1
        elif flags & (Conn.PCIE_DEVICE | Conn.PCIE_SWITCH_UPSTREAM_PORT):
            model = P.PCIE_ROOT_PORT
        else:
            what = next((m for m, f in CONTROLLER_CONNECT.items()
                         if f and flags & f & TYPES_MASK), None)
            if what is not None:
                raise AddressError(f"a PCI slot is needed to connect a PCI controller "
                                   f"model='{what}', but none is available, and it cannot "
                                   "be automatically added")
            raise AddressError("no PCI bus can take this device, and none can be added "
                               "for it")
        new: list[Bus] = []
        if need_bridge and self.pcie_to_pci_bridge:
            port = Bus.of(P.PCIE_ROOT_PORT)
            port.flags = Conn.PCIE_TO_PCI_BRIDGE  # only the bridge goes there
            new += [port, Bus.of(P.PCIE_TO_PCI_BRIDGE)]
        elif need_bridge:
            new.append(Bus.of(P.DMI_TO_PCI_BRIDGE, hotplug=False))
        while len(new) < add:
            new.append(Bus.of(model))
        self.buses.extend(new)
