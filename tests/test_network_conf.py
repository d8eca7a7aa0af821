"""libvirt's network XML: parse, refuse, format back; what dnsmasq, nft and QEMU are given.

No root and no host changes: these are pure functions (and definitions in a temporary
configuration directory)."""

from __future__ import annotations

import re

import pytest

from qemuwrap import networks
from qemuwrap.companions import network as comp
from qemuwrap.conf import guid
from qemuwrap.conf import network as netconf
from qemuwrap.conf.xmlreader import parse_bytes
from qemuwrap.errors import QemuwrapError, XMLError

from conftest import DATA

NETS = DATA / "networks"


def load(name: str) -> netconf.Network:
    return netconf.load(str(NETS / name))


@pytest.mark.parametrize("name", ["default-defined.xml", "nat-full.xml", "isolated.xml",
                                  "routed.xml", "host-bridge.xml"])
def test_format_gives_back_the_stored_definition(name):
    """A definition as libvirt stores it is written back byte for byte."""
    assert load(name).format() == (NETS / name).read_text()


def test_default_network_defined_as_libvirt_does():
    """libvirt's default.xml + net-define = uuid, virbr0 with stp on/delay 0, a 52:54:00
    MAC, forward mode nat (the format of libvirt's virNetworkDefFormatBuf)."""
    net = netconf.load(str(NETS / "default.xml"), random=guid.counting_random)
    assert net.uuid_generated and net.bridge == "virbr0" and net.mac is None
    netconf.complete(net, used_bridges=set(), random=guid.counting_random)
    assert net.format() == (NETS / "default-defined.xml").read_text()


def test_bridge_name_is_the_first_free_virbr():
    net = netconf.loads("<network><name>n</name><ip address='10.0.0.1' prefix='24'/>"
                        "</network>")
    netconf.complete(net, used_bridges={"virbr0", "virbr1", "virbr3"})
    assert net.bridge == "virbr2"
    assert net.forward is None and net.has_own_bridge


def test_model_reads_what_matters():
    net = load("nat-full.xml")
    assert (net.forward, net.forward_dev, net.nat_ports) == ("nat", "eth1", (2048, 60000))
    assert (net.bridge, net.stp, net.delay, net.mtu) == ("qwlab0", False, 0, 9000)
    ip = net.dhcp_ip
    assert ip is not None and str(ip.interface) == "10.20.0.1/24"
    assert [(str(r.start), str(r.end), r.lease_seconds) for r in ip.ranges] == \
        [("10.20.0.100", "10.20.0.199", 7200)]
    assert [(h.mac, h.name, str(h.ip), h.lease_seconds) for h in ip.hosts] == \
        [("52:54:00:00:00:10", "web", "10.20.0.10", None),
         ("52:54:00:00:00:11", "db", "10.20.0.11", 0)]
    assert str(net.ips[1].interface) == "10.21.0.1/16"


def test_classful_default_prefix():
    net = netconf.loads("<network><name>n</name><ip address='10.1.2.3'/></network>")
    assert str(net.ips[0].interface) == "10.1.2.3/8"
    assert "<ip address='10.1.2.3'>" in net.format()


