"""Address assignment and libvirt's implicit devices, rule by rule (no QEMU): PCI bus
rules and slot search (qemu/pciaddr.py), the passes and chipset slots
(qemu/address.py), USB ports and hubs (qemu/usbaddr.py), virtio-serial ports, controller
indexes and order (conf/devices/controller.py), defaults (qemu/defaults.py) and aliases.
The golden cases in data/xml2argv show whole machines; these pin each rule down."""

from __future__ import annotations

import pytest

from qemuwrap.conf import guid
from qemuwrap.conf.devices.address import PCIAddress, USBAddress, VirtioSerialAddress
from qemuwrap.conf.devices.controller import (
    Controller,
    ControllerModel,
    ControllerType,
    PCIModel,
    complete_controllers,
)
from qemuwrap.conf.domain import loads
from qemuwrap.errors import QemuwrapError
from qemuwrap.qemu.capabilities import Capabilities
from qemuwrap.qemu.command import build_command
from qemuwrap.qemu.pciaddr import AddressError, Bus, Conn, PCIAddressSet, compatible
from qemuwrap.qemu.pciconnect import PCI_FLAGS, PCIE_FLAGS
from qemuwrap.qemu.usbaddr import HubPorts

from conftest import DEFAULT_CAPS, XML2ARGV

M = ControllerModel
CAPS = Capabilities.from_file(DEFAULT_CAPS)


def machine(devices: str = "", machine: str = "pc", caps: Capabilities = CAPS):
    """The domain after build_command: defaults added, every address assigned."""
    xml = (f"<domain type='qemu'><name>t</name><memory unit='MiB'>256</memory>"
           f"<os><type arch='x86_64' machine='{machine}'>hvm</type></os>"
           f"<devices>{devices}</devices></domain>")
    dom = loads(xml, random=guid.counting_random)
    cmd = build_command(dom, caps, "/run/qemuwrap/t")
    return dom, cmd


def placed(devices: str = "", machine: str = "pc"):
    """The domain after defaults and address assignment only (no validation, no
    builders): placement of devices whose builders other areas write."""
    from qemuwrap.qemu.address import assign_addresses
    from qemuwrap.qemu.defaults import add_implicit_devices
    from qemuwrap.qemu.validate import resolve_machine

    xml = (f"<domain type='qemu'><name>t</name><memory unit='MiB'>256</memory>"
           f"<os><type arch='x86_64' machine='{machine}'>hvm</type></os>"
           f"<devices>{devices}</devices></domain>")
    dom = loads(xml, random=guid.counting_random)
    kind, _ = resolve_machine(dom, CAPS)
    add_implicit_devices(dom, kind, CAPS)
    assign_addresses(dom, kind, CAPS)
    return dom


def without(*names: str) -> Capabilities:
    """The shipped capabilities without some devices."""
    fields = {k: v for k, v in CAPS.__dict__.items() if not k.startswith("_")}
    fields["devices"] = frozenset(CAPS.devices - set(names))
    return Capabilities(**fields)


def pci(dev) -> str:
    a = dev.address
    assert isinstance(a, PCIAddress), dev
    return f"{a.bus:02x}:{a.slot:02x}.{a.function}"


def refusal(devices: str, machine_type: str = "pc") -> str:
    with pytest.raises(QemuwrapError) as exc:
        machine(devices, machine_type)
    return str(exc.value)


# --------------------------------------------------------------------------- PCI buses
def test_pcie_root_takes_no_endpoint_by_itself():
    """pcie-root accepts PCIe devices only where the XML puts them (no auto-assign)."""
    root = Bus.of(PCIModel.PCIE_ROOT)
    assert compatible(root.flags, PCIE_FLAGS, 0, from_config=False) is not None
    assert compatible(root.flags, PCIE_FLAGS, 0, from_config=True) is None
    assert compatible(root.flags, Conn.PCIE_ROOT_PORT | Conn.AGGREGATE_SLOT, 0, False) is None
    # an integrated device (virtio-iommu) may be auto-placed on the root only
    assert compatible(root.flags, PCIE_FLAGS | Conn.INTEGRATED, 0, False) is None
    assert "integrated" in compatible(Bus.of(PCIModel.PCI_BRIDGE).flags,
                                      PCI_FLAGS | Conn.INTEGRATED, 1, False)


