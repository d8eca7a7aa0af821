"""Companions: host processes and resources that live exactly as long as a guest's QEMU.

swtpm and virtiofsd (:class:`Planned`) and the guest's taps (:class:`Tap`) plug in
here. A companion is a subclass of :class:`Companion` given to the
:class:`~qemuwrap.runtime.machine.Machine`:

1. ``start(gdir)`` runs before QEMU, in the order the companions were given; it starts
   the process (``process.spawn``: own session, log in the state directory) and returns
   its :class:`~qemuwrap.runtime.record.Companion` entry at once, so the guest record
   holds it before anything can fail.
2. ``wait_ready(deadline)`` waits (with that deadline) until QEMU can use it (its
   socket listens, its device exists).
3. ``stop(entry, timeout)`` runs after QEMU ended, in reverse order; the default asks
   the process to end (SIGTERM) and kills it (SIGKILL) after ``timeout``, then removes
   the entry's ``cleanup`` paths and its ``link`` (a tap: its DHCP lease released, the
   device deleted).

Before any of it, :func:`refuse_unstartable` lets the launcher say in one line each
what would stop a companion from starting (no CAP_NET_ADMIN, a network not active,
virtiofsd without root, swtpm not installed), while nothing has been spawned.

If the supervisor itself was killed, ``destroy``/``adopt`` call :func:`clean_up` on the
recorded entries: the process is recognised by pid and create time before it is
signalled, so a reused pid is never hit.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from qemuwrap import process
from qemuwrap.errors import Problems, QemuwrapError, UnsupportedError, printable
from qemuwrap.runtime.record import Companion as Entry
from qemuwrap.runtime.record import Link, Proc

#: How long a companion may take to become ready (swtpm_setup manufactures a TPM in
#: ~1-2 s here, on a loaded machine several times that).
START_TIMEOUT = 60.0


class Companion:
    """Base class of a companion; see the module's docstring for the protocol."""

    kind = "companion"

    def start(self, gdir) -> Entry:
        raise NotImplementedError

    def wait_ready(self, deadline: float) -> None:
        """Default: ready as soon as started."""

    def refusals(self) -> list[str]:
        """What would keep :meth:`start` from working on this host now, one line each
        (checked by the launcher before anything is spawned). Default: nothing."""
        return []

    def stop(self, entry: Entry, timeout: float = 5.0) -> None:
        clean_up(entry, timeout)


def clean_up(entry: Entry, timeout: float = 5.0) -> None:
    """End a recorded companion's process (if it is still that process), remove its
    paths and its network device (:func:`remove_link`)."""
    proc = entry.proc
    if proc is not None and process.is_alive(proc.pid, proc.create_time):
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        if not process.wait_gone(proc.pid, proc.create_time, timeout):
            process.kill_hard(proc.pid, proc.create_time, max(deadline - time.monotonic(), 1))
        process.reap_if_child(proc.pid)
    for path in entry.cleanup:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    if entry.link is not None:
        remove_link(entry.link)


def remove_link(link: Link) -> None:
    """A tap made for the guest: its DHCP lease on a qemuwrap network released (so no
    stale lease stays), then the device deleted if it is still ours.  A lease that
    cannot be released (dnsmasq-utils missing, dnsmasq gone) is not a failure to stop
    the guest: it expires by itself; one line on stderr (the supervisor's log) says so."""
    from qemuwrap.companions.network import release_leases, remove_tap

    if link.leases and link.bridge and link.mac:
        try:
            release_leases(link.leases, link.bridge, link.mac)
        except QemuwrapError as exc:
            print(f"qemuwrap: tap {printable(link.name)}: note: the DHCP lease of "
                  f"{printable(link.mac)} stays until it expires ({exc})", file=sys.stderr,
                  flush=True)
    remove_tap(link.name, link.index)