@pytest.mark.parametrize("xml, message", [
    ("<network><name>a b</name></network>", "line 1: /network/name: network name 'a b' is "
     "not supported"),
    ("<network><name>n</name><forward mode='vepa'/></network>",
     "line 1: /network/forward: unsupported mode='vepa' (supported: 'nat', 'route', "
     "'bridge')"),
    ("<network><name>n</name><forward/></network>",
     "line 1: /network: nat forwarding requested, but no IP address provided"),
    ("<network><name>n</name><forward mode='bridge'/></network>",
     "forward mode='bridge' needs <bridge name=.../>"),
    ("<network><name>n</name><forward mode='bridge'/><bridge name='br0' stp='on'/>"
     "</network>", "line 1: /network/bridge: bridge stp/delay are only allowed"),
    ("<network><name>n</name><forward mode='bridge'/><bridge name='br0'/>"
     "<ip address='10.0.0.1' prefix='24'/></network>",
     "line 1: /network/ip: <ip> is not allowed with forward mode='bridge'"),
    ("<network><name>n</name><bridge name='abcdefghijklmnop'/></network>",
     "invalid bridge name 'abcdefghijklmnop' (at most 15 characters"),
    ("<network><name>n</name><ip family='ipv6' address='fd00::1' prefix='64'/></network>",
     "line 1: /network/ip: IPv6 networks are not supported"),
    ("<network><name>n</name><ip address='10.0.0.1' prefix='24' netmask='255.0.0.0'/>"
     "</network>", "give netmask or prefix, not both"),
    ("<network><name>n</name><ip address='10.0.0.1' prefix='24'><dhcp>"
     "<range start='10.0.1.2' end='10.0.1.9'/></dhcp></ip></network>",
     "line 1: /network/ip/dhcp/range: start 10.0.1.2 is not a host address of 10.0.0.0/24"),
    ("<network><name>n</name><ip address='10.0.0.5' prefix='24'><dhcp>"
     "<range start='10.0.0.2' end='10.0.0.9'/></dhcp></ip></network>",
     "contains the network's own address 10.0.0.5"),
    ("<network><name>n</name><ip address='10.0.0.1' prefix='24'><dhcp>"
     "<range start='10.0.0.9' end='10.0.0.2'/></dhcp></ip></network>",
     "range end 10.0.0.2 is before its start 10.0.0.9"),
    ("<network><name>n</name><ip address='10.0.0.1' prefix='24'><dhcp>"
     "<host mac='01:00:00:00:00:01' ip='10.0.0.3'/></dhcp></ip></network>",
     "MAC address '01:00:00:00:00:01' is a multicast address"),
    ("<network><name>n</name><ip address='10.0.0.1' prefix='24'><dhcp>"
     "<range start='10.0.0.2' end='10.0.0.9'/></dhcp></ip>"
     "<ip address='10.1.0.1' prefix='24'><dhcp><range start='10.1.0.2' end='10.1.0.9'/>"
     "</dhcp></ip></network>", "line 1: /network/ip[2]: DHCP is supported on one <ip> only"),
    ("<network><name>n</name><ip address='10.0.0.1' prefix='24'/>"
     "<ip address='10.0.0.2' prefix='16'/></network>", "overlaps another <ip>"),
    ("<network><name>n</name><portgroup name='x'/></network>",
     "line 1: /network/portgroup: unsupported element 'portgroup'"),
    ("<network ipv6='yes'><name>n</name></network>",
     "line 1: /network: unsupported attribute 'ipv6'"),
    ("<network><name>n</name><ip address='10.0.0.1' prefix='24'><tftp root='/x'/></ip>"
     "</network>", "line 1: /network/ip/tftp: unsupported element 'tftp'"),
    ("<network><name>n</name><dns><txt name='a' value='b'/></dns></network>",
     "line 1: /network/dns/txt: unsupported element 'txt'"),
    ("<domain><name>n</name></domain>", "expected root element 'network', not 'domain'"),
])
def test_refusals_are_one_line_naming_the_element(xml, message):
    with pytest.raises(XMLError) as exc:
        netconf.loads(xml)
    text = str(exc.value)
    assert message in text and "\n" not in text


def test_load_names_the_file(tmp_path):
    path = tmp_path / "bad.xml"
    path.write_text("<network><name>n</name><forward mode='open'/></network>")
    with pytest.raises(XMLError, match=rf"^{path}: line 1: /network/forward: unsupported "):
        netconf.load(str(path))


def test_doctype_is_refused():
    with pytest.raises(XMLError, match="DOCTYPE"):
        netconf.loads('<!DOCTYPE network [<!ENTITY x "y">]><network><name>&x;</name>'
                      '</network>')


# -- what dnsmasq and nft are given -----------------------------------------------------

def test_dnsmasq_conf_for_the_default_network(tmp_path):
    net = load("default-defined.xml")
    files = comp.NetworkFiles(str(tmp_path))
    conf = comp.dnsmasq_conf(net, files)
    lines = conf.splitlines()
    # Bound to the bridge only; no file read that we did not choose.
    for line in ("no-hosts", "except-interface=lo", "bind-dynamic", "interface=virbr0",
                 "resolv-file=/etc/resolv.conf",
                 "dhcp-range=192.168.122.2,192.168.122.254,255.255.255.0",
                 "dhcp-authoritative", "dhcp-lease-max=253",
                 f"log-facility={tmp_path}/dnsmasq.log"):
        assert line in lines
    assert comp.dnsmasq_argv(files) == [
        "dnsmasq", f"--conf-file={tmp_path}/dnsmasq.conf",
        f"--pid-file={tmp_path}/dnsmasq.pid", f"--dhcp-leasefile={tmp_path}/dnsmasq.leases"]


