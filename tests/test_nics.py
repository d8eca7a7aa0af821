"""Network interfaces: libvirt's reading of ``<interface>``, the netdev and NIC options
built for each type, the refusals, and the NICs QEMU shows the guest."""

from __future__ import annotations

import re

import pytest
from goldenvm import build_checked, paused

from qemuwrap.conf import guid
from qemuwrap.conf.domain import loads
from qemuwrap.errors import QemuwrapError, XMLError
from qemuwrap.qemu.build.memballoon import balloon_qmp_after_start
from qemuwrap.qemu.build.net import qmp_after_start
from qemuwrap.qemu.capabilities import Capabilities

from conftest import DEFAULT_CAPS, needs_qemu

CAPS = Capabilities.from_file(DEFAULT_CAPS)
MAC = "<mac address='52:54:00:00:00:01'/>"


def dom(devices: str, kind: str = "qemu"):
    return loads(f"<domain type='{kind}'><name>n</name><memory unit='MiB'>64</memory><os>"
                 "<type arch='x86_64' machine='pc'>hvm</type></os><devices>"
                 f"{devices}</devices></domain>", random=guid.counting_random)


def command(devices: str, kind: str = "qemu"):
    return build_checked(dom(devices, kind), CAPS, "/run/qemuwrap/n")


def values(devices: str, option: str, kind: str = "qemu") -> list[str]:
    args = command(devices, kind).argv
    return [args[i + 1] for i, a in enumerate(args) if a == option]


def test_libvirts_model_names_in_any_case_and_its_default():
    d = dom("<interface type='user'><model type='ViRtIo'/></interface>"
            "<interface type='user'/><interface type='user'><model type='e1000-82545em'/>"
            "</interface>")
    names = [n.model_name for n in d.devices.interfaces]
    assert names == ["virtio", "rtl8139", "e1000-82545em"]  # rtl8139: libvirt's x86 default


@pytest.mark.parametrize(("devices", "message"), [
    ("<interface type='bridge'/>", "requires a <source> element"),
    ("<interface type='vhostuser'><source type='unix' path='/s' mode='listen'/>"
     "</interface>", "unsupported mode='listen'"),
    ("<interface type='udp'><source address='1.2.3.4' port='1'/></interface>",
     "needs <local address port>"),
    ("<interface type='user'><virtualport type='openvswitch'/></interface>",
     "not for interface type='user'"),
    ("<interface type='user'><target dev='t0' managed='no'/></interface>",
     "only for type='ethernet'"),
    ("<interface type='user'><mac address='01:00:00:00:00:01'/></interface>", "multicast"),
    ("<interface type='user'><model type='bad,model'/></interface>", "not a valid NIC model"),
])
def test_libvirts_parse_rules(devices, message):
    with pytest.raises(XMLError, match=message):
        dom(devices)


def test_generated_tap_names_are_chosen_again():
    d = dom("<interface type='ethernet'><target dev='vnet3'/></interface>")
    assert d.devices.interfaces[0].target is None


def test_tap_side_uses_the_network_companion_and_names_from_the_uuid():
    d = dom(f"<interface type='ethernet'>{MAC}<model type='virtio'/><driver queues='2'/>"
            "</interface><interface type='ethernet'><target dev='mytap'/></interface>")
    cmd = build_checked(d, CAPS, "/run/qemuwrap/n")
    netdevs = [a for a in cmd.args if a.option == "-netdev"]
    from qemuwrap.companions.network import guest_tap_name

    name = guest_tap_name(d.uuid_str, 0)
    assert re.fullmatch(r"qw[0-9a-f]{8}n0", name)
    assert netdevs[0].value == (f"tap,id=hostnet0,ifname={name},script=no,downscript=no,"
                                "queues=2")
    assert "named from the uuid" in netdevs[0].why
    assert netdevs[1].value == "tap,id=hostnet1,ifname=mytap,script=no,downscript=no"
    assert "named in <target dev>" in netdevs[1].why
    devices = [a.value for a in cmd.args if a.option == "-device"]
    assert any(d.startswith("virtio-net-pci,mq=on,vectors=6,netdev=hostnet0") for d in devices)