def test_an_address_from_the_xml_may_cross_pci_and_pcie():
    port = Bus.of(PCIModel.PCIE_ROOT_PORT)
    assert compatible(port.flags, PCI_FLAGS, 1, from_config=False) is not None
    assert compatible(port.flags, PCI_FLAGS, 1, from_config=True) is None


def test_root_ports_share_a_slot_one_per_function():
    addrs = PCIAddressSet([Bus.of(PCIModel.PCIE_ROOT)], dry_run=False)
    port = Conn.PCIE_ROOT_PORT | Conn.AGGREGATE_SLOT
    got = [addrs.reserve_next(port) for _ in range(9)]
    assert [(a.slot, a.function) for a in got] == [(1, f) for f in range(8)] + [(2, 0)]
    # an endpoint never joins an aggregated slot
    addrs.buses.append(Bus.of(PCIModel.PCIE_ROOT_PORT))
    assert (addrs.reserve_next(PCIE_FLAGS).bus, addrs.in_use(0, 3)) == (1, False)


def test_a_dry_run_adds_the_bus_a_device_needs():
    addrs = PCIAddressSet([Bus.of(PCIModel.PCIE_ROOT)], dry_run=True)
    assert addrs.reserve_next(PCIE_FLAGS) == PCIAddress(bus=1, slot=0)
    assert addrs.buses[1].model == PCIModel.PCIE_ROOT_PORT
    # a conventional PCI device on a pure PCIe machine: a root port only the
    # pcie-to-pci-bridge may use, and the bridge, whose first slot is 1
    assert addrs.reserve_next(PCI_FLAGS) == PCIAddress(bus=3, slot=1)
    assert [b.model for b in addrs.buses[2:]] == [PCIModel.PCIE_ROOT_PORT,
                                                   PCIModel.PCIE_TO_PCI_BRIDGE]
    assert addrs.buses[2].flags == Conn.PCIE_TO_PCI_BRIDGE
    # the next conventional device shares the bridge; a new pci-bridge only when full
    assert addrs.reserve_next(PCI_FLAGS) == PCIAddress(bus=3, slot=2)


def test_a_real_pass_adds_nothing():
    addrs = PCIAddressSet([Bus.of(PCIModel.PCIE_ROOT)], dry_run=False)
    with pytest.raises(AddressError, match="no free PCI slot"):
        addrs.reserve_next(PCIE_FLAGS)


def test_double_use_and_slot_ranges():
    addrs = PCIAddressSet([Bus.of(PCIModel.PCI_ROOT), Bus.of(PCIModel.PCIE_ROOT_PORT)],
                          dry_run=False)
    addrs.reserve(PCIAddress(slot=5), PCI_FLAGS)
    with pytest.raises(AddressError, match="0000:00:05.0 is already in use"):
        addrs.reserve(PCIAddress(slot=5), PCI_FLAGS)
    with pytest.raises(AddressError, match="slot must be <= 0"):
        addrs.reserve(PCIAddress(bus=1, slot=1), PCIE_FLAGS)
    with pytest.raises(AddressError, match="there is no PCI bus 2"):
        addrs.reserve(PCIAddress(bus=2, slot=1), PCI_FLAGS)


# --------------------------------------------------------------------------- machines
def test_pc_chipset_slots_and_primary_video():
    dom, _ = machine("<graphics type='vnc'/><controller type='ide'/>")
    devs = dom.devices
    ide = next(c for c in devs.controllers if c.type == ControllerType.IDE)
    usb = next(c for c in devs.controllers if c.type == ControllerType.USB)
    assert (pci(ide), pci(usb), pci(devs.videos[0])) == ("00:01.1", "00:01.2", "00:02.0")
    assert usb.model == M.PIIX3_UHCI
    assert pci(devs.memballoon) == "00:03.0"