def test_dnsmasq_conf_dns_and_fixed_hosts(tmp_path):
    net = load("nat-full.xml")
    conf = comp.dnsmasq_conf(net, comp.NetworkFiles(str(tmp_path))).splitlines()
    for line in ("domain=lab.example", "expand-hosts", "local=/lab.example/", "domain-needed",
                 "no-resolv", "server=192.0.2.53", "server=/corp.example/192.0.2.54",
                 "dhcp-range=10.20.0.100,10.20.0.199,255.255.255.0,7200",
                 "dhcp-lease-max=102", "dhcp-host=52:54:00:00:00:10,10.20.0.10,web",
                 "dhcp-host=52:54:00:00:00:11,10.20.0.11,db,infinite",
                 "host-record=build,build.lab.example,10.20.0.50"):
        assert line in conf
    assert "resolv-file=/etc/resolv.conf" not in conf


def test_isolated_network_forwards_no_dns_upstream(tmp_path):
    conf = comp.dnsmasq_conf(load("isolated.xml"), comp.NetworkFiles(str(tmp_path)))
    assert "no-resolv" in conf.splitlines()
    disabled = netconf.loads("<network><name>n</name><bridge name='b'/><dns enable='no'/>"
                             "<ip address='10.0.0.1' prefix='24'><dhcp><range "
                             "start='10.0.0.2' end='10.0.0.3'/></dhcp></ip></network>")
    assert "port=0" in comp.dnsmasq_conf(disabled, comp.NetworkFiles(str(tmp_path)))


def test_nft_ruleset_for_nat():
    rules = comp.nft_ruleset(load("default-defined.xml"))
    assert rules.startswith("table ip qemuwrap-default\ndelete table ip qemuwrap-default\n")
    for rule in ('iifname "virbr0" ip saddr 192.168.122.0/24 accept',
                 'oifname "virbr0" ip daddr 192.168.122.0/24 ct state established,related '
                 'accept',
                 "ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 meta l4proto "
                 "{ tcp, udp } masquerade to :1024-65535",
                 "ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 masquerade",
                 'iifname "virbr0" reject', 'oifname "virbr0" reject'):
        assert f"\t\t{rule}\n" in rules
    full = comp.nft_ruleset(load("nat-full.xml"))
    assert 'oifname "eth1" meta l4proto { tcp, udp } masquerade to :2048-60000' in full
    assert "10.21.0.0/16" in full


def test_nft_ruleset_route_and_isolated():
    routed = comp.nft_ruleset(load("routed.xml"))
    assert "masquerade" not in routed and "postrouting" not in routed
    assert 'oifname "qwroute0" ip daddr 172.16.50.0/24 accept' in routed
    isolated = comp.nft_ruleset(load("isolated.xml"))
    assert "saddr" not in isolated and 'iifname "qwpriv0" reject' in isolated
    assert comp.nft_delete("qemuwrap-x") == "table ip qemuwrap-x\ndelete table ip qemuwrap-x\n"


def test_leases_reader(tmp_path):
    path = tmp_path / "leases"
    path.write_text("1700000000 52:54:00:00:00:10 10.20.0.10 web 01:52:54:00:00:00:10\n"
                    "0 52:54:00:00:00:12 10.20.0.120 * *\n"
                    "duid 00:01:00:01\n")
    assert comp.read_leases(str(path)) == [
        {"expiry": 1700000000, "mac": "52:54:00:00:00:10", "ip": "10.20.0.10",
         "hostname": "web"},
        {"expiry": 0, "mac": "52:54:00:00:00:12", "ip": "10.20.0.120", "hostname": None}]
    assert comp.read_leases(str(tmp_path / "none")) == []


# -- the host end of a guest's <interface> ----------------------------------------------

