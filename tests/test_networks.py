"""Networks brought up for real, inside network namespaces the tests make.

Each test works in a fresh namespace (the test thread enters it, so netlink sockets,
dnsmasq, nft and QEMU all act there and the host's network is never touched).  A
"guest" is a second namespace joined to the bridge by a veth pair (busybox ``udhcpc``
and ``ping`` run in it), or a real QEMU whose NIC is a tap from GuestTap.  Needs root
(CI runs as root), dnsmasq and nft; each test skips with the reason otherwise.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qemuwrap import networks
from qemuwrap.companions import network as comp
from qemuwrap.conf import network as netconf
from qemuwrap.conf.xmlreader import parse_bytes
from qemuwrap.errors import QemuwrapError

from conftest import QEMU

BUSYBOX = shutil.which("busybox")
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces, bridges and taps "
                       "need root"),
    pytest.mark.skipif(shutil.which("dnsmasq") is None,
                       reason="dnsmasq is not installed (Debian package dnsmasq-base)"),
    pytest.mark.skipif(shutil.which("nft") is None,
                       reason="nft is not installed (Debian package nftables)"),
    pytest.mark.skipif(BUSYBOX is None, reason="busybox is not installed (busybox-static)"),
    pytest.mark.skipif(shutil.which("nsenter") is None, reason="nsenter (util-linux) is "
                       "missing"),
]
_counter = itertools.count()


def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def ns_inode(name: str) -> int:
    return os.stat(f"/run/netns/{name}").st_ino


def processes_in(name: str) -> list[int]:
    """Pids whose network namespace is ``name``."""
    inode = ns_inode(name)
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino == inode:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def make_netns(prefix: str) -> str:
    from pyroute2 import netns

    name = f"qw{prefix}-{os.getpid()}-{next(_counter)}"
    netns.create(name)
    return name


def remove_netns(name: str) -> None:
    from pyroute2 import netns

    for pid in processes_in(name):
        if pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    netns.remove(name)


@pytest.fixture
def hostns(tmp_path, monkeypatch):
    """A namespace standing in for the host, which this thread works in for the test;
    definitions and state go to the test's temporary directory."""
    from pyroute2 import netns

    monkeypatch.setenv("QEMUWRAP_CONFIG_DIR", str(tmp_path / "etc"))
    monkeypatch.setenv("QEMUWRAP_STATE_DIR", str(tmp_path / "run"))
    name = make_netns("host")
    netns.pushns(name)
    try:
        yield name
    finally:
        netns.popns()
        remove_netns(name)


@pytest.fixture
def guests():
    """Makes guest namespaces joined to a bridge of the host namespace by a veth pair."""
    made: list[str] = []

    def make(bridge: str) -> str:
        from pyroute2 import IPRoute

        name = make_netns("guest")
        made.append(name)
        host_end = f"vh{len(made)}{os.getpid() % 10000}"
        with IPRoute() as ipr:
            ipr.link("add", ifname=host_end, kind="veth",
                     peer={"ifname": "eth0", "net_ns_fd": name})
            index = ipr.link_lookup(ifname=host_end)[0]
            ipr.link("set", index=index, master=ipr.link_lookup(ifname=bridge)[0],
                     state="up")
        in_guest(name, "ip", "link", "set", "lo", "up")
        in_guest(name, "ip", "link", "set", "eth0", "up")
        return name

    yield make
    for name in made:
        remove_netns(name)