def test_q35_chipset_slots():
    dom = placed("<sound model='ich9'/><controller type='usb' model='ich9-ehci1'/>"
                 "<controller type='usb' model='ich9-uhci1'/>"
                 "<controller type='pci' index='1' model='dmi-to-pci-bridge'/>", "q35")
    by_model = {c.model: c for c in dom.devices.controllers}
    assert pci(by_model[M.ICH9_UHCI1]) == "00:1d.0"
    assert pci(by_model[M.ICH9_EHCI1]) == "00:1d.7"
    assert by_model[M.ICH9_UHCI1].address.multifunction is True
    assert pci(by_model[M.DMI_TO_PCI_BRIDGE]) == "00:1e.0"
    sata = next(c for c in dom.devices.controllers if c.type == ControllerType.SATA)
    assert pci(sata) == "00:1f.2" and sata.alias_name == "ide"
    assert pci(dom.devices.sounds[0]) == "00:1b.0"


def test_q35_default_devices_get_root_ports_and_a_spare():
    dom, _ = machine(machine="q35")
    ports = [c for c in dom.devices.controllers if c.model == M.PCIE_ROOT_PORT]
    assert [(pci(p), p.target.chassis, p.target.port) for p in ports] == [
        ("00:01.0", 1, 8), ("00:01.1", 2, 9), ("00:01.2", 3, 10)]
    assert ports[0].address.multifunction is True
    assert [p.model_name.name for p in ports] == ["pcie-root-port"] * 3
    xhci = next(c for c in dom.devices.controllers if c.type == ControllerType.USB)
    assert (xhci.model, pci(xhci), pci(dom.devices.memballoon)) == (
        M.QEMU_XHCI, "01:00.0", "02:00.0")


def test_q35_without_qemu_xhci_falls_back_like_libvirt():
    """nec-xhci, then ich9-ehci1 with its three UHCI companions (one slot)."""
    dom, _ = machine(machine="q35", caps=without("qemu-xhci"))
    usb = [c for c in dom.devices.controllers if c.type == ControllerType.USB]
    assert [c.model for c in usb] == [M.NEC_XHCI]
    dom, _ = machine(machine="q35", caps=without("qemu-xhci", "nec-usb-xhci"))
    usb = [c for c in dom.devices.controllers if c.type == ControllerType.USB]
    assert [(c.model, pci(c)) for c in usb] == [
        (M.ICH9_EHCI1, "00:1d.7"), (M.ICH9_UHCI1, "00:1d.0"), (M.ICH9_UHCI2, "00:1d.1"),
        (M.ICH9_UHCI3, "00:1d.2")]


def test_pc_adds_a_pci_bridge_before_the_root_bus_is_full():
    """The first pass keeps one root slot free for a bridge: 29 e1000s fill the root
    bus (slots 2-30) and the 30th goes behind pci-bridge 1, in slot 2 (the bridge is
    placed before the NICs and takes the first free slot)."""
    nics = "".join(f"<interface type='user'><mac address='52:54:00:00:00:{n:02x}'/>"
                   "<model type='e1000'/></interface>" for n in range(30))
    dom, _ = machine(nics)
    bridge = next(c for c in dom.devices.controllers if c.model == M.PCI_BRIDGE)
    assert (bridge.index, pci(bridge), bridge.target.chassisNr) == (1, "00:02.0", 1)
    assert pci(dom.devices.interfaces[28]) == "00:1f.0"
    assert pci(dom.devices.interfaces[29]) == "01:01.0"


def test_an_address_on_a_missing_bus_adds_bridges():
    dom, cmd = machine("<controller type='scsi' model='lsilogic'><address type='pci' "
                       "bus='0x02' slot='0x03'/></controller>")
    bridges = [c for c in dom.devices.controllers if c.model == M.PCI_BRIDGE]
    assert [(b.index, pci(b)) for b in bridges] == [(1, "00:02.0"), (2, "00:03.0")]
    assert "lsi,id=scsi0,bus=pci.2,addr=0x3" in cmd.argv