def host_of(xml: str) -> netconf.InterfaceHost:
    node = parse_bytes(xml.encode())
    host = netconf.InterfaceHost.parse(node)
    node.take("mac")
    node.take("model")
    node.finish()
    return host


def test_interface_types():
    bridge = host_of("<interface type='bridge'><source bridge='br0'/><mac address="
                     "'52:54:00:00:00:01'/><model type='virtio'/></interface>")
    assert (bridge.type, bridge.source, bridge.target_dev, bridge.managed) == \
        ("bridge", "br0", None, True)
    net = host_of("<interface type='network'><source network='default'/>"
                  "<target dev='vnet7'/></interface>")
    assert (net.source, net.target_dev) == ("default", None)  # vnetN is re-chosen
    eth = host_of("<interface type='ethernet'><target dev='mytap' managed='no'/>"
                  "<driver name='qemu' queues='4'/><link state='down'/><mtu size='9000'/>"
                  "</interface>")
    assert (eth.target_dev, eth.managed, eth.driver_name, eth.queues, eth.link_up,
            eth.mtu) == ("mytap", False, "qemu", 4, False, 9000)


@pytest.mark.parametrize("xml, message", [
    ("<interface type='bridge'/>", "needs <source bridge=.../>"),
    ("<interface type='network'><source network='a/b'/></interface>",
     "line 1: /interface/source: network name 'a/b' is not supported"),
    ("<interface type='ethernet'><source bridge='x'/></interface>", "takes no <source>"),
    ("<interface type='bridge'><source bridge='br0'/><target dev='t' managed='no'/>"
     "</interface>", "managed='no' is only supported for type='ethernet'"),
    ("<interface type='direct'/>", "unsupported type='direct'"),
    ("<interface type='bridge'><source bridge='br0' portgroup='x'/></interface>",
     "unsupported attribute 'portgroup'"),
    ("<interface type='ethernet'><target dev='a:b'/></interface>", "invalid target dev 'a:b'"),
])
def test_interface_refusals(xml, message):
    with pytest.raises(XMLError, match=re.escape(message)):
        host_of(xml)


def test_qemu_options_for_a_tap():
    host = host_of("<interface type='bridge'><source bridge='br0'/>"
                   "<driver queues='2'/><mtu size='1400'/></interface>")
    assert comp.netdev_options("hostnet0", "vnet0") == \
        "tap,id=hostnet0,ifname=vnet0,script=no,downscript=no"
    assert comp.netdev_options("hostnet0", "vnet0", vhost=True, queues=2) == \
        "tap,id=hostnet0,ifname=vnet0,script=no,downscript=no,vhost=on,queues=2"
    assert comp.nic_device_options(host, "virtio") == \
        [("mq", "on"), ("vectors", "6"), ("host_mtu", "1400")]
    assert comp.nic_device_options(host, "e1000") == []
    assert comp.use_vhost(host, "virtio", True) and not comp.use_vhost(host, "e1000", True)
    qemu_driver = host_of("<interface type='bridge'><source bridge='br0'/>"
                          "<driver name='qemu'/></interface>")
    assert not comp.use_vhost(qemu_driver, "virtio", True)


def test_link_state_is_a_qmp_command_after_start():
    down = host_of("<interface type='bridge'><source bridge='b'/><link state='down'/>"
                   "</interface>")
    assert comp.link_commands(down, "net0") == [("set_link", {"name": "net0", "up": False})]
    up = host_of("<interface type='bridge'><source bridge='b'/></interface>")
    assert comp.link_commands(up, "net0") == []


def test_what_qemu_cannot_do_is_refused():
    host = host_of("<interface type='bridge'><source bridge='b'/><driver name='vhost' "
                   "queues='2'/><mtu size='1400'/><bandwidth><inbound average='1000'/>"
                   "</bandwidth></interface>")
    assert host.bandwidth is not None and host.bandwidth.inbound == {"average": 1000}
    reasons = comp.refusals(host, "virtio", vhost=False)
    assert reasons[0].startswith("<bandwidth> is not supported: QEMU 7.2 has no rate limit")
    assert "/dev/vhost-net does not exist" in reasons[1]
    assert len(comp.refusals(host, "e1000", vhost=True)) == 4
    plain = host_of("<interface type='bridge'><source bridge='b'/></interface>")
    assert comp.refusals(plain, "e1000", vhost=False) == []