def in_guest(ns: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run a busybox applet in guest namespace ``ns`` (the guest's tools, not qemuwrap's)."""
    assert BUSYBOX is not None
    return subprocess.run(["nsenter", f"--net=/run/netns/{ns}", BUSYBOX, *argv],
                          capture_output=True, text=True, timeout=timeout, check=False)


def dhcp(ns: str, tmp_path: Path) -> str:
    """udhcpc in the guest: the address it was given (and configured on eth0)."""
    got = tmp_path / f"lease-{ns}"
    script = tmp_path / f"udhcpc-{ns}.sh"
    script.write_text("#!/bin/sh\ncase \"$1\" in bound|renew)\n"
                      f"  {BUSYBOX} ip addr add \"$ip/$mask\" dev \"$interface\"\n"
                      f"  echo \"$ip\" > {got};;\nesac\n")
    script.chmod(0o755)
    done = in_guest(ns, "udhcpc", "-f", "-q", "-n", "-i", "eth0", "-t", "20", "-T", "1",
                    "-s", str(script), timeout=60)
    assert done.returncode == 0, done.stderr + done.stdout
    return got.read_text().strip()


def ping(ns: str, address: str) -> bool:
    return in_guest(ns, "ping", "-c", "1", "-W", "3", address).returncode == 0


def nft_tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                          check=True, timeout=10).stdout


def links() -> set[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}


def assert_nothing_left(ns: str, rundir: Path) -> None:
    """No bridge, no tap, no nft table, no dnsmasq, no runtime files but the log."""
    assert links() == {"lo"}
    assert nft_tables().strip() == ""
    assert [pid for pid in processes_in(ns) if pid != os.getpid()] == []
    assert sorted(p.name for p in rundir.iterdir()) in (["dnsmasq.log", "lock"], ["lock"])


def define(tmp_path: Path, xml: str) -> netconf.Network:
    path = tmp_path / "net.xml"
    path.write_text(xml)
    return networks.define(str(path))


NAT = """<network>
  <name>natnet</name>
  <forward mode='nat'/>
  <bridge name='qwbr0' stp='off'/>
  <mtu size='1400'/>
  <domain name='test.example'/>
  <ip address='10.77.0.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='10.77.0.100' end='10.77.0.120'/>
      <host mac='52:54:00:77:00:09' name='fixed' ip='10.77.0.9'/>
    </dhcp>
  </ip>
</network>
"""

ISOLATED = """<network>
  <name>iso</name>
  <bridge name='qwiso0' stp='off'/>
  <ip address='10.88.0.1' prefix='24'>
    <dhcp>
      <range start='10.88.0.10' end='10.88.0.20'/>
    </dhcp>
  </ip>
</network>
"""


def test_nat_network_dhcp_ping_and_stop(hostns, guests, tmp_path):
    """A NAT network comes up (bridge, address, MTU, nft table, dnsmasq, forwarding); a
    guest gets a lease from its range and pings the gateway; stop leaves nothing."""
    define(tmp_path, NAT)
    shown = networks.start("natnet")
    assert shown["state"] == "active" and shown["bridge"] == "qwbr0"
    assert shown["addresses"] == ["10.77.0.1/24"]

    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname="qwbr0")[0]
        bridge = ipr.get_links(index)[0]
        assert bridge.get_attr("IFLA_MTU") == 1400
        assert bridge.get_attr("IFLA_OPERSTATE") in ("UP", "UNKNOWN", "DOWN")
        assert [(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                for a in ipr.get_addr(index=index)] == [("10.77.0.1", 24)]
    table = subprocess.run(["nft", "list", "table", "ip", "qemuwrap-natnet"],
                           capture_output=True, text=True, check=True, timeout=10).stdout
    assert "masquerade" in table and 'iifname "qwbr0"' in table
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"
    assert shown["ip_forward_enabled"] is True
    pid = shown["dnsmasq_pid"]
    assert pid in processes_in(hostns)
    rundir = tmp_path / "run" / "networks" / "natnet"
    assert f"--conf-file={rundir}/dnsmasq.conf" in \
        Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")

    guest = guests("qwbr0")
    address = dhcp(guest, tmp_path)
    assert 100 <= int(address.rsplit(".", 1)[1]) <= 120
    assert ping(guest, "10.77.0.1")
    leases = networks.info("natnet")["leases"]
    assert [lease["ip"] for lease in leases] == [address]
    assert networks.list_networks()[0]["state"] == "active"

    with pytest.raises(QemuwrapError, match="network 'natnet' is already active"):
        networks.start("natnet")
    with pytest.raises(QemuwrapError, match="network 'natnet' is active: stop it first"):
        networks.undefine("natnet")

    networks.stop("natnet")
    assert wait_for(lambda: pid not in processes_in(hostns), 5)
    # The guest's veth end stays (it is the test's); remove it, then check nothing is left.
    with IPRoute() as ipr:
        for name in links() - {"lo"}:
            ipr.link("del", index=ipr.link_lookup(ifname=name)[0])
    assert_nothing_left(hostns, rundir)
    assert networks.info("natnet")["state"] == "inactive"


def test_fixed_dhcp_host_and_dns_name(hostns, guests, tmp_path):
    """A <host mac ip name> gets its fixed address, and dnsmasq answers for its name in
    the network's domain."""
    define(tmp_path, NAT)
    networks.start("natnet")
    guest = guests("qwbr0")
    assert in_guest(guest, "ip", "link", "set", "eth0", "address",
                    "52:54:00:77:00:09").returncode == 0
    assert dhcp(guest, tmp_path) == "10.77.0.9"
    answer = in_guest(guest, "nslookup", "fixed.test.example", "10.77.0.1")
    assert "10.77.0.9" in answer.stdout, answer.stdout + answer.stderr
    networks.stop("natnet")


def test_two_guests_on_one_bridge_ping_each_other(hostns, guests, tmp_path):
    define(tmp_path, ISOLATED)
    networks.start("iso")
    first, second = guests("qwiso0"), guests("qwiso0")
    a, b = dhcp(first, tmp_path), dhcp(second, tmp_path)
    assert a != b
    assert ping(first, b) and ping(second, a)
    # Isolated: nothing is forwarded off the bridge, and no NAT table chain exists.
    table = subprocess.run(["nft", "list", "table", "ip", "qemuwrap-iso"],
                           capture_output=True, text=True, check=True, timeout=10).stdout
    assert "masquerade" not in table and 'iifname "qwiso0" reject' in table
    networks.stop("iso")
    assert "qemuwrap-iso" not in nft_tables() and "qwiso0" not in links()


def test_killed_dnsmasq_makes_the_network_broken_and_stop_cleans_up(hostns, tmp_path):
    define(tmp_path, ISOLATED)
    pid = networks.start("iso")["dnsmasq_pid"]
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: networks.info("iso")["state"] == "broken", 5)
    # A new start clears what is left and starts again.
    again = networks.start("iso")
    assert again["state"] == "active" and again["dnsmasq_pid"] != pid
    networks.stop("iso")
    assert_nothing_left(hostns, tmp_path / "run" / "networks" / "iso")