def test_multifunction_is_set_on_function_zero_unless_off():
    dom, _ = machine("<controller type='scsi' model='lsilogic'><address type='pci' "
                     "slot='0x05' function='0x1'/></controller>"
                     "<controller type='scsi' model='lsilogic'><address type='pci' "
                     "slot='0x05'/></controller>"
                     "<controller type='scsi' model='lsilogic'><address type='pci' "
                     "slot='0x06' multifunction='off'/></controller>"
                     "<controller type='scsi' model='lsilogic'><address type='pci' "
                     "slot='0x06' function='0x3'/></controller>")
    scsi = {c.index: c.address for c in dom.devices.controllers
            if c.type == ControllerType.SCSI}
    assert (scsi[1].multifunction, scsi[0].multifunction) == (True, None)
    assert scsi[2].multifunction is False


def test_transitional_virtio_needs_a_conventional_slot_on_q35():
    dom, _ = machine("<controller type='virtio-serial' model='virtio-transitional'/>"
                     "<controller type='virtio-serial' index='1'/>", "q35")
    serial = {c.index: c for c in dom.devices.controllers
              if c.type == ControllerType.VIRTIO_SERIAL}
    bus_of = {c.index: c.pci_model for c in dom.devices.controllers
              if c.type == ControllerType.PCI}
    assert bus_of[serial[0].address.bus] == PCIModel.PCIE_TO_PCI_BRIDGE
    assert bus_of[serial[1].address.bus] == PCIModel.PCIE_ROOT_PORT


def test_expander_bus_numbers_count_down_from_254():
    dom, _ = machine("<controller type='pci' index='1' model='pci-expander-bus'/>"
                     "<controller type='pci' index='2' model='pci-expander-bus'/>")
    pxb = [c for c in dom.devices.controllers if c.model == M.PCI_EXPANDER_BUS]
    assert [c.target.busNr for c in pxb] == [254, 252]


@pytest.mark.parametrize(("devices", "kind", "words"), [
    ("<controller type='scsi' model='lsilogic'><address type='pci' slot='0x01' "
     "function='0x3'/></controller>", "pc", "0000:00:01.3 is taken by PIIX3's"),
    ("<controller type='usb' model='qemu-xhci'><address type='pci' bus='0x00' "
     "slot='0x1f' function='0x0'/></controller>", "q35", "0000:00:1f.0 is taken by ICH9's"),
    ("<controller type='usb' model='piix3-uhci'><address type='pci' slot='0x05'/>"
     "</controller>", "pc", "its PCI address must be 0000:00:01.2"),
    ("<controller type='pci' index='1' model='pcie-root-port'/>", "pc",
     "a PCI slot is needed to connect a PCI controller model='pcie-root-port'"),
    ("<controller type='pci' index='1' model='pcie-root-port'><target chassis='3'/>"
     "</controller><controller type='pci' index='2' model='pci-expander-bus'/>", "q35",
     "pci-expander-bus controllers are only for pc"),
    ("<controller type='pci' index='1' model='pcie-root-port'><target hotplug='off'/>"
     "</controller><controller type='pci' index='2' model='pci-bridge'><target "
     "hotplug='off'/></controller>", "q35", "attribute 'hotplug' is for pcie-root-port"),
], ids=["piix3-ide-slot", "ich9-lpc-slot", "piix3-usb-elsewhere", "root-port-on-pc",
        "pxb-on-q35", "hotplug-on-bridge"])
def test_placement_refusals(devices, kind, words):
    message = refusal(devices, kind)
    assert words in message and "\n" not in message


# --------------------------------------------------------------------------- controllers
def _ctrl(kind: str, model: str | None = None, index: int = -1) -> Controller:
    return Controller(type=ControllerType(kind), model=M(model) if model else None,
                      index=index)