def test_vhost_net_only_under_kvm(monkeypatch):
    monkeypatch.setattr("qemuwrap.companions.network.vhost_available", lambda path: True)
    nic = f"<interface type='ethernet'>{MAC}<model type='virtio'/></interface>"
    assert "vhost=on" not in values(nic, "-netdev")[0]  # TCG: libvirt opens no vhost-net
    assert values(nic, "-netdev", "kvm")[0].endswith(",vhost=on")


def test_vdpa_and_vhostuser_client_when_the_host_has_them(tmp_path, monkeypatch):
    vdpa = tmp_path / "vhost-vdpa-0"
    vdpa.touch()
    sock = tmp_path / "vhost.sock"
    sock.touch()
    devs = (f"<interface type='vdpa'>{MAC}<source dev='{vdpa}'/><driver queues='2'/>"
            "</interface><interface type='vhostuser'><mac address='52:54:00:00:00:02'/>"
            f"<source type='unix' path='{sock}' mode='client'><reconnect enabled='yes' "
            "timeout='3'/></source><model type='virtio'/></interface>")
    assert values(devs, "-netdev") == [
        f"vhost-vdpa,vhostdev={vdpa},queues=2,id=hostnet0",
        "vhost-user,chardev=charnet1,id=hostnet1"]
    assert values(devs, "-chardev")[-1] == f"socket,id=charnet1,path={sock},reconnect=3"


@pytest.mark.parametrize(("devices", "message"), [
    ("<interface type='vdpa'><source dev='/dev/qemuwrap-none'/></interface>",
     "vDPA device /dev/qemuwrap-none does not exist"),
    ("<interface type='vhostuser'><source type='unix' path='/run/qemuwrap-none.sock' "
     "mode='client'/><model type='virtio'/></interface>", "does not exist (mode='client'"),
    ("<interface type='vhostuser'><source type='unix' path='/s' mode='server'/>"
     "<model type='e1000'/></interface>", "needs a virtio model"),
    ("<interface type='bridge'><source bridge='qwnosuchbr0'/></interface>",
     "bridge 'qwnosuchbr0' does not exist"),
    ("<interface type='ethernet'><target dev='qwnosuchtap' managed='no'/></interface>",
     "tap 'qwnosuchtap' (managed='no') does not exist"),
    ("<interface type='user'><driver queues='4'/><model type='virtio'/></interface>",
     "multiqueue is not supported"),
    ("<interface type='user'><model type='virtio'/><driver rx_queue_size='500'/>"
     "</interface>", "power of two"),
    ("<interface type='user'><model type='e1000'/><driver iommu='on'/></interface>",
     "only for virtio NICs"),
    ("<interface type='user'><model type='virtio'/><driver iommu='on'/></interface>",
     "needs a modern-only virtio device"),
    ("<interface type='mcast'><source address='10.0.0.1' port='5000'/></interface>",
     "not a multicast address"),
    ("<interface type='server'><source address='192.0.2.77' port='5000'/></interface>",
     "cannot listen on 192.0.2.77"),
    ("<interface type='user'><ip address='10.0.0.0' prefix='30'/></interface>",
     "range of 4-27"),
    ("<interface type='user'><portForward proto='tcp'><range start='22'/></portForward>"
     "</interface>", "needs <backend type='passt'>"),
    ("<interface type='user'><model type='lan9118'/></interface>",
     "not supported for x86 QEMU guests"),
    ("<interface type='network'><source network='golden'/><vlan><tag id='42'/></vlan>"
     "</interface>", "<vlan> is not supported"),
])
def test_refusals(devices, message):
    with pytest.raises(QemuwrapError, match=re.escape(message)):
        command(devices)