def test_failed_start_leaves_nothing(hostns, tmp_path):
    """dnsmasq cannot start (a missing binary): the bridge and the nft table go again,
    and the error names the part."""
    net = netconf.loads(ISOLATED)
    rundir = tmp_path / "rt"
    runtime = comp.NetworkRuntime(net, str(rundir), dnsmasq="/nonexistent/dnsmasq")
    with pytest.raises(QemuwrapError, match=r"^dnsmasq: /nonexistent/dnsmasq not found"):
        runtime.start()
    runtime = comp.NetworkRuntime(net, str(rundir))
    runtime.dnsmasq = "/bin/false"  # found, and fails: after bridge and nft are up
    with pytest.raises(QemuwrapError, match=r"^dnsmasq: exit status 1"):
        runtime.start()
    assert links() == {"lo"} and nft_tables().strip() == ""


def test_cleanup_after_a_killed_starter(hostns, tmp_path):
    """The record saved after each step lets cleanup undo a start whose process died:
    here the records are taken as they were saved, then the runtime is forgotten."""
    saved: list[dict] = []
    runtime = comp.NetworkRuntime(netconf.loads(NAT), str(tmp_path / "rt"),
                                  save=lambda rec: saved.append(dict(rec)))
    runtime.start()
    last = saved[-1]
    assert last["dnsmasq"]["pid"] and last["nft_table"] == "qemuwrap-natnet"
    del runtime
    comp.NetworkRuntime.cleanup(last)
    assert links() == {"lo"} and nft_tables().strip() == ""
    assert processes_in(hostns) in ([], [os.getpid()])


def test_host_bridge_network_starts_nothing(hostns, tmp_path):
    from pyroute2 import IPRoute

    define(tmp_path, "<network><name>hb</name><forward mode='bridge'/>"
                     "<bridge name='br9'/></network>")
    with pytest.raises(QemuwrapError, match="host bridge 'br9' of network 'hb' does not "
                                            "exist: create it first"):
        networks.start("hb")
    with IPRoute() as ipr:
        ipr.link("add", ifname="br9", kind="bridge")
    assert networks.start("hb")["state"] == "active"
    assert networks.bridge_of("hb") == "br9"
    assert processes_in(hostns) in ([], [os.getpid()]) and nft_tables().strip() == ""
    networks.stop("hb")
    assert "br9" in links()  # not ours: left as it was