def test_indexes_like_libvirt_autoindex():
    """A companion joins the USB2 controller before it while its index lacks that
    model; anything else takes the first unused index of its type."""
    ctrls = [_ctrl("usb", m) for m in ("ich9-ehci1", "ich9-uhci1", "ich9-uhci2", "ich9-ehci1",
                                       "ich9-uhci1", "ich9-uhci1", "nec-xhci")]
    ctrls.insert(0, _ctrl("pci", "pcie-root"))
    ctrls.append(_ctrl("pci", "pcie-root-port"))
    assert complete_controllers(ctrls) == []
    assert [(str(c.model), c.index) for c in ctrls] == [
        ("pcie-root", 0), ("pcie-root-port", 1), ("ich9-ehci1", 0), ("ich9-uhci1", 0),
        ("ich9-uhci2", 0), ("ich9-ehci1", 1), ("ich9-uhci1", 1), ("ich9-uhci1", 2),
        ("nec-xhci", 3)]
    assert [c.master.startport for c in ctrls if c.master] == [0, 2, 0, 0]


def test_controllers_sorted_by_index_masters_first():
    ctrls = [_ctrl("usb", "ich9-uhci1", 1), _ctrl("usb", "ich9-ehci1", 1),
             _ctrl("usb", "ich9-ehci1", 0), _ctrl("sata", None, 0)]
    complete_controllers(ctrls)
    assert [(str(c.type), str(c.model), c.index) for c in ctrls] == [
        ("usb", "ich9-ehci1", 0), ("usb", "ich9-ehci1", 1), ("usb", "ich9-uhci1", 1),
        ("sata", "None", 0)]


def test_only_a_usb2_family_shares_an_index():
    ctrls = [_ctrl("usb", "ich9-ehci1", 0), _ctrl("usb", "ich9-uhci1", 0),
             _ctrl("usb", "piix3-uhci", 0)]
    errors = complete_controllers(ctrls)
    assert [str(e) for e in errors] == ["<controller>: controller type 'usb' index 0 is "
                                        "defined twice"]


def test_implicit_controllers_follow_the_definition():
    """Appended after the XML's (libvirt appends; only its parser sorts)."""
    dom, _ = machine("<controller type='virtio-serial'/><console type='pty'>"
                     "<target type='virtio'/></console><disk type='file' device='disk'>"
                     "<source file='/x.img'/><target dev='sdh' bus='sata'/></disk>")
    assert [(str(c.type), c.index) for c in dom.devices.controllers] == [
        ("virtio-serial", 0), ("usb", 0), ("pci", 0), ("sata", 0), ("sata", 1)]


# --------------------------------------------------------------------------- USB
def test_hubs_are_added_when_devices_outnumber_ports():
    """PIIX3 has 2 ports; each hub takes one and gives 8: 3 devices need 1 hub, 10 need
    2 (libvirt's count: ceil((devices - ports + 1) / 7))."""
    for count, hubs in ((2, 0), (3, 1), (8, 1), (9, 2)):
        dom, _ = machine("<input type='tablet' bus='usb'/>" * count)
        assert len(dom.devices.hubs) == hubs, count
    ports = [i.address.port for i in dom.devices.inputs if i.bus == "usb"]
    assert ports == [f"1.{n}" for n in range(1, 9)] + ["2.1"]
    assert [h.address.port for h in dom.devices.hubs] == ["1", "2"]


def test_free_ports_are_found_depth_first():
    hub = HubPorts(2, taken={1, 2}, hubs={1: HubPorts(8, taken=set(range(1, 9))),
                                          2: HubPorts(8, taken={1})})
    assert hub.find_free() == [2, 2]
    assert HubPorts(2, taken={1, 2}).find_free() is None


def test_usb_devices_refused_without_usb():
    message = refusal("<controller type='usb' model='none'/><hub type='usb'/>")
    assert "USB is disabled" in message


def test_ccid_controller_takes_a_usb_port():
    dom, cmd = machine("<input type='tablet' bus='usb'/><controller type='ccid'/>")
    ccid = next(c for c in dom.devices.controllers if c.type == ControllerType.CCID)
    assert isinstance(ccid.address, USBAddress) and ccid.address.port == "1"
    assert "usb-ccid,id=ccid0,bus=usb.0,port=1" in cmd.argv


