"""Network definitions on disk, and the operations behind ``net-define``, ``net-start``,
``net-stop``, ``net-list``, ``net-undefine``, ``net-dumpxml``.

Definitions live in ``$QEMUWRAP_CONFIG_DIR/networks/NAME.xml``, else
``/etc/qemuwrap/networks/NAME.xml`` as root (``$XDG_CONFIG_HOME/qemuwrap/networks``
otherwise), written as libvirt stores them (uuid, bridge name and MAC filled in).
A started network keeps its runtime files in ``STATE_ROOT/networks/NAME/``
(``/run/qemuwrap/networks/NAME`` as root; STATE_ROOT as in ``statedir.py``):
``state.json`` (the record of what was brought up: the proof it is active, and what
``stop`` undoes), ``network.xml`` (the definition it runs with), dnsmasq's
``dnsmasq.conf``, ``dnsmasq.pid``, ``dnsmasq.leases``, ``dnsmasq.log`` (kept after
stop) and ``lock`` (held while a start or stop runs).

Every function returns data or raises :class:`QemuwrapError` with one line; the CLI
prints them.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from qemuwrap.companions.network import (
    DEFAULT_TIMEOUT,
    NetworkError,
    NetworkRuntime,
    Record,
    link_index,
    netlink,
    process_start_time,
    read_leases,
)
from qemuwrap.conf import network as netconf
from qemuwrap.conf.network import Network
from qemuwrap.errors import QemuwrapError, XMLError
from qemuwrap.statedir import state_root

STATE_FILE = "state.json"
LIVE_XML = "network.xml"


def config_dir() -> str:
    """Where network definitions are stored."""
    chosen = os.environ.get("QEMUWRAP_CONFIG_DIR")
    if chosen:
        return os.path.join(os.path.abspath(chosen), "networks")
    if os.geteuid() == 0:
        return "/etc/qemuwrap/networks"
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return os.path.join(base, "qemuwrap", "networks")


def definition_path(name: str) -> str:
    netconf.check_network_name(name)
    return os.path.join(config_dir(), f"{name}.xml")


def runtime_dir(name: str, root: str | None = None) -> str:
    netconf.check_network_name(name)
    return os.path.join(state_root(root), "networks", name)


def defined_names() -> list[str]:
    try:
        entries = os.listdir(config_dir())
    except FileNotFoundError:
        return []
    return sorted(e[:-4] for e in entries
                  if e.endswith(".xml") and not e.startswith("."))


def load(name: str) -> Network:
    """The stored definition of network ``name``."""
    path = definition_path(name)
    if not os.path.exists(path):
        raise QemuwrapError(f"network '{name}' is not defined (qemuwrap net-define FILE.xml)")
    return netconf.load(path)


# -- runtime state -------------------------------------------------------------------

def _read_record(name: str, root: str | None = None) -> Record | None:
    try:
        with open(os.path.join(runtime_dir(name, root), STATE_FILE), encoding="utf-8") as f:
            record: Record = json.load(f)
            return record
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise QemuwrapError(f"network '{name}': unreadable {STATE_FILE}: {exc}") from None


def atomic_write(path: str, data: bytes, mode: int) -> None:
    """definition.py's atomic write, imported when used: it brings the domain model
    (~35 ms), which a supervisor that only looks up a network's bridge never needs."""
    from qemuwrap.definition import atomic_write as write

    write(path, data, mode=mode)


def _write_record(name: str, record: Record, root: str | None = None) -> None:
    directory = runtime_dir(name, root)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    atomic_write(os.path.join(directory, STATE_FILE),
                 json.dumps(record, indent=1, sort_keys=True).encode(), mode=0o644)