# -- taps --------------------------------------------------------------------------------

def interface(xml: str) -> netconf.InterfaceHost:
    node = parse_bytes(xml.encode())
    host = netconf.InterfaceHost.parse(node)
    node.take("mac")
    node.take("model")
    node.finish()
    return host


def test_guest_tap_on_a_network(hostns, tmp_path):
    """type='network': the tap of the name it is given, with the guest's MAC (fe:...),
    the bridge's MTU, an alias naming the guest, attached and up; stop removes each."""
    from pyroute2 import IPRoute

    define(tmp_path, NAT)
    networks.start("natnet")
    host = interface("<interface type='network'><source network='natnet'/></interface>")
    first = comp.GuestTap(host, "52:54:00:00:00:01", ifname="qwtest0",
                          bridge=networks.bridge_of("natnet"), label="qemuwrap g1 net0")
    second = comp.GuestTap(host, "52:54:00:00:00:02", ifname="qwtest1",
                           bridge=networks.bridge_of("natnet"))
    assert first.start()["ifname"] == "qwtest0"
    assert second.start()["ifname"] == "qwtest1"
    with IPRoute() as ipr:
        br = ipr.link_lookup(ifname="qwbr0")[0]
        tap = ipr.get_links(ipr.link_lookup(ifname="qwtest0")[0])[0]
        assert tap.get_attr("IFLA_MASTER") == br
        assert tap.get_attr("IFLA_MTU") == 1400
        assert tap.get_attr("IFLA_ADDRESS") == "fe:54:00:00:00:01"
        assert tap.get_attr("IFLA_IFALIAS") == "qemuwrap g1 net0"
        assert tap["flags"] & 1  # IFF_UP
    first.stop()
    second.stop()
    assert {"qwtest0", "qwtest1"} & links() == set()
    networks.stop("natnet")


def test_tap_named_in_target_and_existing_taps(hostns):
    """<target dev> names the tap (refused if it exists); managed='no' uses an existing
    tap and leaves it; queues>1 makes a multi-queue tap."""
    from pyroute2 import IPRoute

    named = comp.GuestTap(interface("<interface type='ethernet'><target dev='mytap0'/>"
                                    "<driver queues='2'/><mtu size='1300'/></interface>"),
                          "52:54:00:00:00:03", ifname="mytap0", bridge=None)
    record = named.start()
    assert record["ifname"] == "mytap0"
    with IPRoute() as ipr:
        tap = ipr.get_links(ipr.link_lookup(ifname="mytap0")[0])[0]
        assert tap.get_attr("IFLA_MTU") == 1300 and tap.get_attr("IFLA_MASTER") is None
    clash = comp.GuestTap(interface("<interface type='ethernet'><target dev='mytap0'/>"
                                    "</interface>"), "52:54:00:00:00:04", ifname="mytap0",
                          bridge=None)
    with pytest.raises(QemuwrapError, match="netlink: tap 'mytap0' already exists"):
        clash.start()
    existing = comp.GuestTap(interface("<interface type='ethernet'><target dev='mytap0' "
                                       "managed='no'/></interface>"), "52:54:00:00:00:05",
                             ifname="mytap0", bridge=None)
    assert existing.start() == {"ifname": "mytap0", "created": False}
    existing.stop()
    assert "mytap0" in links()
    named.stop()
    missing = comp.GuestTap(interface("<interface type='ethernet'><target dev='gone0' "
                                      "managed='no'/></interface>"), "52:54:00:00:00:06",
                            ifname="gone0", bridge=None)
    with pytest.raises(QemuwrapError, match=r"netlink: tap 'gone0' \(managed='no'\) does not "
                                            "exist: create it first"):
        missing.start()
    nobridge = comp.GuestTap(interface("<interface type='bridge'><source bridge='nobr'/>"
                                       "</interface>"), "52:54:00:00:00:07",
                             ifname="qwtest7", bridge="nobr")
    with pytest.raises(QemuwrapError, match="netlink: bridge 'nobr' does not exist"):
        nobridge.start()
    assert links() == {"lo"}


