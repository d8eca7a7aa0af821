"""Guests on real networks through qemuwrap itself: the taps the supervisor makes before
QEMU, attaches, and removes after it (issue 8, "Networks").

The integration tests work in a network namespace each test makes: the test thread enters
it (pyroute2, to look at links), and every qemuwrap command runs there through
``ip netns exec`` (which also gives it the namespace's /sys), so bridges, taps, dnsmasq,
nft tables and QEMU never touch the host's network; the namespace goes in teardown, and
whatever ran in it with it.  They need root (CI runs as root), ``ip``, ``dnsmasq``,
``nft`` and dnsmasq's ``dhcp_release``, and skip with the reason otherwise.  The guest is
the demo guest: its init takes ``qemuwrap.net=dhcp|ADDR/PREFIX`` and
``qemuwrap.ping=ADDR`` on the kernel command line and reports lease and pings on its
serial console.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from qemuwrap.companions import network as comp
from qemuwrap.conf import guid
from qemuwrap.conf.domain import loads
from qemuwrap.errors import Problems, QemuwrapError
from qemuwrap.qemu.build import Paths
from qemuwrap.qemu.capabilities import Capabilities
from qemuwrap.qemu.command import build_command
from qemuwrap.qemu.companions import plan
from qemuwrap.runtime import companions as runtime
from qemuwrap.runtime.record import Companion, GuestRecord, Link

from conftest import DATA, DEFAULT_CAPS, QEMU, ROOT
from test_launcher import Env, gone

CAPS = Capabilities.from_file(DEFAULT_CAPS)
DEFAULT_NET = DATA / "networks" / "default.xml"  # libvirt's own default network


def domain(devices: str, uuid: str = "0b7e1c2d-3f4a-4b5c-8d6e-7f8091a2b3c4"):
    return loads(f"<domain type='qemu'><name>g</name><uuid>{uuid}</uuid>"
                 "<memory unit='MiB'>64</memory><os><type arch='x86_64' machine='pc'>hvm"
                 f"</type></os><devices>{devices}</devices></domain>",
                 random=guid.counting_random)


# -- names, plans, records (no root, no QEMU) --------------------------------------------

def test_tap_names_come_from_the_uuid_and_position():
    name = comp.guest_tap_name("0b7e1c2d-3f4a-4b5c-8d6e-7f8091a2b3c4", 1)
    assert name == "qw957c8dbcn1"  # the golden case net-taps has it too
    assert comp.guest_tap_name("0B7E1C2D-3F4A-4B5C-8D6E-7F8091A2B3C4", 1) == name
    # uuids that differ only at the end (hand-numbered) still get different names
    a = comp.guest_tap_name("00000000-0000-4000-8000-000000000001", 0)
    b = comp.guest_tap_name("00000000-0000-4000-8000-000000000002", 0)
    assert a != b
    for index in (0, 9, 9999, 10000, 123456789):
        got = comp.guest_tap_name("00000000-0000-4000-8000-000000000001", index)
        assert re.fullmatch(r"[a-z0-9]{1,15}", got), got
    assert len({comp.guest_tap_name("00000000-0000-4000-8000-000000000001", i)
                for i in range(20000)}) == 20000


def test_dry_run_and_start_build_the_same_taps():
    """The command's ifname and the planned tap companion come from one function, and a
    second build (start, restore, adopt) gives the same names."""
    devices = ("<interface type='network'><mac address='52:54:00:00:0b:01'/>"
               "<source network='golden'/><model type='virtio'/><driver queues='2'/>"
               "<mtu size='1400'/></interface>"
               "<interface type='user'/>"
               "<interface type='bridge'><mac address='52:54:00:00:0b:02'/>"
               "<source bridge='br7'/><target dev='vnet3'/></interface>"
               "<interface type='ethernet'><target dev='mine0' managed='no'/></interface>")
    commands, plans = [], []
    for _ in range(2):
        dom = domain(devices)
        commands.append(build_command(dom, CAPS, "/run/qemuwrap/g").argv)
        plans.append([c.to_json() for c in plan(dom, Paths("/run/qemuwrap/g"))])
    assert commands[0] == commands[1] and plans[0] == plans[1]
    taps = [c for c in plans[0] if c["kind"] == "tap"]
    ifnames = re.findall(r"ifname=([^,]+)", " ".join(commands[0]))
    assert [t["params"]["ifname"] for t in taps] == ifnames
    assert ifnames[:2] == ["qw957c8dbcn0", "qw957c8dbcn2"]  # vnet3: libvirt's, chosen again
    assert ifnames[2] == "mine0"
    first, second, third = (t["params"] for t in taps)
    assert (first["network"], first["bridge"], first["mtu"], first["queues"]) == \
        ("golden", None, 1400, 2)
    assert first["state_root"] == "/run/qemuwrap" and first["managed"] is True
    assert first["where"].startswith("line 1: /domain/devices/interface")
    assert (second["bridge"], second["network"], second["queues"]) == ("br7", None, 1)
    assert third["managed"] is False
    assert [t["device"] for t in taps] == ["net0", "net2", "net3"]
    assert all(t["argv"] is None for t in taps)


def test_dry_run_shows_the_taps(tmp_path):
    """Text: a comment line per tap; --json: the companions; --explain: the element."""
    path = tmp_path / "g.xml"
    path.write_text("<domain type='qemu'><name>g</name>"
                    "<uuid>0b7e1c2d-3f4a-4b5c-8d6e-7f8091a2b3c4</uuid>"
                    "<memory unit='MiB'>64</memory><os><type arch='x86_64' machine='pc'>hvm"
                    "</type></os><devices><interface type='bridge'>"
                    "<mac address='52:54:00:00:0b:02'/><source bridge='br7'/></interface>"
                    "</devices></domain>")

    def dry(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "qemuwrap", "dry-run", str(path), "--no-host-check",
             "--caps", str(DEFAULT_CAPS), "--state-dir", str(tmp_path / "s"), *extra],
            capture_output=True, text=True, timeout=60, check=False)

    text = dry()
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0] == (
        "# tap for net0, made first: tap qw957c8dbcn0 (MAC fe:54:00:00:0b:02, MTU of the "
        "bridge) attached to bridge 'br7', deleted after QEMU ends")
    assert "ifname=qw957c8dbcn0," in text.stdout
    shown = json.loads(dry("--json").stdout)
    assert [c["kind"] for c in shown["companions"]] == ["tap"]
    assert shown["companions"][0]["params"]["ifname"] == "qw957c8dbcn0"
    explain = dry("--explain").stdout
    assert "# companion tap (net0)  # line 1: <interface>: tap qw957c8dbcn0" in explain
    assert "-netdev tap,id=hostnet0,ifname=qw957c8dbcn0," in explain


def test_a_tap_is_recorded_as_a_link_and_old_records_still_load():
    rec = GuestRecord("g", "u", "/run/qemuwrap/g", 1.0, companions=[
        Companion("tap", "net0", link=Link("qw1n0", 7, mac="52:54:00:00:00:01",
                                           bridge="virbr0", leases="/x/dnsmasq.leases")),
        Companion("swtpm", "tpm0")])
    again = GuestRecord.loads(rec.dumps(), "state.json")
    assert again == rec and again.companions[0].link.index == 7
    old = json.loads(rec.dumps())
    for entry in old["companions"]:
        del entry["link"]  # a record written before taps were recorded
    assert GuestRecord.loads(json.dumps(old).encode(), "state.json").companions[0].link is None
    old["companions"][0]["link"] = {"index": 3}
    with pytest.raises(QemuwrapError, match="lacks 'companions\\[0\\].link.name'"):
        GuestRecord.loads(json.dumps(old).encode(), "state.json")


def test_refusals_before_spawn_say_what_to_do(tmp_path, monkeypatch):
    """What the launcher checks before anything runs, one line each; the host-wide ones
    (root, /dev/net/tun) once for all NICs.  ('golden' is defined in the tests'
    configuration, data/config, and not active under this state root.)"""
    dom = domain("<interface type='network'><source network='golden'/></interface>"
                 "<interface type='ethernet'/><interface type='ethernet'/>")
    build_command(dom, CAPS, str(tmp_path / "g"))
    monkeypatch.setattr(comp, "has_net_admin", lambda: False)
    specs = [c.to_json() for c in plan(dom, Paths(str(tmp_path / "g")))]
    with pytest.raises(Problems) as caught:
        runtime.refuse_unstartable(runtime.from_specs(specs))
    assert str(caught.value).splitlines() == [
        "line 1: /domain/devices/interface[1]: network 'golden' is not active: start it with "
        "'qemuwrap net-start golden'",
        "creating a tap device needs root (CAP_NET_ADMIN): run qemuwrap as root, or use "
        "<interface type='ethernet'> with <target dev='TAP' managed='no'/> naming a tap "
        "made beforehand"]
    monkeypatch.setattr(comp, "has_net_admin", lambda: True)
    monkeypatch.setattr(comp, "TUN_DEVICE", str(tmp_path / "no-tun"))
    monkeypatch.setattr(comp, "netlink", _no_links)
    lines = [line for c in runtime.from_specs(specs)[1:] for line in c.refusals()]
    assert lines == ["/dev/net/tun is missing: load the tun module (modprobe tun)"] * 2


def test_a_lease_release_is_confirmed_and_its_failure_is_a_note(tmp_path, monkeypatch,
                                                                   capsys):
    """dhcp_release cannot tell whether dnsmasq took the release: the lease file must
    lose the lease, else one line says so; when the guest's tap goes, that line is a
    note (the lease expires by itself), and the tap is deleted all the same."""
    leases = tmp_path / "dnsmasq.leases"
    leases.write_text("1795816231 52:54:00:7e:00:01 192.168.122.132 * 01:52:54:00:7e:00:01\n"
                      "1795816231 52:54:00:7e:00:02 192.168.122.133 * *\n")
    fake = tmp_path / "dhcp_release"  # takes the release, and dnsmasq ignores it
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/calls\n")
    fake.chmod(0o755)
    monkeypatch.setattr(comp, "host_tool", lambda name: str(fake))
    monkeypatch.setattr(comp, "RELEASE_TIMEOUT", 0.2)
    with pytest.raises(QemuwrapError, match=r"^dhcp_release: dnsmasq kept the lease of "
                                            r"52:54:00:7e:00:01 \(192.168.122.132\)"):
        comp.release_leases(str(leases), "virbr0", "52:54:00:7E:00:01")
    assert (tmp_path / "calls").read_text() == \
        "virbr0 192.168.122.132 52:54:00:7e:00:01 01:52:54:00:7e:00:01\n"
    assert comp.release_leases(str(leases), "virbr0", "52:54:00:7e:00:09") == []
    removed = []
    monkeypatch.setattr(comp, "remove_tap", lambda name, index: removed.append(name))
    monkeypatch.setattr(comp, "host_tool", lambda name: name)  # not installed
    runtime.remove_link(Link("qw1n0", 4, mac="52:54:00:7e:00:01", bridge="virbr0",
                             leases=str(leases)))
    assert removed == ["qw1n0"]
    assert capsys.readouterr().err == (
        "qemuwrap: tap qw1n0: note: the DHCP lease of 52:54:00:7e:00:01 stays until it "
        "expires (dhcp_release is not installed (Debian package dnsmasq-utils))\n")


class _NoLinks:
    def link_lookup(self, ifname):
        return []


def _no_links(what):
    from contextlib import nullcontext

    return nullcontext(_NoLinks())


# -- in a network namespace, with the demo guest -----------------------------------------

_HOST_MARKS = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces, bridges and taps "
                       "need root"),
    pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed "
                       "(Debian package qemu-system-x86)"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="ip (iproute2) is missing"),
    pytest.mark.skipif(comp.host_tool("dnsmasq") == "dnsmasq",
                       reason="dnsmasq is not installed (Debian package dnsmasq-base)"),
    pytest.mark.skipif(comp.host_tool("nft") == "nft",
                       reason="nft is not installed (Debian package nftables)"),
    pytest.mark.skipif(comp.host_tool("dhcp_release") == "dhcp_release",
                       reason="dhcp_release is not installed (Debian package "
                       "dnsmasq-utils)"),
    pytest.mark.slow,
]


def needs_host(test):
    for mark in _HOST_MARKS:
        test = mark(test)
    return test


class NsEnv(Env):
    """Env (test_launcher) whose qemuwrap commands run in network namespace ``ns``."""

    def __init__(self, tmp_path: Path, image, ns: str):
        super().__init__(tmp_path, image)
        self.ns = ns

    def argv(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *super().argv(*args)]

    def ok(self, *args: str, timeout: float = 90) -> str:
        res = self.qw(*args, timeout=timeout)
        assert res.returncode == 0, res.stderr
        return res.stdout

    def guest(self, name: str, nic: str, cmdline: str, genid: str | None = "",
              uuid: str = "d1be9029-163b-4415-a539-d03763ce7942", **kwargs) -> Path:
        path = self.xml(name, genid=genid, extra_devices=nic,
                        cmdline=f"qemuwrap.poweroff=0 qemuwrap.agent=0 {cmdline}", **kwargs)
        path.write_text(re.sub(r"<uuid>[^<]*</uuid>", f"<uuid>{uuid}</uuid>",
                               path.read_text()))
        return path


@pytest.fixture
def host_ns(tmp_path, monkeypatch):
    """A namespace standing in for the host (this thread works in it; 'lo' up, as on a
    host), configuration and state in the test's directory; gone after the test, with
    every process that ran in it."""
    from pyroute2 import netns
    from test_networks import make_netns, remove_netns

    monkeypatch.setenv("QEMUWRAP_CONFIG_DIR", str(tmp_path / "etc"))
    monkeypatch.setenv("QEMUWRAP_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("QEMUWRAP_DATA_DIR", str(tmp_path / "data"))
    ns = make_netns("gn")
    netns.pushns(ns)
    try:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
        yield ns
    finally:
        netns.popns()
        remove_netns(ns)


@pytest.fixture
def net(host_ns, tmp_path, demo_image):
    env = NsEnv(tmp_path, demo_image, host_ns)
    try:
        yield env
    finally:
        env.cleanup()


def links() -> dict[str, dict]:
    """Every link in the namespace: name -> index, master's name, MAC, alias."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        raw = ipr.get_links()
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in raw}
        return {link.get_attr("IFLA_IFNAME"): {
            "index": link["index"], "master": names.get(link.get_attr("IFLA_MASTER")),
            "mac": link.get_attr("IFLA_ADDRESS"), "alias": link.get_attr("IFLA_IFALIAS"),
            "mtu": link.get_attr("IFLA_MTU")} for link in raw}