def test_link_down_and_balloon_stats_are_set_over_qmp_after_start():
    d = dom(f"<interface type='user'>{MAC}<link state='down'/></interface>"
            "<interface type='user'/><memballoon model='virtio'><stats period='5'/>"
            "</memballoon>")
    build_checked(d, CAPS, "/run/qemuwrap/n")  # assigns the ids
    assert qmp_after_start(d) == [("set_link", {"name": "net0", "up": False})]
    assert balloon_qmp_after_start(d) == [("qom-set", {
        "path": "/machine/peripheral/balloon0", "property": "guest-stats-polling-interval",
        "value": 5})]


#: (vendor, device) QEMU gives each NIC model (what the guest's driver binds to).
PCI_IDS = {"net0": (0x8086, 0x100E), "net1": (0x15AD, 0x07B0), "net2": (0x10EC, 0x8029),
           "net3": (0x1022, 0x2000), "net4": (0x8086, 0x1209), "net5": (0x1AF4, 0x1000),
           "net6": (0x1AF4, 0x1041), "net8": (0x8086, 0x100F)}


@needs_qemu
def test_qemu_shows_the_guest_each_model_with_its_mac(tmp_path, request):
    with paused("net-models", tmp_path, request) as guest:
        pci = guest.pci()
        for nic, ids in PCI_IDS.items():
            assert pci[nic] == ids, nic
        for nic in guest.dom.devices.interfaces:
            mac = guest.cmd("qom-get", path=f"/machine/peripheral/{nic.alias_name}",
                            property="mac")
            assert mac == nic.mac
        assert 'dev: usb-net, id "net7"' in guest.hmp("info qtree")


@needs_qemu
def test_qemu_takes_libvirts_link_state_and_user_network(tmp_path, request):
    with paused("net-user-options", tmp_path, request) as guest:
        # QEMU takes set_link for the NIC's id (it reports no link state to read back).
        for name, args in qmp_after_start(guest.dom):
            assert guest.cmd(name, **args) == {}
        network = guest.hmp("info network").replace("\r", "")
        assert ("net1: index=0,type=nic,model=rtl8139,macaddr=52:54:00:12:34:57\n"
                " \\ hostnet1: index=0,type=user,net=10.0.2.0,restrict=off\n") in network
        assert "hostnet0: index=0,type=user,net=172.17.2.0,restrict=off" in network
        assert guest.cmd("qom-get", path="/machine/peripheral/net0",
                         property="acpi-index") == 3


@needs_qemu
def test_qemu_takes_virtio_net_tuning(tmp_path, request):
    with paused("net-virtio-driver", tmp_path, request) as guest:
        def prop(name):
            return guest.cmd("qom-get", path="/machine/peripheral/net0", property=name)
        assert prop("rx_queue_size") == 512 and prop("tx_queue_size") == 256
        assert prop("tx") == "bh" and prop("packed") is True
        assert prop("guest_tso4") is False and prop("mrg_rxbuf") is False


def test_the_first_nic_takes_network_s_place_in_the_boot_list():
    """<os><boot dev='network'/> is the first NIC's bootindex (libvirt's
    qemuProcessPrepareDeviceBootorder); the other NICs get none."""
    d = loads("<domain type='qemu'><name>n</name><memory unit='MiB'>64</memory><os><type "
              "arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/><boot dev='network'/>"
              "</os><devices><interface type='user'><model type='e1000'/></interface>"
              "<interface type='user'><model type='e1000'/></interface></devices></domain>",
              random=guid.counting_random)
    devices = [a.value for a in build_checked(d, CAPS, "/run/qemuwrap/n").args
               if a.option == "-device" and a.value.startswith("e1000")]
    assert ",id=net0," in devices[0] and ",bootindex=2," in devices[0]
    assert "bootindex" not in devices[1]