def test_tap_cleanup_from_a_record_spares_a_newer_device(hostns):
    """cleanup(record) after a killed supervisor deletes the tap it recorded, but not a
    later device that reuses the name (the ifindex differs)."""
    host = interface("<interface type='ethernet'/>")
    tap = comp.GuestTap(host, "52:54:00:00:00:08", ifname="qwtest8", bridge=None)
    record = dict(tap.start())
    comp.GuestTap.cleanup(record)
    assert "qwtest8" not in links()
    newer = comp.GuestTap(host, "52:54:00:00:00:09", ifname="qwtest8", bridge=None)
    assert newer.start()["ifname"] == "qwtest8"
    comp.GuestTap.cleanup(record)  # the old record again
    assert "qwtest8" in links()
    newer.stop()


def test_without_root_each_refusal_says_what_to_do(hostns, tmp_path):
    """No CAP_NET_ADMIN: a tap or a network start is refused in one line."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is missing")
    code = ("from qemuwrap.companions import network as c\n"
            "from qemuwrap.conf import network as n\n"
            "from qemuwrap.conf.xmlreader import parse_bytes\n"
            "h = n.InterfaceHost.parse(parse_bytes(b\"<interface type='ethernet'/>\"))\n"
            "net = n.loads(open('net.xml').read())\n"
            "tap = c.GuestTap(h, '52:54:00:00:00:01', ifname='qwt0', bridge=None)\n"
            "for step in (lambda: tap.start(),\n"
            "             lambda: c.NetworkRuntime(net, '.').start()):\n"
            "    try:\n        step()\n    except Exception as e:\n        print(e)\n")
    (tmp_path / "net.xml").write_text(ISOLATED)
    # Root without CAP_NET_ADMIN (what qemuwrap checks): no other user needs to read the
    # checkout, wherever it was cloned.
    done = subprocess.run(["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin",
                           sys.executable, "-c", code],
                          cwd=tmp_path, capture_output=True, text=True, timeout=30,
                          check=False)
    lines = done.stdout.splitlines()
    assert lines == [
        "netlink: creating a tap device needs root (CAP_NET_ADMIN): run qemuwrap as root, "
        "or use <interface type='ethernet'> with <target dev='TAP' managed='no'/> naming a "
        "tap made beforehand",
        "netlink: starting network 'iso' needs root (CAP_NET_ADMIN): run qemuwrap as root"],\
        done.stderr


# -- a real QEMU on a tap ----------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed "
                    "(Debian package qemu-system-x86)")
def test_qemu_guest_gets_a_lease_through_its_tap(hostns, tmp_path):
    """A real QEMU (TCG) whose virtio NIC is a tap from GuestTap, built with
    netdev_options: its firmware (iPXE, network boot) asks dnsmasq for an address and
    gets one from the range.  After QEMU ends and the tap and network are stopped,
    nothing is left in the namespace.  (The demo guest has no virtio-net driver yet, so
    the guest side here is QEMU's own network boot ROM.)"""
    define(tmp_path, NAT)
    networks.start("natnet")
    mac = "52:54:00:12:34:56"
    host = interface("<interface type='network'><source network='natnet'/></interface>")
    tap = comp.GuestTap(host, mac, ifname="qwtest9", bridge=networks.bridge_of("natnet"))
    ifname = tap.start()["ifname"]
    vhost = comp.use_vhost(host, "virtio", comp.vhost_available())
    device = ",".join(["virtio-net-pci,netdev=hostnet0,id=net0,mac=" + mac,
                       *(f"{k}={v}" for k, v in comp.nic_device_options(host, "virtio"))])
    argv = [QEMU, "-machine", "pc,accel=tcg", "-m", "128", "-nodefaults", "-display", "none",
            "-serial", "none", "-boot", "n",
            "-netdev", comp.netdev_options("hostnet0", ifname, vhost=vhost),
            "-device", device]
    log = (tmp_path / "qemu.log").open("w")
    qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        def leased() -> bool:
            return any(lease["mac"] == mac for lease in networks.info("natnet")["leases"])
        assert wait_for(leased, 120, 0.5), (tmp_path / "qemu.log").read_text()
        lease = next(x for x in networks.info("natnet")["leases"] if x["mac"] == mac)
        assert 100 <= int(lease["ip"].rsplit(".", 1)[1]) <= 120
    finally:
        qemu.kill()
        qemu.wait(timeout=10)
        log.close()
    tap.stop()
    networks.stop("natnet")
    assert_nothing_left(hostns, tmp_path / "run" / "networks" / "natnet")


# -- the demo guest on a NAT network --------------------------------------------------

def demo_has_network() -> bool:
    from qemuwrap import demoguest

    return b"qemuwrap.net=" in demoguest.init_script()


class DemoGuest:
    """The demo guest under QEMU (TCG) with one virtio NIC on a GuestTap: a hand-written
    argv whose network options come from netdev_options / nic_device_options."""

    def __init__(self, image, workdir: Path, name: str, mac: str, cmdline: str):
        host = interface("<interface type='network'><source network='natnet'/></interface>")
        self.tap = comp.GuestTap(host, mac, ifname=f"qw{name}",
                                 bridge=networks.bridge_of("natnet"))
        ifname = self.tap.start()["ifname"]
        self.serial = workdir / f"{name}.serial.log"
        self.out = workdir / f"{name}.qemu.out"
        device = ",".join([f"virtio-net-pci,netdev=hostnet0,id=net0,mac={mac}",
                           *(f"{k}={v}" for k, v in comp.nic_device_options(host, "virtio"))])
        vhost = comp.use_vhost(host, "virtio", comp.vhost_available())
        argv = [QEMU, "-accel", "tcg", "-machine", "pc,acpi=on", "-m", "256", "-nodefaults",
                "-no-user-config", "-display", "none", "-no-reboot",
                "-kernel", str(image.kernel), "-initrd", str(image.initrd),
                "-append", "console=ttyS0 panic=-1 quiet qemuwrap.poweroff=0 qemuwrap.agent=0 "
                + cmdline, "-serial", f"file:{self.serial}",
                "-netdev", comp.netdev_options("hostnet0", ifname, vhost=vhost),
                "-device", device]
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)

    def line(self, prefix: str, timeout: float = 120) -> str:
        def found() -> bool:
            return any(ln.startswith(prefix) for ln in self.log().splitlines()[:-1]) \
                or self.proc.poll() is not None
        wait_for(found, timeout, 0.1)
        lines = [ln for ln in self.log().splitlines() if ln.startswith(prefix)]
        assert lines, f"no {prefix!r}:\n{self.log()[-2000:]}\n{self.out.read_text()[-1000:]}"
        return lines[0]

    def log(self) -> str:
        try:
            return self.serial.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def destroy(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.tap.stop()


@pytest.mark.slow
@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed "
                    "(Debian package qemu-system-x86)")