def ruleset() -> str:
    return subprocess.run([comp.host_tool("nft"), "list", "ruleset"], capture_output=True,
                          text=True, check=True, timeout=10).stdout


def leases(env: NsEnv, network: str = "default") -> list[dict]:
    return comp.read_leases(str(env.root / "networks" / network / "dnsmasq.leases"))


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def nic(kind: str, source: str, mac: str) -> str:
    return (f"<interface type='{kind}'><mac address='{mac}'/><source {kind}='{source}'/>"
            "<model type='virtio'/></interface>")


GENID = "9f1c3a52-8e47-4d2b-a6c0-3b5e7d9f1a24"


@needs_host
@pytest.mark.parametrize("after", ["destroy", "sigkill+destroy", "sigkill+adopt+destroy"])
def test_demo_guest_on_the_default_network(net, after):
    """libvirt's default network (NAT): the demo guest gets a DHCP lease (its console and
    dnsmasq's lease file say so) and pings its gateway, through a tap named before QEMU
    started (the dry run shows the very argv that runs).  After ``destroy`` — also after
    the supervisor was SIGKILLed, and after a new supervisor adopted the guest — no tap,
    no lease and no rule of the guest is left."""
    net.ok("net-define", str(DEFAULT_NET))
    net.ok("net-start", "default")
    before_links, before_rules = links(), ruleset()
    assert set(before_links) == {"lo", "virbr0"}
    mac = "52:54:00:7e:00:01"
    xml = net.guest("g1", nic("network", "default", mac), "qemuwrap.net=dhcp", genid=GENID)
    dry = json.loads(net.ok("dry-run", str(xml), "--json"))
    [tap] = [c for c in dry["companions"] if c["kind"] == "tap"]
    ifname = tap["params"]["ifname"]
    assert re.fullmatch(r"qw[0-9a-f]{8}n0", ifname)

    net.ok("start", str(xml))
    record = net.record("g1")
    assert record["argv"] == dry["argv"]  # exact in the dry run
    [entry] = record["companions"]
    assert entry["kind"] == "tap" and entry["id"] == "net0" and entry["proc"] is None
    assert entry["link"]["name"] == ifname and entry["link"]["bridge"] == "virbr0"
    made = links()[ifname]
    assert made["master"] == "virbr0" and made["mac"] == "fe" + mac[2:]
    assert made["alias"] == "qemuwrap g1 net0" and made["index"] == entry["link"]["index"]
    assert [c["kind"] for c in net.status("g1")["companions"]] == ["tap"]

    text = net.wait_serial("g1", r"net: ping \S+ (ok|failed)", timeout=120)
    lease = re.search(r"net: eth0 lease (192\.168\.122\.\d+)/24 router 192\.168\.122\.1",
                      text)
    assert lease, text
    assert "net: ping 192.168.122.1 ok" in text
    assert [(x["mac"], x["ip"]) for x in leases(net)] == [(mac, lease.group(1))]

    if after.startswith("sigkill"):
        os.kill(record["supervisor_pid"], signal.SIGKILL)
        assert wait_for(lambda: gone(record["supervisor_pid"]), 10)
        assert psutil.pid_exists(record["qemu_pid"])  # QEMU runs on, its tap too
        assert ifname in links()
    if after == "sigkill+adopt+destroy":
        adopter = net.popen("adopt", "g1")
        assert wait_for(lambda: net.record("g1")["supervisor_pid"] == adopter.pid, 30)
        assert net.record("g1")["companions"][0]["link"]["name"] == ifname
    net.ok("destroy", "g1")
    assert wait_for(lambda: leases(net) == [], 10), leases(net)
    assert links() == before_links
    assert ruleset() == before_rules
    assert gone(record["qemu_pid"])
    net.ok("net-stop", "default")
    assert set(links()) == {"lo"} and ruleset().strip() == ""


