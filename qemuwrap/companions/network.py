"""Bringing networks and guest NICs up on the host: bridges, taps, dnsmasq, nftables.

Two kinds of objects, each with ``prepare`` (check, change nothing), ``start`` (do it,
returning a JSON-able *record* of what was done) and ``stop``; and a static
``cleanup(record)`` that undoes a record left by a process that was killed:

- :class:`NetworkRuntime`: one libvirt-style network.  For nat, route and isolated
  networks: the bridge (netlink), its addresses and MTU, an nftables table of its own,
  ``net.ipv4.ip_forward`` when it forwards, and dnsmasq for DHCP and DNS.  For
  ``forward mode='bridge'`` nothing is started: the host bridge must exist.
- :class:`GuestTap`: the tap device of one guest NIC, attached to a bridge.

Netlink goes through pyroute2 (no ``ip`` commands), except for a guest's tap, which
every ``start`` and supervisor handles: that goes through the few requests of
``companions/rtnl.py`` (its docstring says why).  nftables rules go through
``nft -f -`` with a ruleset in nft's own language, because one such file is applied as
one transaction (``table``; ``delete table``; ``table {...}`` replaces ours atomically
and idempotently) and reads like what ``nft list table`` shows; ``nft -j`` would need
the same rules as verbose JSON for no gain here.  Every wait has a deadline; every
error is one line naming its part (``netlink:``, ``dnsmasq:``, ``nft:``).

QEMU's side of a tap is built by the pure functions at the end (``netdev_options``,
``nic_device_options``, ``link_commands``): QEMU opens the tap by name
(``-netdev tap,ifname=...,script=no,downscript=no``), which keeps the argv exact and
visible in a dry run, and works the same for a QEMU that is later adopted.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from qemuwrap.companions import rtnl
from qemuwrap.conf.network import InterfaceHost, Network
from qemuwrap.errors import QemuwrapError

#: Every wait on a host tool or process ends by then (seconds).
DEFAULT_TIMEOUT = 10.0
#: How long dnsmasq gets to drop a released lease from its file (it does at once).
RELEASE_TIMEOUT = 2.0
VHOST_NET = "/dev/vhost-net"
TUN_DEVICE = "/dev/net/tun"
#: CAP_NET_ADMIN's bit in /proc/self/status CapEff.
_CAP_NET_ADMIN = 12
Record = dict[str, Any]
SaveRecord = Callable[[Record], None]


class NetworkError(QemuwrapError):
    """Bringing a network or a tap up or down failed; the text names the part."""


# --------------------------------------------------------------------------------------
# Privileges and netlink
# --------------------------------------------------------------------------------------

def has_net_admin() -> bool:
    """Whether this process may change the host's network (CAP_NET_ADMIN in effect)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_NET_ADMIN & 1)
    except OSError:
        pass
    return os.geteuid() == 0


def require_net_admin(what: str, alternative: str = "") -> None:
    if not has_net_admin():
        raise NetworkError(f"netlink: {what} needs root (CAP_NET_ADMIN): run qemuwrap as "
                           f"root{alternative}")


@contextmanager
def netlink(what: str) -> Iterator[Any]:
    """An rtnetlink socket; a netlink failure becomes one line naming ``what``."""
    from pyroute2 import IPRoute  # ~40 ms: only when a network is really touched
    from pyroute2.netlink.exceptions import NetlinkError
    try:
        with IPRoute() as ipr:
            yield ipr
    except NetlinkError as exc:
        hint = " (needs root: CAP_NET_ADMIN)" if exc.code == errno.EPERM else ""
        raise NetworkError(f"netlink: {what}: {os.strerror(exc.code)}{hint}") from None


def link_index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def link_kind(ipr: Any, index: int) -> str | None:
    links = ipr.get_links(index)
    info = links[0].get_attr("IFLA_LINKINFO") if links else None
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def _delete_link(ipr: Any, name: str, index: int | None) -> bool:
    """Delete link ``name`` if it is still the one with ``index`` (an index is never
    reused soon, so a later device of the same name is never taken for ours)."""
    current = link_index(ipr, name)
    if current is None or (index is not None and current != index):
        return False
    ipr.link("del", index=current)
    return True


# --------------------------------------------------------------------------------------
# Processes: run a tool with a deadline, stop a daemon we started
# --------------------------------------------------------------------------------------