def test_demo_guests_on_a_nat_network(hostns, tmp_path, request):
    """Two demo guests on a NAT network: each gets a lease (the first its fixed address),
    pings the gateway, and the second pings the first; after both are destroyed and the
    network stopped, nothing of either is left in the namespace."""
    if not demo_has_network():
        pytest.skip("this demo guest has no network support (udhcpc on virtio-net comes "
                    "with the demo guest's virtio update)")
    demo_image = request.getfixturevalue("demo_image")
    define(tmp_path, NAT)
    networks.start("natnet")
    started: list[DemoGuest] = []
    try:
        first = DemoGuest(demo_image, tmp_path, "first", "52:54:00:77:00:09",
                          "qemuwrap.net=dhcp")
        started.append(first)
        assert first.line("net: eth0 ").startswith("net: eth0 lease 10.77.0.9/24 router "
                                                   "10.77.0.1")
        assert first.line("net: ping ") == "net: ping 10.77.0.1 ok"
        second = DemoGuest(demo_image, tmp_path, "second", "52:54:00:77:00:42",
                           "qemuwrap.net=dhcp qemuwrap.ping=10.77.0.9")
        started.append(second)
        lease = second.line("net: eth0 ")
        assert lease.startswith("net: eth0 lease 10.77.0.1") and "router 10.77.0.1" in lease
        assert second.line("net: ping 10.77.0.9") == "net: ping 10.77.0.9 ok"
        macs = {x["mac"] for x in networks.info("natnet")["leases"]}
        assert macs == {"52:54:00:77:00:09", "52:54:00:77:00:42"}
    finally:
        for guest in started:
            guest.destroy()
    networks.stop("natnet")
    assert_nothing_left(hostns, tmp_path / "run" / "networks" / "natnet")