class Planned(Companion):
    """A companion the definition asks for (``qemu/companions.py``: swtpm, virtiofsd),
    run through the object ``qemuwrap/companions`` makes for it: ``prepare`` (file work:
    a TPM manufactured once), ``start`` (spawned in its own session, ready when it says
    so, stopped again if it is not), ``stop`` after QEMU."""

    def __init__(self, spec: dict):
        from qemuwrap.qemu.companions import make

        self.spec = spec
        self.kind = spec["kind"]
        self.daemon = make(spec)

    def refusals(self) -> list[str]:
        """The daemon's own (virtiofsd without root, a program missing, ...)."""
        refusals = getattr(self.daemon, "refusals", None)
        return refusals() if refusals is not None else []

    def start(self, gdir) -> Entry:
        deadline = time.monotonic() + START_TIMEOUT
        self.daemon.prepare()
        log = gdir.open_log(f"{self.kind}-{self.spec['device']}.log", marker="start")
        try:
            pid = self.daemon.start(log, deadline)
        finally:
            os.close(log)
        created = process.create_time(pid)
        proc = Proc(pid, created if created is not None else time.time(),
                    list(self.daemon.argv))
        socket = self.spec["params"].get("socket")
        return Entry(self.kind, self.spec["device"], proc,
                     cleanup=[socket] if socket else [])

    def stop(self, entry: Entry, timeout: float = 5.0) -> None:
        try:
            self.daemon.stop(time.monotonic() + timeout)
        finally:
            clean_up(entry, timeout)  # whatever is left: the socket, a stray process


class Tap(Planned):
    """The tap of one ``bridge``/``network``/``ethernet`` NIC (planned in
    ``qemu/companions.py``, kind ``tap``): at start the bridge is resolved (a network
    must be active: :func:`qemuwrap.networks.bridge_of`), the tap made with the name
    QEMU's ``-netdev`` already has, attached and up; after QEMU, deleted (and its
    lease released).  ``managed='no'``: an existing tap, only looked up, never
    deleted.  No process: the record's entry holds the tap as a ``link``."""

    def __init__(self, spec: dict):  # noqa: D107 - no daemon to make, unlike Planned
        self.spec = spec
        self.kind = spec["kind"]
        self.params = spec["params"]

    def _bridge(self) -> str | None:
        """The bridge the tap joins: ``<source bridge>``, or the active network's."""
        p = self.params
        if p["network"]:
            from qemuwrap import networks

            return networks.bridge_of(p["network"], root=p["state_root"])
        bridge: str | None = p["bridge"]
        return bridge

    def _leases(self) -> str | None:
        """dnsmasq's lease file of the tap's network (None: no qemuwrap network)."""
        p = self.params
        if not p["network"]:
            return None
        from qemuwrap import networks

        return os.path.join(networks.runtime_dir(p["network"], p["state_root"]),
                            "dnsmasq.leases")

    def guest_tap(self, bridge: str | None):
        from qemuwrap.companions.network import GuestTap
        from qemuwrap.conf.network import InterfaceHost

        p = self.params
        host = InterfaceHost(p["type"], source=p["network"] or p["bridge"],
                             target_dev=p["target_dev"], managed=p["managed"],
                             queues=p["queues"], mtu=p["mtu"])
        return GuestTap(host, p["mac"], ifname=p["ifname"], bridge=bridge,
                        label=f"qemuwrap {p['guest']} {self.spec['device']}"[:128])

    def refusals(self) -> list[str]:
        from qemuwrap.companions.network import HOST_WIDE

        p = self.params
        where = f"{p['where']}: " if p.get("where") else ""
        lines: list[str] = []
        bridge = None
        try:
            bridge = self._bridge()
        except QemuwrapError as exc:  # no such network, not active: and the rest?
            lines.append(str(exc))
        try:
            lines += self.guest_tap(bridge).refusals()
        except QemuwrapError as exc:
            lines.append(str(exc))
        return [line if line in HOST_WIDE else where + line for line in lines]

    def start(self, gdir) -> Entry:
        bridge = self._bridge()
        record = self.guest_tap(bridge).start()
        link = None
        if record["created"]:
            link = Link(record["ifname"], record.get("index"), mac=self.params["mac"],
                        bridge=bridge, leases=self._leases())
        return Entry(self.kind, self.spec["device"], None, link=link)

    def stop(self, entry: Entry, timeout: float = 5.0) -> None:
        clean_up(entry, timeout)


def from_specs(specs: list[dict]) -> list[Companion]:
    return [Tap(spec) if spec["kind"] == "tap" else Planned(spec) for spec in specs]


def refuse_unstartable(companions: list[Companion]) -> None:
    """Every reason a companion could not start here (one line each, a line said once),
    raised before anything is spawned: Problems, or nothing."""
    lines: list[str] = []
    for companion in companions:
        lines += [line for line in companion.refusals() if line not in lines]
    if lines:
        raise Problems([UnsupportedError(line) for line in lines])