def _run_tool(part: str, argv: list[str], *, input_text: str | None = None,
              timeout: float = DEFAULT_TIMEOUT) -> str:
    """Run a host tool to completion within ``timeout``; a failure is one line naming it."""
    try:
        done = subprocess.run(argv, input=input_text, capture_output=True, text=True,
                              timeout=timeout, check=False, stdin=None if input_text
                              is not None else subprocess.DEVNULL)
    except FileNotFoundError:
        raise NetworkError(f"{part}: {argv[0]} not found (install it: see README)") from None
    except subprocess.TimeoutExpired:
        raise NetworkError(f"{part}: no answer within {timeout:g} s") from None
    if done.returncode != 0:
        lines = [ln.strip() for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        reason = lines[0] if lines else f"exit status {done.returncode}"
        raise NetworkError(f"{part}: {reason}")
    return done.stdout


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat): with
    the pid, it identifies one process for good."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat[stat.rindex(b")") + 2:].split()[19])


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def stop_process(pid: int, start_time: int | None, marker: str,
                 timeout: float = DEFAULT_TIMEOUT) -> bool:
    """SIGTERM the process ``pid`` if it is still the one we started (same start time,
    ``marker`` in its command line), SIGKILL it after ``timeout``; wait until it is gone.
    Returns whether it was running."""
    if process_start_time(pid) is None or (start_time is not None
                                           and process_start_time(pid) != start_time):
        return False
    if marker not in _cmdline(pid):
        return False
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        if not _wait_pidfd(pidfd, timeout):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            if not _wait_pidfd(pidfd, timeout):
                raise NetworkError(f"process {pid} did not end within {2 * timeout:g} s")
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)
    return True


def _wait_pidfd(pidfd: int, timeout: float) -> bool:
    import select
    readable, _, _ = select.select([pidfd], [], [], timeout)
    return bool(readable)