@contextmanager
def _locked(name: str, root: str | None = None,
            timeout: float = DEFAULT_TIMEOUT) -> Iterator[None]:
    """Hold the network's lock for one start or stop (waiting at most ``timeout``)."""
    directory = runtime_dir(name, root)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd = os.open(os.path.join(directory, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                if time.monotonic() >= deadline:
                    raise QemuwrapError(f"network '{name}' is being started or stopped by "
                                        "another process") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def state_of(record: Record | None) -> str:
    """'inactive', 'active', or 'broken' (recorded as up, but its bridge or dnsmasq is
    gone: ``net-stop`` clears it, ``net-start`` clears it and starts again)."""
    if record is None:
        return "inactive"
    dns = record.get("dnsmasq")
    if dns and (not dns.get("pid") or process_start_time(dns["pid"]) != dns.get("start_time")):
        return "broken"
    if record.get("bridge"):
        try:
            with netlink("looking up bridges") as ipr:
                index = link_index(ipr, record["bridge"])
        except QemuwrapError:
            return "active"  # cannot look: trust the record
        if index is None or (record.get("bridge_created")
                             and index != record.get("bridge_index")):
            return "broken"
    return "active"


# -- operations ------------------------------------------------------------------------

def _bridges_in_use(except_name: str) -> dict[str, str]:
    """Bridge name -> network, for every other defined network."""
    used = {}
    for other in defined_names():
        if other == except_name:
            continue
        try:
            net = load(other)
        except QemuwrapError:
            continue  # a broken definition does not block others
        if net.bridge:
            used[net.bridge] = other
    return used


def _host_links() -> set[str]:
    try:
        with netlink("listing interfaces") as ipr:
            return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
    except QemuwrapError:
        return set()


def define(xml_path: str) -> Network:
    """Store the network definition in ``xml_path`` (as ``net-define``): a uuid, a free
    ``virbrN`` bridge and a bridge MAC are added when missing.  Redefining a network
    keeps its uuid; a running network uses the new definition from its next start."""
    net = netconf.load(xml_path)
    path = definition_path(net.name)
    existing = None
    if os.path.exists(path):
        existing = netconf.load(path)
        if net.uuid_generated:
            net.uuid = existing.uuid
        elif net.uuid != existing.uuid:
            raise QemuwrapError(f"{xml_path}: network '{net.name}' already exists with uuid "
                                f"{existing.uuid_str}")
        if net.bridge is None and existing.has_own_bridge == net.has_own_bridge:
            net.bridge = existing.bridge
        if net.mac is None:
            net.mac = existing.mac
    used = _bridges_in_use(net.name)
    if net.bridge is not None and net.bridge in used and net.has_own_bridge:
        raise QemuwrapError(f"{xml_path}: bridge '{net.bridge}' is already used by network "
                            f"'{used[net.bridge]}'")
    for other in defined_names():
        if other != net.name:
            try:
                if load(other).uuid == net.uuid:
                    raise QemuwrapError(f"{xml_path}: uuid {net.uuid_str} is already used by "
                                        f"network '{other}'")
            except XMLError:
                continue
    taken = set(used) | (_host_links() if net.bridge is None else set())
    netconf.complete(net, used_bridges=taken)
    os.makedirs(config_dir(), mode=0o755, exist_ok=True)
    try:
        atomic_write(path, net.format().encode(), mode=0o644)
    except OSError as exc:
        raise QemuwrapError(f"{path}: cannot write: {exc.strerror}") from None
    return net


def undefine(name: str) -> None:
    """Remove a stored definition; an active network must be stopped first."""
    path = definition_path(name)
    if not os.path.exists(path):
        raise QemuwrapError(f"network '{name}' is not defined")
    if _read_record(name) is not None:
        raise QemuwrapError(f"network '{name}' is active: stop it first "
                            f"(qemuwrap net-stop {name})")
    os.unlink(path)


def start(name: str, *, root: str | None = None,
          timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """Bring network ``name`` up (as ``net-start``); returns :func:`info`."""
    net = load(name)
    with _locked(name, root, timeout):
        record = _read_record(name, root)
        if record is not None:
            if state_of(record) == "active":
                raise QemuwrapError(f"network '{name}' is already active")
            NetworkRuntime.cleanup(record, timeout=timeout)  # leftovers of a broken start
            _remove_state(name, root)
        rundir = runtime_dir(name, root)
        runtime = NetworkRuntime(net, rundir, timeout=timeout,
                                 save=lambda rec: _write_record(name, rec, root))
        try:
            runtime.start()
        except BaseException:
            _remove_state(name, root)
            raise
        atomic_write(os.path.join(rundir, LIVE_XML), net.format().encode(), mode=0o644)
        _write_record(name, runtime.record, root)
    return info(name, root=root)


def stop(name: str, *, root: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Bring network ``name`` down (as ``net-destroy``): dnsmasq, the nft table, the
    bridge and the runtime files (the dnsmasq log stays) go."""
    netconf.check_network_name(name)
    with _locked(name, root, timeout):
        record = _read_record(name, root)
        if record is None:
            raise QemuwrapError(f"network '{name}' is not active")
        NetworkRuntime.cleanup(record, timeout=timeout)
        _remove_state(name, root)


def _remove_state(name: str, root: str | None) -> None:
    directory = runtime_dir(name, root)
    for entry in (STATE_FILE, LIVE_XML):
        try:
            os.unlink(os.path.join(directory, entry))
        except FileNotFoundError:
            pass


def list_networks(*, root: str | None = None) -> list[dict[str, Any]]:
    """Every defined network, and any active one whose definition is gone: name, state,
    whether it is persistent (defined), bridge, forward mode, uuid."""
    defined = set(defined_names())
    try:
        running = set(os.listdir(os.path.join(state_root(root), "networks")))
    except FileNotFoundError:
        running = set()
    out = []
    for name in sorted(defined | running):
        try:
            netconf.check_network_name(name)
        except XMLError:
            continue
        record = _read_record(name, root)
        if record is None and name not in defined:
            continue  # only a lock file left
        net = _live_or_stored(name, root)
        out.append({"name": name, "state": state_of(record), "persistent": name in defined,
                    "bridge": net.bridge if net else (record or {}).get("bridge"),
                    "forward": (net.forward or "none") if net else None,
                    "uuid": net.uuid_str if net else None})
    return out


def _live_or_stored(name: str, root: str | None) -> Network | None:
    live = os.path.join(runtime_dir(name, root), LIVE_XML)
    try:
        if os.path.exists(live):
            return netconf.load(live)
        return load(name)
    except QemuwrapError:
        return None


def info(name: str, *, root: str | None = None) -> dict[str, Any]:
    """What a network is and has: state, bridge, addresses, DHCP ranges, dnsmasq, and
    the current DHCP leases."""
    net = _live_or_stored(name, root)
    record = _read_record(name, root)
    if net is None and record is None:
        raise QemuwrapError(f"network '{name}' is not defined")
    result: dict[str, Any] = {"name": name, "state": state_of(record)}
    if net is not None:
        ip = net.dhcp_ip
        result.update(
            uuid=net.uuid_str, forward=net.forward or "none", bridge=net.bridge,
            addresses=[str(i.interface) for i in net.ips],
            dhcp_ranges=[f"{r.start}-{r.end}" for r in ip.ranges] if ip else [],
            mtu=net.mtu)
    if record is not None:
        dns = record.get("dnsmasq") or {}
        result.update(dnsmasq_pid=dns.get("pid"), nft_table=record.get("nft_table"),
                      ip_forward_enabled=record.get("ip_forward_enabled", False),
                      leases=read_leases(os.path.join(runtime_dir(name, root),
                                                      "dnsmasq.leases")))
    return result


def dumpxml(name: str, *, inactive: bool = False, root: str | None = None) -> str:
    """The definition (``inactive``) or the one an active network runs with."""
    net = load(name) if inactive else _live_or_stored(name, root)
    if net is None:
        raise QemuwrapError(f"network '{name}' is not defined")
    return net.format()


def bridge_of(name: str, *, root: str | None = None) -> str:
    """The bridge a guest's ``<interface type='network'>`` joins: the network must be
    defined and active, else one line that says what to do."""
    path = definition_path(name)
    record = _read_record(name, root)
    if record is None:
        if not os.path.exists(path):
            raise NetworkError(f"network '{name}' is not defined: define it with "
                               f"'qemuwrap net-define FILE.xml' and start it with "
                               f"'qemuwrap net-start {name}'")
        raise NetworkError(f"network '{name}' is not active: start it with "
                           f"'qemuwrap net-start {name}'")
    bridge = record.get("bridge")
    if not bridge:
        raise NetworkError(f"network '{name}': its state names no bridge; restart it")
    return str(bridge)