def test_tap_mac_is_the_guests_with_fe():
    assert comp.tap_mac("52:54:00:12:34:56") == "fe:54:00:12:34:56"


# -- definitions on disk --------------------------------------------------------------

@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setenv("QEMUWRAP_CONFIG_DIR", str(tmp_path / "etc"))
    monkeypatch.setenv("QEMUWRAP_STATE_DIR", str(tmp_path / "run"))
    return tmp_path


def test_define_list_dumpxml_undefine(config):
    net = networks.define(str(NETS / "default.xml"))
    stored = config / "etc" / "networks" / "default.xml"
    assert stored.read_text() == net.format()
    assert net.bridge is not None and net.mac is not None and net.mac.startswith("52:54:00:")
    # Redefining keeps the uuid, the bridge and the MAC.
    again = networks.define(str(NETS / "default.xml"))
    assert (again.uuid, again.bridge, again.mac) == (net.uuid, net.bridge, net.mac)
    assert networks.list_networks() == [{"name": "default", "state": "inactive",
                                         "persistent": True, "bridge": net.bridge,
                                         "forward": "nat", "uuid": net.uuid_str}]
    assert networks.dumpxml("default") == stored.read_text()
    assert networks.info("default")["addresses"] == ["192.168.122.1/24"]
    networks.undefine("default")
    assert not stored.exists() and networks.list_networks() == []


def test_define_refuses_conflicts(config, tmp_path):
    networks.define(str(NETS / "isolated.xml"))
    clash = tmp_path / "clash.xml"
    clash.write_text("<network><name>other</name><bridge name='qwpriv0'/>"
                     "<ip address='10.9.0.1' prefix='24'/></network>")
    with pytest.raises(QemuwrapError, match="bridge 'qwpriv0' is already used by network "
                                            "'private'"):
        networks.define(str(clash))
    same_uuid = tmp_path / "uuid.xml"
    same_uuid.write_text((NETS / "isolated.xml").read_text()
                         .replace("private", "private2").replace("qwpriv0", "qwpriv1"))
    with pytest.raises(QemuwrapError, match="uuid 81ff0d90-.* is already used by network "
                                            "'private'"):
        networks.define(str(same_uuid))
    other_uuid = tmp_path / "u2.xml"
    other_uuid.write_text((NETS / "isolated.xml").read_text().replace("9c</uuid>", "9f</uuid>"))
    with pytest.raises(QemuwrapError, match="already exists with uuid"):
        networks.define(str(other_uuid))


def test_guest_on_a_network_that_is_not_there(config):
    """type='network' needs the network defined and started; each says what to do."""
    with pytest.raises(QemuwrapError, match=r"network 'default' is not defined: define it "
                                            r"with 'qemuwrap net-define FILE.xml'"):
        networks.bridge_of("default")
    networks.define(str(NETS / "default.xml"))
    with pytest.raises(QemuwrapError, match=r"network 'default' is not active: start it with "
                                            r"'qemuwrap net-start default'"):
        networks.bridge_of("default")
    with pytest.raises(QemuwrapError, match="network 'default' is not active"):
        networks.stop("default")
    with pytest.raises(QemuwrapError, match="network 'nope' is not defined"):
        networks.start("nope")


def test_plan_shows_what_start_runs(tmp_path):
    """For a dry run: the nft ruleset and dnsmasq's argv and conf, nothing run or written."""
    net = load("default-defined.xml")
    runtime = comp.NetworkRuntime(net, str(tmp_path / "rt"), dnsmasq="/usr/sbin/dnsmasq",
                                  nft="/usr/sbin/nft")
    steps = runtime.plan()
    assert [s["name"] for s in steps] == ["nft", "dnsmasq"]
    assert steps[0]["argv"] == ["/usr/sbin/nft", "-f", "-"]
    assert steps[0]["input"] == comp.nft_ruleset(net)
    assert steps[1]["argv"][:2] == ["/usr/sbin/dnsmasq", f"--conf-file={tmp_path}/rt/dnsmasq.conf"]
    assert "interface=virbr0" in steps[1]["config"]
    assert not (tmp_path / "rt").exists()
    assert comp.NetworkRuntime(load("host-bridge.xml"), str(tmp_path)).plan() == []