def host_tool(name: str) -> str:
    """``name`` on PATH, else in /usr/sbin or /sbin (where Debian puts dnsmasq and nft,
    often not on a non-login PATH); the bare name when nowhere, so the error names it."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    return found or name


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# --------------------------------------------------------------------------------------
# dnsmasq and nftables: what they are given (pure)
# --------------------------------------------------------------------------------------

class NetworkFiles:
    """The runtime files of one network, all in its own directory."""

    def __init__(self, rundir: str):
        self.dir = rundir
        self.conf = os.path.join(rundir, "dnsmasq.conf")
        self.pid = os.path.join(rundir, "dnsmasq.pid")
        self.leases = os.path.join(rundir, "dnsmasq.leases")
        self.log = os.path.join(rundir, "dnsmasq.log")

    @property
    def removable(self) -> tuple[str, ...]:
        """What ``stop`` removes (the log stays, as a guest's logs do)."""
        return (self.conf, self.pid, self.leases)


def nft_table(net: Network) -> str:
    """The name of the one nftables table (family ip) that holds a network's rules."""
    return f"qemuwrap-{net.name}"


def _lease(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    return "infinite" if seconds == 0 else str(seconds)


def dnsmasq_conf(net: Network, files: NetworkFiles) -> str:
    """dnsmasq's whole configuration for ``net``: bound to the bridge only, reading no
    file it is not given here (no /etc/hosts; /etc/resolv.conf only for a forwarding
    network without its own forwarders).  Fixed DHCP hosts and DNS names are in this
    file too, not in dhcp-hostsfile/addn-hosts files as libvirt has them: dnsmasq reads
    those after dropping root (to 'nobody'), so they would have to be readable by
    everyone along the whole path (measured: 'Permission denied' under a 0700 tmp
    directory, and the fixed hosts silently missing); this file is read as root."""
    assert net.bridge is not None
    lines = [f"# qemuwrap network '{net.name}': dnsmasq reads only this file",
             "strict-order", "no-hosts", "except-interface=lo", "bind-dynamic",
             f"interface={net.bridge}", f"log-facility={files.log}"]
    if not net.dns_enabled:
        lines.append("port=0")
    else:
        if net.domain is not None:
            lines += [f"domain={net.domain}", "expand-hosts"]
            if net.domain_local_only:
                lines.append(f"local=/{net.domain}/")
        if net.dns.forward_plain_names is False:
            lines.append("domain-needed")
        upstream = [(d, a) for d, a in net.dns.forwarders]
        if upstream or net.forward is None:
            lines.append("no-resolv")  # isolated: nothing upstream unless named
        else:
            lines.append("resolv-file=/etc/resolv.conf")
        for domain, addr in upstream:
            target = "#" if addr is None else str(addr)  # '#': the usual resolvers
            lines.append(f"server=/{domain}/{target}" if domain else f"server={target}")
        lines += [f"host-record={','.join(h.hostnames)},{h.ip}" for h in net.dns.hosts]
    ip = net.dhcp_ip
    if ip is not None:
        leases = 0
        for r in ip.ranges:
            parts = [str(r.start), str(r.end), str(ip.interface.netmask)]
            lease = _lease(r.lease_seconds)
            if lease is not None:
                parts.append(lease)
            lines.append("dhcp-range=" + ",".join(parts))
            leases += r.size
        if not ip.ranges:  # fixed hosts only: a static range over the subnet
            lines.append(f"dhcp-range={ip.network.network_address},static,"
                         f"{ip.interface.netmask}")
        leases += len(ip.hosts)
        lines += ["dhcp-no-override", "dhcp-authoritative", f"dhcp-lease-max={leases}"]
        for h in ip.hosts:  # MAC (or name), fixed address, name, lease
            lines.append("dhcp-host=" + ",".join(
                p for p in (h.mac, str(h.ip) if h.ip else None, h.name,
                            _lease(h.lease_seconds)) if p))
    return "\n".join(lines) + "\n"


def dnsmasq_argv(files: NetworkFiles, binary: str = "dnsmasq") -> list[str]:
    """dnsmasq daemonises; its parent exits once the daemon is ready, or with the reason
    it could not start (dnsmasq's own start-up protocol), so ``start`` needs no polling."""
    return [binary, f"--conf-file={files.conf}", f"--pid-file={files.pid}",
            f"--dhcp-leasefile={files.leases}"]


def nft_ruleset(net: Network) -> str:
    """Our table for ``net``, replacing any older one in the same transaction.

    - nat: the subnet is masqueraded towards anything outside it (TCP/UDP source ports
      in ``<nat><port>`` or 1024-65535, as libvirt does), not towards multicast or
      broadcast; forwarding from the bridge is accepted, towards it only for
      established/related connections.
    - route: forwarding both ways is accepted, nothing is translated.
    - isolated (no forward): nothing is forwarded from or to the bridge.
    In every mode traffic between two guests on the bridge is accepted and anything
    else that is forwarded from or to the bridge is rejected.  An ``accept`` here does
    not override a ``drop`` in another table (nftables evaluates every base chain).
    """
    assert net.bridge is not None
    table = nft_table(net)
    br = f'"{net.bridge}"'
    out_dev = f' oifname "{net.forward_dev}"' if net.forward_dev else ""
    in_dev = f' iifname "{net.forward_dev}"' if net.forward_dev else ""
    forward = [f"iifname {br} oifname {br} accept"]
    post: list[str] = []
    for ip in net.ips:
        subnet = str(ip.network)
        if net.forward == "nat":
            forward += [f"iifname {br} ip saddr {subnet}{out_dev} accept",
                        f"oifname {br} ip daddr {subnet}{in_dev} ct state "
                        "established,related accept"]
            ports = net.nat_ports or (1024, 65535)
            base = f"ip saddr {subnet} ip daddr != {subnet}{out_dev}"
            post += [f"ip saddr {subnet} ip daddr 224.0.0.0/24 return",
                     f"ip saddr {subnet} ip daddr 255.255.255.255 return",
                     f"{base} meta l4proto {{ tcp, udp }} masquerade to :{ports[0]}-{ports[1]}",
                     f"{base} masquerade"]
        elif net.forward == "route":
            forward += [f"iifname {br} ip saddr {subnet}{out_dev} accept",
                        f"oifname {br} ip daddr {subnet}{in_dev} accept"]
    forward += [f"iifname {br} reject", f"oifname {br} reject"]
    lines = [f"table ip {table}", f"delete table ip {table}", f"table ip {table} {{",
             "\tchain forward {",
             "\t\ttype filter hook forward priority filter; policy accept;",
             *(f"\t\t{rule}" for rule in forward), "\t}"]
    if post:
        lines += ["\tchain postrouting {",
                  "\t\ttype nat hook postrouting priority srcnat; policy accept;",
                  *(f"\t\t{rule}" for rule in post), "\t}"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def nft_delete(table: str) -> str:
    """Removes our table; the ``table`` line first makes it a no-op when it is gone."""
    return f"table ip {table}\ndelete table ip {table}\n"


# --------------------------------------------------------------------------------------
# A network
# --------------------------------------------------------------------------------------

class NetworkRuntime:
    """Bring one network up and down.  ``save`` (if given) receives the record after
    every step, so a process killed half way leaves a record ``cleanup`` can undo."""

    def __init__(self, net: Network, rundir: str, *, save: SaveRecord | None = None,
                 dnsmasq: str | None = None, nft: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT):
        if net.bridge is None:
            raise NetworkError(f"network '{net.name}' names no bridge (define it first)")
        self.net = net
        self.bridge: str = net.bridge
        self.files = NetworkFiles(rundir)
        self.save = save
        self.dnsmasq = dnsmasq or host_tool("dnsmasq")
        self.nft = nft or host_tool("nft")
        self.timeout = timeout
        self.record: Record = {"network": net.name, "bridge": net.bridge,
                               "rundir": rundir}

    @property
    def needs_dnsmasq(self) -> bool:
        return self.net.has_own_bridge and (self.net.dhcp_ip is not None
                                            or self.net.dns_enabled)

    def plan(self) -> list[dict[str, Any]]:
        """What ``start`` runs, for a dry run (nothing is checked or written): the nft
        ruleset it applies, and dnsmasq's command line and configuration."""
        if not self.net.has_own_bridge:
            return []
        steps: list[dict[str, Any]] = [{"name": "nft", "argv": [self.nft, "-f", "-"],
                                        "input": nft_ruleset(self.net)}]
        if self.needs_dnsmasq:
            steps.append({"name": "dnsmasq", "argv": dnsmasq_argv(self.files, self.dnsmasq),
                          "config": dnsmasq_conf(self.net, self.files)})
        return steps

    def prepare(self) -> None:
        """Check privileges, tools and the bridge; change nothing."""
        net = self.net
        require_net_admin(f"starting network '{net.name}'")
        with netlink(f"looking up bridge '{self.bridge}'") as ipr:
            index = link_index(ipr, self.bridge)
            if net.has_own_bridge and index is not None:
                raise NetworkError(f"netlink: bridge '{net.bridge}' of network '{net.name}' "
                                   "already exists (another network or the host uses it)")
            if not net.has_own_bridge:
                if index is None:
                    raise NetworkError(f"netlink: host bridge '{net.bridge}' of network "
                                       f"'{net.name}' does not exist: create it first")
                if link_kind(ipr, index) != "bridge":
                    raise NetworkError(f"netlink: '{net.bridge}' of network '{net.name}' is "
                                       "not a bridge")
        if net.has_own_bridge and shutil.which(self.nft) is None:
            raise NetworkError(f"nft: {self.nft} not found (install nftables)")
        if self.needs_dnsmasq and shutil.which(self.dnsmasq) is None:
            raise NetworkError(f"dnsmasq: {self.dnsmasq} not found (install dnsmasq-base)")

    def start(self) -> Record:
        """Bring the network up; on any failure undo what was done and raise."""
        self.prepare()
        if not self.net.has_own_bridge:
            self._saved()
            return self.record
        try:
            self._bridge_up()
            self._firewall()
            if self.net.forward in ("nat", "route"):
                self._ip_forward()
            if self.needs_dnsmasq:
                self._dnsmasq()
        except BaseException:
            try:
                self.cleanup(self.record, timeout=self.timeout, nft=self.nft)
            except QemuwrapError:
                pass  # the first failure is the one to report
            raise
        return self.record

    def stop(self) -> None:
        self.cleanup(self.record, timeout=self.timeout, nft=self.nft)

    def _saved(self) -> None:
        if self.save is not None:
            self.save(self.record)

    def _bridge_up(self) -> None:
        net = self.net
        name = self.bridge
        with netlink(f"creating bridge '{name}'") as ipr:
            # STP off while the forward delay is set: the kernel refuses a delay below
            # 2 s with STP on (and raises it to 2 s when STP is turned on).
            attrs: dict[str, Any] = {"br_stp_state": 0, "br_forward_delay": net.delay * 100}
            if net.mac is not None:
                attrs["address"] = net.mac
            ipr.link("add", ifname=name, kind="bridge", **attrs)
            index = link_index(ipr, name)
            self.record.update(bridge_index=index, bridge_created=True)
            self._saved()
            if net.stp:
                ipr.link("set", index=index, kind="bridge", br_stp_state=1)
            if net.mtu is not None:
                ipr.link("set", index=index, mtu=net.mtu)
            for ip in net.ips:
                ipr.addr("add", index=index, address=str(ip.address),
                         prefixlen=ip.network.prefixlen,
                         broadcast=str(ip.network.broadcast_address))
            ipr.link("set", index=index, state="up")

    def _firewall(self) -> None:
        table = nft_table(self.net)
        self.record["nft_table"] = table
        self._saved()
        _run_tool("nft", [self.nft, "-f", "-"], input_text=nft_ruleset(self.net),
                  timeout=self.timeout)

    def _ip_forward(self) -> None:
        """Forwarding must be on for nat and route.  It is left on at stop (other
        networks or the host may rely on it), as libvirt does; the record says whether
        we turned it on."""
        path = "/proc/sys/net/ipv4/ip_forward"
        try:
            with open(path, encoding="ascii") as f:
                on = f.read().strip() == "1"
            if not on:
                with open(path, "w", encoding="ascii") as f:
                    f.write("1\n")
        except OSError as exc:
            raise NetworkError(f"sysctl: cannot enable net.ipv4.ip_forward: "
                               f"{exc.strerror}") from None
        self.record["ip_forward_enabled"] = not on
        self._saved()

    def _dnsmasq(self) -> None:
        files = self.files
        os.makedirs(files.dir, mode=0o755, exist_ok=True)
        with open(files.conf, "w", encoding="utf-8") as f:
            f.write(dnsmasq_conf(self.net, files))
        _unlink(files.pid)
        self.record["dnsmasq"] = {"conf": files.conf}
        self._saved()
        _run_tool("dnsmasq", dnsmasq_argv(files, self.dnsmasq), timeout=self.timeout)
        try:
            with open(files.pid, encoding="ascii") as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            raise NetworkError(f"dnsmasq: started but wrote no pid file {files.pid}") from None
        self.record["dnsmasq"] = {"pid": pid, "start_time": process_start_time(pid),
                                  "conf": files.conf}
        self._saved()

    @staticmethod
    def cleanup(record: Record, *, timeout: float = DEFAULT_TIMEOUT,
                nft: str | None = None) -> None:
        """Undo everything ``record`` says was done: stop dnsmasq, delete the nft
        table and the bridge, remove the runtime files.  Things already gone are fine;
        anything that cannot be undone is reported in one line after trying the rest."""
        failures: list[str] = []
        dns = record.get("dnsmasq")
        if dns and dns.get("pid"):
            try:
                stop_process(dns["pid"], dns.get("start_time"),
                             f"--conf-file={dns['conf']}", timeout)
            except QemuwrapError as exc:
                failures.append(f"dnsmasq: {exc}")
        table = record.get("nft_table")
        if table:
            try:
                _run_tool("nft", [nft or host_tool("nft"), "-f", "-"], input_text=nft_delete(table),
                          timeout=timeout)
            except QemuwrapError as exc:
                failures.append(str(exc))
        if record.get("bridge_created"):
            try:
                with netlink(f"deleting bridge '{record['bridge']}'") as ipr:
                    _delete_link(ipr, record["bridge"], record.get("bridge_index"))
            except QemuwrapError as exc:
                failures.append(str(exc))
        if record.get("rundir"):
            for path in NetworkFiles(record["rundir"]).removable:
                try:
                    _unlink(path)
                except OSError as exc:
                    failures.append(f"cannot remove {path}: {exc.strerror}")
        if failures:
            raise NetworkError("; ".join(failures))


def read_leases(path: str, *, client_ids: bool = False) -> list[dict[str, Any]]:
    """dnsmasq's lease file: ``expiry mac ip hostname client-id`` per line (the
    client-id, ``None`` for ``*``, only with ``client_ids``: what a release needs)."""
    leases = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        parts = line.split()
        if len(parts) < 4 or ":" in parts[2]:
            continue  # short, or an IPv6 (duid) line
        lease: dict[str, Any] = {"expiry": int(parts[0]) if parts[0].isdigit() else None,
                                 "mac": parts[1], "ip": parts[2],
                                 "hostname": None if parts[3] == "*" else parts[3]}
        if client_ids:
            lease["client_id"] = parts[4] if len(parts) > 4 and parts[4] != "*" else None
        leases.append(lease)
    return leases


def release_leases(leases_path: str, bridge: str, mac: str,
                   timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """Tell the network's dnsmasq to forget every lease of ``mac`` (a guest that ended
    leaves no lease behind): dnsmasq's own ``dhcp_release`` (Debian's dnsmasq-utils)
    sends it a DHCPRELEASE on ``bridge`` for each, and dnsmasq rewrites its lease file.
    dnsmasq keeps leases in memory, so editing the file would not do.  Returns the
    addresses released; NetworkError (one line) when one could not be."""
    wanted = [lease for lease in read_leases(leases_path, client_ids=True)
              if lease["mac"].lower() == mac.lower()]
    if not wanted:
        return []
    tool = host_tool("dhcp_release")
    if tool == "dhcp_release":
        raise NetworkError("dhcp_release is not installed (Debian package dnsmasq-utils)")
    for lease in wanted:
        argv = [tool, bridge, lease["ip"], lease["mac"]]
        if lease["client_id"]:
            argv.append(lease["client_id"])
        _run_tool("dhcp_release", argv, timeout=timeout)
    # dhcp_release cannot know whether dnsmasq took it (the message goes to the bridge's
    # own address, so through the loopback device: with 'lo' down it is lost).
    released = [lease["ip"] for lease in wanted]
    deadline = time.monotonic() + RELEASE_TIMEOUT
    while True:
        kept = [lease["ip"] for lease in read_leases(leases_path)
                if lease["mac"].lower() == mac.lower() and lease["ip"] in released]
        if not kept:
            return released
        if time.monotonic() >= deadline:
            raise NetworkError(f"dhcp_release: dnsmasq kept the lease of {mac.lower()} "
                               f"({', '.join(kept)}); is the loopback device up?")
        time.sleep(0.05)


# --------------------------------------------------------------------------------------
# A guest's tap
# --------------------------------------------------------------------------------------

#: What every tap name qemuwrap makes starts with (libvirt's are ``vnetN``).
TAP_PREFIX = "qw"
#: Linux's IFNAMSIZ less the final NUL.
IFNAME_MAX = 15


def guest_tap_name(uuid: str, index: int) -> str:
    """The tap of the ``index``-th ``<interface>`` of the guest with ``uuid``:
    ``qw`` + 8 hex digits of the uuid's SHA-256 + ``n`` + index (``qw1f0e2d3cn0``).

    Decided from the definition alone, so the argv is the same in a dry run, a start, a
    restore and an adopt, and two guests starting at once never race for a name (as
    for libvirt's "first free vnetN").  Hashed rather than a uuid prefix, so uuids that
    differ only at the end (hand-numbered ones) still differ; 32 bits: two guests of
    one host share a name with odds of 1 in 2^32 per pair, and the second is then
    refused in one line, not attached to the first's tap (taps are made exclusively).
    Only ``[a-z0-9]``, at most 15 bytes (an index past 9999 hashes the pair)."""
    digest = hashlib.sha256(uuid.lower().encode("ascii")).hexdigest()
    name = f"{TAP_PREFIX}{digest[:8]}n{index}"
    if len(name) > IFNAME_MAX:
        pair = hashlib.sha256(f"{uuid.lower()}/{index}".encode("ascii")).hexdigest()
        name = TAP_PREFIX + pair[:IFNAME_MAX - len(TAP_PREFIX)]
    return name


def tap_mac(guest_mac: str) -> str:
    """The host end's MAC: the guest's with the first byte 0xfe, as libvirt does, so a
    bridge never takes a guest's MAC (bridges use their ports' lowest MAC)."""
    return "fe" + guest_mac[2:]


#: <linux/if_tun.h>: the flags and ioctls that make a persistent tap.
_IFF_TAP, _IFF_NO_PI, _IFF_MULTI_QUEUE = 0x0002, 0x1000, 0x0100
_IFF_VNET_HDR, _IFF_TUN_EXCL = 0x4000, 0x8000
_TUNSETIFF, _TUNSETPERSIST, _TUNSETOWNER, _TUNSETGROUP = \
    0x400454CA, 0x400454CB, 0x400454CC, 0x400454CE


def create_tap(name: str, *, multi_queue: bool = False, vnet_hdr: bool = True,
               owner: int | None = None, group: int | None = None) -> None:
    """Create the persistent tap ``name``, failing with EBUSY if it exists.

    Hand-written (~15 lines of ioctl) instead of pyroute2's ``kind='tuntap'``: that
    path drops IFF_TUN_EXCL, so adding a tap whose name exists silently attaches to the
    existing device (measured with pyroute2 0.9.7: a second add of 'vnet0' succeeds),
    and two guests could share a tap."""
    flags = _IFF_TAP | _IFF_NO_PI | _IFF_TUN_EXCL
    if vnet_hdr:
        flags |= _IFF_VNET_HDR
    if multi_queue:
        flags |= _IFF_MULTI_QUEUE
    ifreq = struct.pack("16sH22x", name.encode("ascii"), flags)  # struct ifreq: 40 bytes
    fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, _TUNSETIFF, ifreq)
        if owner is not None:
            fcntl.ioctl(fd, _TUNSETOWNER, owner)
        if group is not None:
            fcntl.ioctl(fd, _TUNSETGROUP, group)
        fcntl.ioctl(fd, _TUNSETPERSIST, 1)
    finally:
        os.close(fd)


_NOT_ROOT = ("creating a tap device needs root (CAP_NET_ADMIN): run qemuwrap as root, or "
             "use <interface type='ethernet'> with <target dev='TAP' managed='no'/> naming "
             "a tap made beforehand")
_NO_TUN = f"{TUN_DEVICE} is missing: load the tun module (modprobe tun)"
#: Refusals about the host, not one NIC: said once, whatever NIC met them.
HOST_WIDE = frozenset({_NOT_ROOT, _NO_TUN})


def _exists_line(name: str, *, chosen: bool) -> str:
    if chosen:  # named in <target dev>
        return (f"tap '{name}' already exists: name another in <target dev>, or use "
                "type='ethernet' with managed='no' to use an existing tap")
    return (f"tap '{name}' already exists: another guest with this uuid runs, or a "
            f"guest's tap was left behind ('ip link delete {name}' if no QEMU uses it)")


class GuestTap:
    """The tap ``ifname`` of one guest NIC: made (or, with ``managed='no'``, found),
    given the guest's MTU, attached to ``bridge`` (None: left unattached,
    type='ethernet') and up.

    ``ifname`` is decided before QEMU's command is built (:func:`guest_tap_name`, or
    ``<target dev>``); ``bridge`` is resolved by the caller: ``<source bridge>`` for
    type='bridge', the network's bridge (:func:`qemuwrap.networks.bridge_of`) for
    type='network'.  ``label`` becomes the tap's alias (``ip link`` shows it), so a
    hashed name can be traced to its guest."""

    def __init__(self, host: InterfaceHost, mac: str, *, ifname: str, bridge: str | None,
                 owner: int | None = None, group: int | None = None,
                 label: str | None = None):
        self.host = host
        self.mac = mac
        self.ifname = ifname
        self.bridge = bridge
        self.owner = owner
        self.group = group
        self.label = label
        self.record: Record = {}

    def refusals(self) -> list[str]:
        """Why :meth:`start` would fail now, one line each (nothing is changed)."""
        host, name = self.host, self.ifname
        if not host.managed:
            if rtnl.index(name) is None:
                return [f"tap '{name}' (managed='no') does not exist: create it first "
                        f"(ip tuntap add {name} mode tap user USER)"]
            return []
        if not has_net_admin():
            return [_NOT_ROOT]
        out = []
        if not os.path.exists(TUN_DEVICE):
            out.append(_NO_TUN)
        if rtnl.index(name) is not None:
            out.append(_exists_line(name, chosen=host.target_dev == name))
        if self.bridge is not None:
            found = rtnl.index(self.bridge)
            if found is None:
                out.append(f"bridge '{self.bridge}' does not exist")
            else:
                try:
                    kind = rtnl.link(found)["kind"]
                except OSError as exc:
                    out.append(f"bridge '{self.bridge}': {exc.strerror}")
                else:
                    if kind != "bridge":
                        out.append(f"'{self.bridge}' is not a bridge")
        return out

    def prepare(self) -> None:
        """Privileges, the bridge and (managed='no') the existing tap; change nothing."""
        lines = self.refusals()
        if lines:
            raise NetworkError("netlink: " + lines[0])

    def start(self) -> Record:
        """Make the tap and bring it up; returns the record (``ifname``, its ``index``
        and whether it was ``created``).  A failure removes the tap again."""
        self.prepare()
        host, name = self.host, self.ifname
        if not host.managed:
            self.record = {"ifname": name, "created": False}
            return self.record
        self._create()
        self.record = {"ifname": name, "index": rtnl.index(name), "created": True}
        try:
            mtu, master = host.mtu, None
            if self.bridge is not None:
                master = rtnl.index(self.bridge)
                if master is None:
                    raise NetworkError(f"netlink: bridge '{self.bridge}' does not exist")
                if mtu is None:  # the bridge's MTU, so a jumbo bridge stays one
                    mtu = rtnl.link(master)["mtu"]
            index = self.record["index"]
            if index is None:
                raise NetworkError(f"netlink: tap '{name}' vanished as it was made")
            rtnl.set_up(index, address=tap_mac(self.mac), mtu=mtu, master=master,
                        alias=self.label)
        except OSError as exc:
            self.cleanup(self.record)
            hint = " (needs root: CAP_NET_ADMIN)" if exc.errno == errno.EPERM else ""
            raise NetworkError(f"netlink: setting up tap '{name}': "
                               f"{exc.strerror}{hint}") from None
        except BaseException:
            self.cleanup(self.record)
            raise
        return self.record

    def _create(self) -> None:
        name = self.ifname
        try:
            create_tap(name, multi_queue=self.host.queues > 1, owner=self.owner,
                       group=self.group)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                raise NetworkError("netlink: " + _exists_line(
                    name, chosen=self.host.target_dev == name)) from None
            hint = " (needs root: CAP_NET_ADMIN)" if exc.errno == errno.EPERM else ""
            raise NetworkError(f"netlink: creating tap '{name}': "
                               f"{exc.strerror}{hint}") from None

    def stop(self) -> None:
        self.cleanup(self.record)

    @staticmethod
    def cleanup(record: Record) -> None:
        """Delete the tap ``record`` says we made (if it is still that device)."""
        if not record.get("created") or not record.get("ifname"):
            return
        remove_tap(record["ifname"], record.get("index"))


def remove_tap(ifname: str, index: int | None) -> bool:
    """Delete tap ``ifname`` if it is still the device with ``index`` (a later device
    that reuses the name is left alone); whether one was deleted."""
    current = rtnl.index(ifname)
    if current is None or (index is not None and current != index):
        return False
    try:
        rtnl.delete(current)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return False  # gone meanwhile
        raise NetworkError(f"netlink: deleting tap '{ifname}': {exc.strerror}") from None
    return True


# --------------------------------------------------------------------------------------
# QEMU's side (pure)
# --------------------------------------------------------------------------------------

def vhost_available(path: str = VHOST_NET) -> bool:
    return os.path.exists(path)


def use_vhost(host: InterfaceHost, model: str, available: bool) -> bool:
    """vhost-net for virtio NICs when the host has it, unless ``<driver name='qemu'>``.
    ``<driver name='vhost'>`` without /dev/vhost-net is refused by :func:`refusals`."""
    return model == "virtio" and host.driver_name != "qemu" and available


def refusals(host: InterfaceHost, model: str, *, vhost: bool) -> list[str]:
    """Why this NIC cannot be built with this QEMU and host, one line each (for
    ``qemu/validate.py``; empty when it can)."""
    out = []
    if host.bandwidth is not None:
        out.append("<bandwidth> is not supported: QEMU 7.2 has no rate limit for a tap "
                   "netdev (libvirt shapes the tap with tc instead)")
    if model != "virtio":
        if host.mtu is not None:
            out.append(f"<mtu> needs model 'virtio' (QEMU's host_mtu), not '{model}'")
        if host.queues > 1:
            out.append(f"<driver queues> needs model 'virtio', not '{model}'")
        if host.driver_name == "vhost":
            out.append(f"<driver name='vhost'> needs model 'virtio', not '{model}'")
    elif host.driver_name == "vhost" and not vhost:
        out.append(f"<driver name='vhost'>: {VHOST_NET} does not exist on this host "
                   "(modprobe vhost_net, or leave the driver name out)")
    return out


def netdev_options(netdev_id: str, ifname: str, *, vhost: bool = False,
                   queues: int = 1) -> str:
    """``-netdev`` for a tap QEMU opens by name; qemuwrap made it, so no scripts run."""
    opts = [f"tap,id={netdev_id},ifname={ifname},script=no,downscript=no"]
    if vhost:
        opts.append("vhost=on")
    if queues > 1:
        opts.append(f"queues={queues}")
    return ",".join(opts)


def nic_device_options(host: InterfaceHost, model: str) -> list[tuple[str, str]]:
    """Extra ``-device`` properties of the NIC for its host end: multiqueue (``mq=on``
    and libvirt's ``vectors=2*queues+2``) and ``host_mtu`` on virtio-net."""
    if model != "virtio":
        return []
    extra = []
    if host.queues > 1:
        extra += [("mq", "on"), ("vectors", str(2 * host.queues + 2))]
    if host.mtu is not None:
        extra.append(("host_mtu", str(host.mtu)))
    return extra


def link_commands(host: InterfaceHost, nic_id: str) -> list[tuple[str, dict[str, Any]]]:
    """QMP commands to run once QEMU is up: ``<link state='down'/>`` is QEMU's
    ``set_link`` on the NIC (as libvirt does after start)."""
    if host.link_up:
        return []
    return [("set_link", {"name": nic_id, "up": False})]