# --------------------------------------------------------------------------- virtio-serial
def test_virtio_serial_ports():
    """Virtio consoles may take port 0 and keep no address; channels start at port 1;
    a full controller gets a new one after it."""
    from qemuwrap.conf.devices.chardev import Console, ConsoleTarget
    from qemuwrap.qemu.address import assign_virtio_serial

    dom, _ = machine("<controller type='virtio-serial' ports='2'/>")
    consoles = [Console(type="pty", target=ConsoleTarget(type="virtio", port=n))
                for n in range(3)]
    dom.devices.consoles.extend(consoles)
    assign_virtio_serial(dom)
    assert [c.address for c in consoles] == [None, None, None]
    serial = [c for c in dom.devices.controllers if c.type == ControllerType.VIRTIO_SERIAL]
    assert [c.index for c in serial] == [0, 1]


def test_channel_port_on_a_named_controller():
    from qemuwrap.conf.devices.chardev import Channel, ChannelTarget
    from qemuwrap.qemu.address import assign_virtio_serial

    dom, _ = machine("<controller type='virtio-serial' index='0'/>"
                     "<controller type='virtio-serial' index='3'/>")
    chan = Channel(type="pty", target=ChannelTarget(type="virtio", name="a"),
                   address=VirtioSerialAddress(controller=3))
    other = Channel(type="pty", target=ChannelTarget(type="virtio", name="b"))
    dom.devices.channels.extend([chan, other])
    assign_virtio_serial(dom)
    assert (chan.address.controller, chan.address.port) == (3, 1)
    assert (other.address.controller, other.address.port) == (0, 1)


# --------------------------------------------------------------------------- aliases
def test_aliases_user_ones_kept_others_libvirts():
    dom, cmd = machine("<controller type='usb' model='qemu-xhci'><alias name='ua-myusb'/>"
                       "</controller><controller type='scsi'><alias name='scsi9'/>"
                       "</controller><hub type='usb'/>", "q35")
    names = {c.type: c.alias_name for c in dom.devices.controllers}
    assert names[ControllerType.USB] == "ua-myusb"
    assert names[ControllerType.SCSI] == "scsi0"
    assert names[ControllerType.SATA] == "ide"
    assert "usb-hub,id=hub0,bus=ua-myusb.0,port=1" in cmd.argv


# --------------------------------------------------------------------------- live XML
GOLDEN = sorted(p.stem for p in XML2ARGV.glob("*.args")
                if not (XML2ARGV / f"{p.stem}.caps").exists())


@pytest.mark.parametrize("name", GOLDEN)
def test_live_definition_rebuilds_the_same_machine(name):
    """The completed model (implicit devices, addresses, ids) is what the state
    directory's domain.xml holds; read back, it gives the very same command, so a
    restore or an adopt sees the hardware the guest booted with."""
    from qemuwrap.conf.domain import load

    _data, dom = load(str(XML2ARGV / f"{name}.xml"), random=guid.counting_random)
    first = build_command(dom, CAPS, "/run/qemuwrap/t").argv
    again = loads(dom.format(), random=guid.counting_random)
    assert build_command(again, CAPS, "/run/qemuwrap/t").argv == first


def test_a_definition_matches_its_own_live_form_after_completion():
    """A restore compares the user's definition with the live one in the save file:
    completed (implicit devices, addresses) they are the same machine; a device added
    since moves what follows it and is refused."""
    from qemuwrap.conf.abi import ABIError, check_abi_stability
    from qemuwrap.qemu.command import complete_definition

    xml = (XML2ARGV / "q35-root-ports.xml").read_text()
    live = loads(xml, random=guid.counting_random)
    build_command(live, CAPS, "/run/qemuwrap/t")
    saved = loads(live.format(), random=guid.counting_random)
    again = loads(xml, random=guid.counting_random)
    complete_definition(again, CAPS)
    check_abi_stability(saved, again)
    grown = loads(xml.replace("<graphics", "<interface type='user'><mac address="
                              "'52:54:00:00:00:09'/></interface><graphics"),
                  random=guid.counting_random)
    complete_definition(grown, CAPS)
    with pytest.raises(ABIError):
        check_abi_stability(saved, grown)