@needs_host
def test_two_guests_on_one_bridge_ping_each_other(net):
    """type='bridge' on a bridge of the host's: two guests started at the same time (so
    their taps cannot race for a name; the first's a multi-queue tap, QEMU opening both
    queues) reach each other; destroy removes both taps and leaves the bridge, which is
    not qemuwrap's."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.link("add", ifname="br0", kind="bridge", br_stp_state=0)
        ipr.link("set", index=ipr.link_lookup(ifname="br0")[0], state="up")
    multiqueue = nic("bridge", "br0", "52:54:00:7e:00:0a").replace(
        "</interface>", "<driver queues='2'/></interface>")
    first = net.guest("a", multiqueue, "qemuwrap.net=10.99.0.10/24",
                      uuid="7a1e0c55-0000-4000-8000-00000000000a")
    second = net.guest("b", nic("bridge", "br0", "52:54:00:7e:00:0b"),
                       "qemuwrap.net=10.99.0.11/24 qemuwrap.ping=10.99.0.10",
                       uuid="7a1e0c55-0000-4000-8000-00000000000b")
    starts = [net.popen("start", str(first)), net.popen("start", str(second))]
    for proc in starts:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    taps = {name for name, link in links().items() if link["master"] == "br0"}
    assert len(taps) == 2 and all(t.startswith("qw") for t in taps)
    assert "queues=2" in " ".join(net.record("a")["argv"])
    text = net.wait_serial("b", r"net: ping 10\.99\.0\.10 (ok|failed)", timeout=120)
    assert "net: ping 10.99.0.10 ok" in text
    net.ok("destroy", "a")
    net.ok("destroy", "b")
    assert set(links()) == {"lo", "br0"}


@needs_host
def test_a_new_qemu_after_a_crash_gets_its_tap_again(net):
    """on_crash=restart: the crashed QEMU's tap goes and the new QEMU's is made (same
    name, a new device); destroy removes it."""
    net.ok("net-define", str(DEFAULT_NET))
    net.ok("net-start", "default")
    xml = net.guest("g1", nic("network", "default", "52:54:00:7e:00:02"), "",
                    lifecycle={"on_crash": "restart"})
    net.ok("start", str(xml))
    record = net.record("g1")
    ifname = record["companions"][0]["link"]["name"]
    old_index = links()[ifname]["index"]
    os.kill(record["qemu_pid"], signal.SIGKILL)

    def restarted() -> bool:
        try:
            now = net.record("g1")
        except (FileNotFoundError, ValueError):
            return False
        return now["qemu_pid"] not in (None, record["qemu_pid"]) and bool(now["companions"])
    assert wait_for(restarted, 60), (net.gdir("g1") / "supervisor.log").read_text()
    assert links()[ifname]["index"] != old_index
    assert links()[ifname]["master"] == "virbr0"
    net.ok("destroy", "g1")
    assert ifname not in links()


@needs_host
def test_a_failed_launch_leaves_no_tap(net):
    """QEMU refuses its command after the tap was made: the start fails in one line and
    the tap goes again."""
    xml = net.guest("g1", nic("bridge", "br0", "52:54:00:7e:00:04"), "")
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.link("add", ifname="br0", kind="bridge")
    text = xml.read_text().replace(
        "<domain type='qemu'>", "<domain type='qemu' "
        "xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>").replace(
        "</devices>", "</devices><qemu:commandline><qemu:arg value='-no-such-option'/>"
        "</qemu:commandline>")
    xml.write_text(text)
    res = net.qw("start", str(xml))
    assert res.returncode == 1
    assert len(res.stderr.splitlines()) == 1 and "QEMU" in res.stderr, res.stderr
    assert set(links()) == {"lo", "br0"} and net.qemus() == []


@needs_host
def test_start_refuses_before_anything_runs(net):
    """A network that is defined but not active, a tap name already taken: one line
    each, exit 1, no QEMU, no tap, no state left."""
    net.ok("net-define", str(DEFAULT_NET))
    xml = net.guest("g1", nic("network", "default", "52:54:00:7e:00:03"), "")
    line = next(n for n, text in enumerate(xml.read_text().splitlines(), 1)
                if "<interface" in text)
    res = net.qw("start", str(xml))
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        f"qemuwrap: {xml}: line {line}: /domain/devices/interface: network 'default' is not "
        "active: start it with 'qemuwrap net-start default'"]
    net.ok("net-start", "default")
    dry = json.loads(net.ok("dry-run", str(xml), "--json"))
    ifname = dry["companions"][0]["params"]["ifname"]
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.link("add", ifname=ifname, kind="bridge")  # any device of that name
    res = net.qw("start", str(xml))
    assert res.returncode == 1
    assert res.stderr.splitlines() == [
        f"qemuwrap: {xml}: line {line}: /domain/devices/interface: tap '{ifname}' already "
        "exists: another guest with this uuid runs, or a guest's tap was left behind "
        f"('ip link delete {ifname}' if no QEMU uses it)"]
    assert net.qemus() == [] and not (net.gdir("g1") / "state.json").exists()


def test_start_without_root_says_so():
    """Without CAP_NET_ADMIN a guest with a tap NIC is refused before anything runs, and
    the line says what to do. Root with CAP_NET_ADMIN dropped (qemuwrap asks for the
    capability, not the uid), so the checkout need not be readable by another user."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("dropping a capability needs root and setpriv (util-linux)")
    if QEMU is None:
        pytest.skip("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="qemuwrap-noroot-"))
    try:
        xml = work / "g.xml"
        xml.write_text("<domain type='qemu'><name>g</name>"
                       "<uuid>0b7e1c2d-3f4a-4b5c-8d6e-7f8091a2b3c4</uuid>"
                       "<memory unit='MiB'>64</memory><os><type arch='x86_64' machine='pc'>"
                       "hvm</type></os><devices><interface type='ethernet'/></devices>"
                       "</domain>")
        done = subprocess.run(
            ["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin",
             sys.executable, "-m", "qemuwrap",
             "start", str(xml), "--caps", str(DEFAULT_CAPS), "--state-dir",
             str(work / "state")],
            capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
            env={**os.environ, "HOME": str(work), "QEMUWRAP_CONFIG_DIR": str(work)})
        assert done.returncode == 1, done.stderr
        assert done.stderr.splitlines() == [
            f"qemuwrap: {xml}: creating a tap device needs root (CAP_NET_ADMIN): run "
            "qemuwrap as root, or use <interface type='ethernet'> with <target dev='TAP' "
            "managed='no'/> naming a tap made beforehand"]
        assert not (work / "state" / "g" / "state.json").exists()
    finally:
        shutil.rmtree(work)
