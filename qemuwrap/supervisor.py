"""The supervisor: the one party that drives its guest's QEMU.

It launches the :class:`~qemuwrap.runtime.machine.Machine` (QEMU paused, QMP attached,
the generation ID checked, then resumed), serves the control socket (status, shutdown,
destroy, save, snapshots, suspend/resume), applies the definition's lifecycle actions
on QMP events (``runtime/policy.py`` says which), and ends with the exit status that
says how the guest ended. Nothing polls: it sleeps until QEMU, a signal, a client or a
deadline wakes it.

QEMU runs in its own session, so it outlives the supervisor; ``adopt`` gives it a new
one.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable

from qemuwrap import process
from qemuwrap.errors import QemuwrapError, printable
from qemuwrap.hints import TYPE_CHECKING
from qemuwrap.runtime import afterstart, control, migrate, policy
from qemuwrap.runtime.companions import Companion, Planned, from_specs
from qemuwrap.runtime.guestdir import GuestDir
from qemuwrap.runtime.loop import Loop, Timer
from qemuwrap.runtime.machine import QUIT_TIMEOUT, Exe, Machine, MachineError, tail
from qemuwrap.runtime.policy import Action, Ending
from qemuwrap.runtime.qmp import MonitorError
from qemuwrap.runtime.record import GuestRecord, Proc

if TYPE_CHECKING:
    from qemuwrap.runtime.agent import AgentWorker

EXIT_POWEROFF = policy.EXIT_POWEROFF
EXIT_ERROR = policy.EXIT_ERROR
EXIT_CRASHED = policy.EXIT_CRASHED
EXIT_DESTROYED = policy.EXIT_DESTROYED

#: A restore's state must be loaded within this many seconds.
LOAD_TIMEOUT = 600.0
#: HMP savevm/delvm: the guest's memory and disks are written meanwhile.
SNAPSHOT_TIMEOUT = 600.0
#: After a save's stream completed, how long the client has to store it safely.
COMMIT_TIMEOUT = 300.0
#: How long QEMU gets to answer ``query-status`` for ``status``.
STATUS_TIMEOUT = 1.0
#: Each other QMP exchange a request makes (stop, cont, system_powerdown).
REQUEST_TIMEOUT = 5.0


#: QEMU's run states as ``status`` names them.
STATES = {"prelaunch": "starting", "inmigrate": "restoring"}


class LaunchError(MachineError):
    """The guest could not be started; nothing of it runs."""


class SnapshotJob:
    """An HMP ``savevm``/``delvm`` in flight: QEMU answers when it is done (its main
    loop is busy meanwhile, so ``status`` reports the job instead of asking)."""

    kind = "snapshot"

    def __init__(self, conn: control.Connection):
        self.conn = conn
        self.over = False

    def end(self, reply: dict) -> None:
        if not self.over:
            self.over = True
            self.conn.send(reply)

    def qemu_ended(self) -> None:
        self.end({"error": "QEMU ended during the snapshot"})


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) about readiness and stopping; a no-op elsewhere."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(message.encode(), addr)
    except OSError:
        pass


class Guest:
    """What the supervisor needs to know of the definition (no model, no parser: the
    supervisor is a lean process of its own)."""

    def __init__(self, *, name: str, uuid: str, genid: str | None, genid_requested: bool,
                 on_poweroff: str, on_crash: str, memory_kib: int,
                 current_memory_kib: int | None, graphics: bool, xml: str,
                 agent_socket: str | None = None):
        self.name = name
        self.uuid_str = uuid
        self.genid_str = genid
        self.genid_requested = genid_requested
        self.on_poweroff = on_poweroff
        self.on_crash = on_crash
        self.memory_kib = memory_kib
        self.current_memory_kib = current_memory_kib
        self.graphics = graphics
        self.xml = xml  # the inactive definition, as Domain.format writes it
        self.agent_socket = agent_socket  # the guest agent channel's (ops/agent.py)

    @classmethod
    def of(cls, dom, state_dir: str | None = None) -> Guest:
        """From a conf.domain.Domain (whose files are in ``state_dir``)."""
        agent_socket = None
        if state_dir and dom.devices.channels:  # ops.agent costs a start 8 ms to import
            from qemuwrap.ops.agent import socket_path

            agent_socket = socket_path(dom, state_dir)
        return cls(name=dom.name, uuid=dom.uuid_str, genid=dom.genid_str,
                   genid_requested=dom.genid_requested, on_poweroff=dom.on_poweroff,
                   on_crash=dom.on_crash, memory_kib=dom.memory_kib,
                   current_memory_kib=dom.current_memory_kib,
                   graphics=bool(dom.devices.graphics), xml=dom.format(inactive=True),
                   agent_socket=agent_socket)

    def live_xml(self, pid: int | None) -> bytes:
        """The live definition: the inactive one with the runtime ``id``."""
        head, rest = self.xml.split(">", 1)
        return (f"{head} id='{pid}'>{rest}" if pid is not None else self.xml).encode()


class Plan:
    """What a launch needs, gathered and checked before QEMU starts; passed as JSON to
    the supervisor process (``to_json``/``from_json``).

    ``writeback``: for a restore or revert, the definition file's new bytes (with the new
    genid) to store once QEMU has loaded the state, if the file still holds ``old``.
    ``after_start``: the pinning and QMP commands applied before the guest runs
    (``qemu/afterstart.py`` makes it, ``runtime/afterstart.py`` applies it).
    """

    def __init__(self, guest: Guest, cmd: Exe, *, restart_cmd: Exe | None = None,
                 source: str | None = None, incoming_fd: int | None = None,
                 writeback: dict | None = None, previous_genid: str | None = None,
                 companions: list[Companion] | None = None, marker: str = "start",
                 after_start: dict | None = None):
        self.guest = guest
        self.cmd = cmd
        # A restore or revert starts once from saved state; a restart boots afresh.
        self.restart_cmd = restart_cmd or cmd
        self.source = source
        self.incoming_fd = incoming_fd
        self.writeback = writeback
        self.previous_genid = previous_genid
        self.companions = companions or []
        self.marker = marker
        self.after_start = after_start

    def to_json(self) -> dict:
        return {"guest": vars(self.guest), "cmd": vars(self.cmd),
                "restart_cmd": vars(self.restart_cmd), "source": self.source,
                "incoming_fd": self.incoming_fd, "writeback": self.writeback,
                "previous_genid": self.previous_genid, "marker": self.marker,
                "after_start": self.after_start,
                "companions": [c.spec for c in self.companions
                               if isinstance(c, Planned)]}

    @classmethod
    def from_json(cls, raw: dict) -> Plan:
        g = raw["guest"]
        guest = Guest(name=g["name"], uuid=g["uuid_str"], genid=g["genid_str"],
                      genid_requested=g["genid_requested"], on_poweroff=g["on_poweroff"],
                      on_crash=g["on_crash"], memory_kib=g["memory_kib"],
                      current_memory_kib=g["current_memory_kib"], graphics=g["graphics"],
                      xml=g["xml"], agent_socket=g.get("agent_socket"))
        return cls(guest, Exe(**raw["cmd"]), restart_cmd=Exe(**raw["restart_cmd"]),
                   source=raw["source"], incoming_fd=raw["incoming_fd"],
                   writeback=raw["writeback"], previous_genid=raw["previous_genid"],
                   companions=from_specs(raw.get("companions", [])), marker=raw["marker"],
                   after_start=raw.get("after_start"))


class Supervisor:
    """Runs and watches the QEMU of one guest."""

    def __init__(self, plan: Plan, gdir: GuestDir, *, shutdown_timeout: float = 30.0,
                 console: bool = False, log: Callable[[str], None] | None = None,
                 early_signals: list[int] | None = None):
        self.plan = plan
        self.dom = plan.guest
        self.gdir = gdir
        self.shutdown_timeout = shutdown_timeout
        self.console = console
        self.log = log or (lambda msg: print(f"qemuwrap: {printable(self.dom.name)}: {msg}",
                                             file=sys.stderr, flush=True))
        self.early_signals = early_signals if early_signals is not None else []
        #: A restore: where the launching command says whether the checksum matched.
        self.verify_fd: int | None = None
        self.machine: Machine | None = None
        self.record: GuestRecord | None = None
        self.ending = Ending()
        self.loop: Loop | None = None
        self.server: control.Server | None = None
        self._ended = False
        self._watched: list[int] = []
        self._force_timer: Timer | None = None
        self._kill_timer: Timer | None = None
        #: The long request in flight (a save, a snapshot): one at a time.
        self._job: migrate.SaveJob | SnapshotJob | None = None
        self._job_conn: control.Connection | None = None
        self._waiters: list[control.Connection] = []  # replied to when the guest ended
        self.run_state = "starting"
        self._agent_worker: AgentWorker | None = None

    # -- the record ---------------------------------------------------------------------
    def _new_record(self) -> GuestRecord:
        me = os.getpid()
        return GuestRecord(
            name=self.dom.name, uuid=self.dom.uuid_str, state_dir=self.gdir.path,
            started=time.time(), genid=self.dom.genid_str, source=self.plan.source,
            env=dict(self.plan.cmd.env),
            supervisor=Proc(me, process.create_time(me) or time.time(), []))

    def _write_record(self) -> None:
        """Persist what runs now: called at each change (companion started, QEMU
        spawned, console found); a failure here fails the launch, which stops QEMU."""
        if self.record is None:
            self.record = self._new_record()
        m = self.machine
        if m is not None:
            self.record.qemu = m.proc
            self.record.companions = list(m.companion_entries)
            self.record.env = dict(m.cmd.env)
        self.gdir.write_record(self.record)

    # -- launch -----------------------------------------------------------------------
    def launch(self, cmd: Exe | None = None, incoming_fd: int | None = None,
               after_load: Callable[[], None] | None = None,
               spawned: Callable[[], None] | None = None) -> None:
        """Start QEMU paused, load saved state if any, check the genid, then resume.
        Anything failing after the spawn stops QEMU (and companions) before this
        raises: no QEMU runs that ``status`` cannot see. ``spawned``: see
        ``Machine.launch``."""
        cmd = cmd or self.plan.cmd
        self.machine = Machine(cmd, self.gdir, companions=self.plan.companions,
                               on_change=self._write_record, marker=self.plan.marker)
        self.ending = Ending()
        self.run_state = "starting"
        try:
            self.machine.launch(spawned=spawned)
        except MachineError as exc:
            self._after_failed_launch()
            raise LaunchError(exc.message, exitcode=exc.exitcode, argv=exc.argv,
                              output=exc.output) from None
        try:
            self._after_start()
            if incoming_fd is not None:
                self._load_state(incoming_fd)
            self._check_genid()
            if after_load is not None:
                after_load()
            dom = self.dom
            if incoming_fd is None and dom.current_memory_kib \
                    and dom.current_memory_kib < dom.memory_kib:
                self.machine.execute("balloon", {"value": dom.current_memory_kib * 1024})
            self.gdir.write("domain.xml", self.dom.live_xml(self.machine.pid))
            if self.plan.source:  # kept after the guest ends: snapshot revert finds it
                self.gdir.write("definition", self.plan.source.encode())
            self.machine.execute("cont")
            self.run_state = "running"
            self._discover()
            self._write_record()
        except BaseException as exc:
            exitcode = self.machine.kill()
            self.machine.stop_companions(record=False)
            self._after_failed_launch()
            if isinstance(exc, LaunchError):
                raise
            if not isinstance(exc, QemuwrapError | OSError):
                raise
            if exitcode is not None and exitcode > 0:
                what = f"QEMU exited with status {exitcode}"
            elif isinstance(exc, OSError):
                what = exc.strerror or str(exc)
                if exc.filename:
                    what += f" ({printable(str(exc.filename))})"
            else:
                what = str(exc)
            raise LaunchError(f"QEMU failed to start: {what}", exitcode=exitcode,
                              argv=cmd.argv, output=tail(self.gdir.file("qemu.log"))) \
                from None
        self.log(f"running, QEMU pid {self.machine.pid}, genid "
                 f"{self.dom.genid_str or 'none'}")

    def _after_start(self) -> None:
        """The definition's pinning and QMP settings, before the guest runs (and before
        a restore's state loads, as libvirt does)."""
        assert self.machine is not None
        try:
            afterstart.run(self.machine, self.plan.after_start, self.log)
        except afterstart.AfterStartError as exc:
            raise LaunchError(str(exc)) from None

    def _after_failed_launch(self) -> None:
        """Runtime files go; the logs (qemu.log, supervisor.log) stay."""
        self.gdir.clear_runtime()

    def _load_state(self, fd: int) -> None:
        """Feed QEMU the saved state from ``fd`` (checked already) and wait for the end
        of the load, or of QEMU (7.2 exits when a load fails)."""
        m = self.machine
        assert m is not None and m.qmp is not None
        if self.verify_fd is not None:
            self._wait_verified(self.verify_fd)
        m.execute("migrate-set-capabilities", {
            "capabilities": [{"capability": "events", "state": True}]})
        m.qmp.execute("getfd", {"fdname": "qemuwrap-restore"}, fds=[fd])
        m.execute("migrate-incoming", {"uri": "fd:qemuwrap-restore"})
        deadline = time.monotonic() + LOAD_TIMEOUT
        while True:
            event = m.qmp.wait_event(("MIGRATION",), deadline - time.monotonic(),
                                     [m.pidfd] if m.pidfd is not None else None)
            status = (event or {}).get("data", {}).get("status")
            if status == "completed":
                return
            if event is None or status in ("failed", "cancelled"):
                why = "QEMU ended" if m.exited() else (status or "no answer in time")
                raise LaunchError(f"loading the saved state failed ({why})",
                                  output=tail(self.gdir.file("qemu.log")))

    def _wait_verified(self, fd: int) -> None:
        """The command that launched us checks the save file's checksum while QEMU
        starts; QEMU gets no byte of the state before it said "ok"."""
        import select

        deadline = time.monotonic() + LOAD_TIMEOUT
        data = b""
        while not data.endswith(b"\n"):
            if not select.select([fd], [], [], max(deadline - time.monotonic(), 0))[0]:
                raise LaunchError("the save file's checksum was not confirmed in time")
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
        os.close(fd)
        self.verify_fd = None
        answer = data.decode("utf-8", "replace").strip()
        if answer != "ok":
            raise LaunchError(answer or "the save file's checksum was not confirmed")

    def _check_genid(self) -> None:
        """The ID QEMU will show the guest must be the definition's, or nothing runs."""
        if not self.dom.genid_requested:
            return
        assert self.machine is not None
        got = self.machine.execute("query-vm-generation-id")["guid"]
        if got.lower() != self.dom.genid_str:
            raise LaunchError(f"QEMU reports genid {got}, the definition says "
                              f"{self.dom.genid_str}; not starting the guest")

    def _discover(self) -> None:
        """Where the console and the VNC display are, for ``status`` and ``console``."""
        assert self.machine is not None and self.record is not None
        try:
            for dev in self.machine.execute("query-chardev"):
                if dev.get("label") == "charserial0" and dev["filename"].startswith("pty:"):
                    self.record.console = dev["filename"][4:]
        except QemuwrapError:
            pass
        if self.dom.graphics:
            try:
                vnc = self.machine.execute("query-vnc")
                if vnc.get("enabled"):
                    self.record.vnc = f"{vnc.get('host')}:{vnc.get('service')}"
            except QemuwrapError:
                pass

    def adopt(self, record: GuestRecord) -> None:
        """Take over a QEMU whose supervisor died."""
        assert record.qemu is not None
        self.record = record
        me = os.getpid()
        record.supervisor = Proc(me, process.create_time(me) or time.time(), [])
        self.machine = Machine(self.plan.cmd, self.gdir, on_change=self._write_record)
        self.machine.companion_entries = list(record.companions)
        self.machine.attach(record.qemu)
        self._write_record()
        status = self.machine.execute("query-status")["status"]
        self.run_state = status
        self.log(f"adopted QEMU pid {record.qemu.pid}, genid {self.dom.genid_str or 'none'}")

    # -- running ----------------------------------------------------------------------
    def run(self) -> int:
        """Serve until the guest ends for good; the exit status that says how."""
        self.loop = loop = Loop()
        for sig in (15, 2):  # SIGTERM, SIGINT
            loop.add_signal_handler(sig, self._on_signal)
        status = EXIT_CRASHED
        try:
            self.server = control.Server(loop, self.gdir.file(control.SOCKET), self._on_request)
            self._watch()
            if self.console:
                self._attach_console()
            sd_notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=running")
            for sig in self.early_signals:  # arrived while QEMU was starting
                loop.deliver(sig)
            if self.plan.marker.startswith("revert") and self.dom.agent_socket:
                from qemuwrap.runtime.agent import thaw_if_frozen

                thaw_if_frozen(self._agent(), self.log)
            while True:
                loop.run_until(lambda: self._ended)
                result, why = policy.verdict(self.ending, self.dom.on_crash)
                self.log(why)
                if result is not None:
                    status = result
                    break
                self._restart()
        finally:
            self._finish(status)
        return status

    def _restart(self) -> None:
        """on_crash=restart: a new QEMU, the same genid."""
        self.log("starting QEMU again (same genid)")
        self._ended = False
        self.plan.marker = "restart (on_crash)"
        if self.machine is not None:  # the ended QEMU's: a tap must go before it is made
            self.machine.stop_companions(record=False)
        self.launch(self.plan.restart_cmd)
        self._watch()

    def _finish(self, status: int) -> None:
        self._unwatch()
        if self._agent_worker is not None:
            self._agent_worker.close()
        if self.machine is not None:
            if not self.machine.exited():
                self.machine.quit()  # only on an internal error: never leave it running
            self.machine.stop_companions(record=False)
            self.machine.close()
        self.gdir.clear_runtime()
        outcome = "saved" if self.ending.saved else policy.shutdown_outcome(self.ending)
        for conn in self._waiters:
            conn.send({"ok": True, "outcome": outcome, "exit_status": status})
        if self.server is not None:
            self.server.close()
        if self.loop is not None:
            self.loop.close()

    def _watch(self) -> None:
        m = self.machine
        assert m is not None and self.loop is not None
        if m.pidfd is not None:
            self.loop.add_reader(m.pidfd, self._qemu_ended)
            self._watched.append(m.pidfd)
        if m.qmp is not None:
            self.loop.add_reader(m.qmp.fileno(), self._qmp_readable)
            self._watched.append(m.qmp.fileno())
        self._drain_events()

    def _unwatch(self) -> None:
        if self.loop is not None:
            for fd in self._watched:
                self.loop.remove_reader(fd)
        self._watched = []

    def _qemu_ended(self) -> None:
        assert self.machine is not None
        if self._ended:
            return
        self._drain_events()  # the SHUTDOWN event tells why
        self._unwatch()
        self.ending.returncode = self.machine.reap()
        for timer in (self._force_timer, self._kill_timer):
            if timer is not None:
                timer.cancel()
        self._force_timer = self._kill_timer = None
        if self._job is not None:
            job, self._job, self._job_conn = self._job, None, None
            job.qemu_ended()
        self._ended = True

    def _qmp_readable(self) -> None:
        m = self.machine
        assert m is not None and m.qmp is not None
        try:
            m.qmp.poll()
        except (EOFError, MonitorError):
            if self.loop is not None:
                self.loop.remove_reader(m.qmp.fileno())
            # QEMU closed its monitor: it is ending; the pidfd says when.
        self._drain_events()

    def _drain_events(self) -> None:
        m = self.machine
        if m is None or m.qmp is None:
            return
        while m.qmp.events:
            event = m.qmp.events.popleft()
            self._on_event(event.get("event", ""), event.get("data") or {})

    def _on_event(self, name: str, data: dict) -> None:
        dom = self.dom
        if name == "SHUTDOWN":
            self.ending.reason = data.get("reason")
            self.log(f"SHUTDOWN ({self.ending.reason})")
            action = policy.on_shutdown(self.ending.reason, dom.on_poweroff,
                                        self.ending.stopping)
            if action is Action.QUIT:
                self._send("quit")
            elif action is Action.RESET:
                self.log("on_poweroff=restart: resetting the guest (same genid)")
                self.ending.reason = None
                self._send("system_reset")
                self._send("cont")
            elif action is Action.PRESERVE:
                self.run_state = "shutdown"
                self.log("on_poweroff=preserve: QEMU kept, guest stopped")
        elif name == "RESET":
            self.log(f"guest reset ({data.get('reason', 'reboot')})")
        elif name == "GUEST_PANICKED":
            self.ending.panicked = True
            self.log(f"guest panicked; on_crash={dom.on_crash}")
            if policy.on_panic(dom.on_crash) is Action.RESET:
                self.ending.panicked = False
                self._send("system_reset")
                self._send("cont")
        elif name == "STOP":
            if self.run_state == "running":
                self.run_state = "paused"
        elif name == "RESUME":
            self.run_state = "running"
        elif name == "MIGRATION" and isinstance(self._job, migrate.SaveJob):
            self._job.on_migration(data.get("status"))

    def _send(self, command: str) -> None:
        """A command whose reply we need not wait for (the loop stays responsive)."""
        m = self.machine
        if m is None or m.qmp is None or m.qmp.closed:
            return
        try:
            m.qmp.send(command, callback=lambda _msg: None)
        except QemuwrapError as exc:
            self.log(f"'{command}' failed: {exc}")

    def _call(self, command: str, args: dict | None = None, *, done: Callable,
              timeout: float = REQUEST_TIMEOUT) -> None:
        """A QMP exchange from the loop: ``done(result, error)`` on QEMU's reply or when
        ``timeout`` passed. Nothing waits, so status, destroy and signals are served
        meanwhile."""
        m = self.machine
        if m is None or m.qmp is None or m.qmp.closed or self.loop is None:
            done(None, MonitorError("QEMU's monitor is not connected"))
            return
        m.qmp.call(command, args, later=self.loop.call_later, timeout=timeout, done=done)

    def _on_signal(self, _sig: int) -> None:
        if self.ending.stopping:
            self.destroy()  # a second signal: stop now
        else:
            self.shutdown(self.shutdown_timeout)

    # -- stopping -----------------------------------------------------------------------
    def shutdown(self, timeout: float, conn: control.Connection | None = None) -> None:
        """ACPI power button; the guest is forced off if not gone within ``timeout``."""
        if conn is not None:
            self._waiters.append(conn)
        if self._ended:
            return
        if self._force_timer is not None:  # asked again: the shorter deadline wins
            if time.monotonic() + timeout >= self._force_timer.when:
                return
            self._force_timer.cancel()
        self.ending.stopping = True
        self.ending.asked = "acpi"
        sd_notify("STOPPING=1")
        self.log(f"asking the guest to power off (ACPI), {timeout:g} s before forcing")

        def done(_result, error: QemuwrapError | None) -> None:
            if error is not None:
                self.log(f"system_powerdown: {error}")

        self._call("system_powerdown", done=done)
        self._force_after(timeout)

    def _force_after(self, timeout: float) -> None:
        if self._ended:
            return
        if self._force_timer is not None:  # the shorter deadline wins
            if time.monotonic() + timeout >= self._force_timer.when:
                return
            self._force_timer.cancel()
        assert self.loop is not None
        self._force_timer = self.loop.call_later(timeout, lambda: self._timed_out(timeout))

    def _agent_shutdown(self, timeout: float, conn: control.Connection) -> None:
        """``guest-shutdown`` through the guest agent, forced after ``timeout`` as the
        ACPI path. Marked as stopping before it is sent: a guest that powers off at once
        is not restarted by its on_poweroff."""
        from qemuwrap.runtime.agent import SHUTDOWN

        was = (self.ending.stopping, self.ending.asked)
        self.ending.stopping, self.ending.asked = True, "agent"
        self._waiters.append(conn)

        def asked(_reply: dict | None, error: QemuwrapError | None) -> None:
            if error is None:
                self.log(f"the guest agent was asked to power off the guest, {timeout:g} s "
                         "before forcing")
                sd_notify("STOPPING=1")
                self._force_after(timeout)
                return
            if conn in self._waiters:
                self._waiters.remove(conn)
            if self._force_timer is None and not self._ended:
                self.ending.stopping, self.ending.asked = was
            conn.send({"error": f"{error}; the guest was not asked to power off"})

        try:
            self._agent().submit(SHUTDOWN, max(min(timeout, 5.0), 1.0), asked)
        except QemuwrapError as exc:
            asked(None, exc)

    def _timed_out(self, timeout: float) -> None:
        self._force_timer = None
        self.log(f"guest still running after {timeout:g} s")
        self.destroy()

    def destroy(self, conn: control.Connection | None = None) -> None:
        """Stop QEMU now: QMP quit, SIGKILL if it has not ended within QUIT_TIMEOUT (at
        once if it is stopped: a SIGSTOPped QEMU answers nothing). From the loop this
        waits for nothing: QEMU's end (its pidfd) finishes the run."""
        if conn is not None:
            self._waiters.append(conn)
        if self._ended or self.machine is None or self.machine.proc is None:
            return
        self.ending.forced = True
        if self.loop is None:  # before supervision began (the launch's own checks)
            self._unwatch()
            self.machine.quit()
            self._qemu_ended()
            return
        if self._kill_timer is not None:
            return  # on its way already
        if process.state_letter(self.machine.proc.pid) in ("T", "t"):
            self._kill()
            return
        self._send("quit")
        self._kill_timer = self.loop.call_later(QUIT_TIMEOUT, self._kill)

    def _kill(self) -> None:
        """SIGKILL: QEMU did not end after ``quit`` (or cannot answer)."""
        self._kill_timer = None
        if self._ended or self.machine is None:
            return
        self.log("QEMU did not quit; killing it")
        self._drain_events()
        self._unwatch()
        self.machine.kill()
        self._qemu_ended()

    # -- requests -------------------------------------------------------------------------
    def _on_request(self, conn: control.Connection, msg: dict) -> None:
        kind = msg["request"]
        handler = getattr(self, "_req_" + kind.replace("-", "_"), None)
        if handler is None:
            conn.send({"error": f"unknown request '{printable(kind)}'"})
            return
        if self._ended:
            conn.send({"error": "the guest is shutting down"})
            return
        handler(conn, msg)

    def _req_status(self, conn: control.Connection, _msg: dict) -> None:
        """QEMU's run state, asked without waiting; during a save or a snapshot, the
        job (QEMU may be too busy to answer while it writes)."""
        def answer(state: str) -> None:
            conn.send({"ok": True, "state": STATES.get(state, state),
                       "stopping": self.ending.stopping, "agent_socket": self.dom.agent_socket})

        assert self.machine is not None and self.machine.proc is not None
        pid = self.machine.proc.pid
        if process.state_letter(pid) in ("T", "t"):
            answer("stopped (QEMU process is stopped: SIGSTOP)")
        elif self._job is not None:
            answer(f"paused ({self._job.kind})")
        else:
            self._call("query-status", timeout=STATUS_TIMEOUT, done=lambda result, error:
                       answer(result["status"] if error is None else "not responding"))

    def _req_shutdown(self, conn: control.Connection, msg: dict) -> None:
        timeout = msg.get("timeout", self.shutdown_timeout)
        mode = msg.get("mode", "acpi")
        if mode not in ("acpi", "agent"):
            raise QemuwrapError(f"unsupported shutdown mode '{printable(str(mode))}' "
                                "(supported: 'acpi', 'agent')")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise QemuwrapError("the shutdown timeout must be a number of seconds")
        if mode == "agent":
            self._agent_shutdown(float(timeout), conn)
        else:
            self.shutdown(float(timeout), conn)

    def _req_destroy(self, conn: control.Connection, _msg: dict) -> None:
        self.destroy(conn)

    def _refuse_if_busy(self) -> None:
        if self._job is not None:
            raise QemuwrapError(f"the guest is busy ({self._job.kind}); try again once "
                                "that is done")

    def _req_suspend(self, conn: control.Connection, _msg: dict) -> None:
        self._refuse_if_busy()

        def done(_result, error: QemuwrapError | None) -> None:
            if error is not None:
                conn.send({"error": str(error)})
                return
            self.run_state = "paused"
            conn.send({"ok": True, "state": "paused"})

        self._call("stop", done=done)

    def _req_resume(self, conn: control.Connection, _msg: dict) -> None:
        self._refuse_if_busy()

        def resumed(_result, error: QemuwrapError | None) -> None:
            if error is not None:
                conn.send({"error": str(error)})
                return
            self.run_state = "running"
            conn.send({"ok": True, "state": "running"})

        def have_status(result, error: QemuwrapError | None) -> None:
            if error is not None:
                conn.send({"error": str(error)})
            elif result["status"] not in ("paused", "running"):
                conn.send({"error": f"the guest is {result['status']}; only a paused guest "
                                    "can be resumed"})
            else:
                self._call("cont", done=resumed)

        self._call("query-status", done=have_status)

    def _req_snapshot_create(self, conn: control.Connection, msg: dict) -> None:
        if not msg.get("quiesce"):
            self._hmp(conn, "savevm", msg)
            return
        # The guest's file systems frozen around it (runtime/agent.py), thawed whatever
        # happens; refused at once without an agent channel.
        from qemuwrap.runtime.agent import quiesced

        name = _snapshot_name(msg)
        self._refuse_if_busy()
        agent = self._agent()
        job = SnapshotJob(conn)
        self._job, self._job_conn = job, conn
        try:
            quiesced(agent, lambda then: self._run_hmp("savevm", name, then),
                     lambda result, error: self._end_job(job, result, error), self.log)
        except QemuwrapError:
            self._job = self._job_conn = None
            raise

    def _req_snapshot_delete(self, conn: control.Connection, msg: dict) -> None:
        self._hmp(conn, "delvm", msg)

    def _hmp(self, conn: control.Connection, verb: str, msg: dict) -> None:
        """HMP savevm/delvm, answered when QEMU is done; the loop serves others
        meanwhile (SNAPSHOT_TIMEOUT bounds the wait)."""
        name = _snapshot_name(msg)
        self._refuse_if_busy()
        job = SnapshotJob(conn)
        self._job, self._job_conn = job, conn
        self._run_hmp(verb, name, lambda result, error: self._end_job(job, result, error))

    def _end_job(self, job: SnapshotJob, result: dict | None,
                 error: QemuwrapError | None) -> None:
        if self._job is job:
            self._job = self._job_conn = None
        job.end({"error": str(error)} if error is not None else {"ok": True, **(result or {})})

    def _run_hmp(self, verb: str, name: str, done: Callable) -> None:
        """``done({}, None)`` when QEMU did it, ``done(None, error)`` with HMP's complaint."""
        def answered(out, error: QemuwrapError | None) -> None:
            if error is not None:
                done(None, error)
            elif out and out.strip():
                done(None, QemuwrapError(out.strip().splitlines()[-1]))
            else:
                done({}, None)

        self._call("human-monitor-command", {"command-line": f"{verb} {name}"},
                   timeout=SNAPSHOT_TIMEOUT, done=answered)

    # -- the guest agent: one exchange at a time, off the loop (runtime/agent.py) ------
    def _agent(self) -> AgentWorker:
        if self._agent_worker is None:  # loaded by the first request: most never need it
            from qemuwrap.runtime.agent import AgentWorker

            assert self.loop is not None
            self._agent_worker = AgentWorker(self.loop, self.dom.agent_socket, self.log)
        return self._agent_worker

    def _req_agent(self, conn: control.Connection, msg: dict) -> None:
        """``agent {command, timeout}``: one agent command, its reply as it came."""
        from qemuwrap.guestagent import DEFAULT_TIMEOUT, parse_command
        from qemuwrap.runtime.agent import check_timeout

        request = parse_command(msg.get("command"))
        timeout = check_timeout(msg.get("timeout", DEFAULT_TIMEOUT))
        self._agent().submit(request, timeout, lambda reply, error: conn.send(
            {"error": str(error)} if error is not None else {"ok": True, "reply": reply}))

    def _req_save(self, conn: control.Connection, msg: dict) -> None:
        """Write the guest's state into the fd the client passed (a SaveJob, driven by
        the loop); on the client's commit (its file is complete and synced) QEMU ends
        and the run's status is "saved". On a failure, or a client that goes away, the
        save is undone and a guest that was running runs on."""
        fds = conn.take_fds()
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise QemuwrapError("a save needs exactly one file descriptor")
        timeout = msg.get("timeout", 3600)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            os.close(fds[0])
            raise QemuwrapError("the save timeout must be a number of seconds")
        try:
            self._refuse_if_busy()
        except QemuwrapError:
            os.close(fds[0])
            raise
        m = self.machine
        assert m is not None and m.qmp is not None and self.loop is not None

        def finished() -> None:
            if self._job is job:
                self._job = self._job_conn = None

        job = migrate.SaveJob(m.qmp, self.loop.call_later, fds[0], timeout=float(timeout),
                              commit_timeout=COMMIT_TIMEOUT, report=conn.send,
                              finished=finished, log=self.log)
        self._job, self._job_conn = job, conn
        conn.on_close.append(lambda: job.abandon("save abandoned by its client"))
        job.start()

    def _req_commit(self, conn: control.Connection, msg: dict) -> None:
        """The save's client has stored the state: QEMU ends, the guest is saved."""
        job = self._job
        if not isinstance(job, migrate.SaveJob) or self._job_conn is not conn \
                or not job.commit():
            raise QemuwrapError("no completed save to commit")
        self.ending.saved = True
        self.log(f"guest saved to {printable(str(msg.get('path')))}")
        self.destroy(conn)

    # -- console ------------------------------------------------------------------------
    def _attach_console(self) -> None:
        """Copy the first serial port's output to stdout (``run --console``)."""
        import tty

        pty = self.record.console if self.record else None
        if pty is None:
            self.log("--console: the guest has no pty serial port 0; nothing to show")
            return
        fd = os.open(pty, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        tty.setraw(fd)
        assert self.loop is not None

        def copy() -> None:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                assert self.loop is not None
                self.loop.remove_reader(fd)
                os.close(fd)
                return
            try:
                os.write(sys.stdout.fileno(), data.replace(b"\r\n", b"\n"))
            except OSError:
                pass

        self.loop.add_reader(fd, copy)


def _snapshot_name(msg: dict) -> str:
    name = msg.get("name")
    if not isinstance(name, str) or not name or not name.isprintable() or " " in name:
        raise QemuwrapError("a snapshot name must be printable text without spaces")
    return name


# -- the supervisor process ---------------------------------------------------------------
def _write_back(wb: dict, log: Callable[[str], None]) -> None:
    """After a restore or revert loaded its state: store the new genid in the definition
    file (the bytes the launching command prepared), unless the file changed meanwhile."""
    import hashlib

    from qemuwrap.definition import DefinitionWriteError, atomic_write

    path = wb["path"]
    try:
        with open(path, "rb") as f:
            current = f.read()
        if hashlib.sha256(current).hexdigest() != wb["old_sha256"]:
            raise DefinitionWriteError(f"{printable(path)} changed while it was being used; "
                                       "not overwriting it")
        atomic_write(path, wb["new"].encode("latin-1"))
    except (DefinitionWriteError, OSError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else str(exc)
        if not wb.get("transient"):
            raise DefinitionWriteError(f"cannot save the new genid into {printable(path)}: "
                                       f"{why}; use --transient to restore without saving it")\
                from None
        log(f"note: the new genid is not saved into {printable(path)}: {why}")


def serve(plan: Plan, gdir: GuestDir, conf: dict, ready_fd: int | None) -> int:
    """Launch (or adopt), tell the waiting command, then supervise until the end."""
    from qemuwrap.runtime.guestdir import duplicate_genid
    from qemuwrap.runtime.record import GuestRecord

    early: list[int] = []
    for sig in (15, 2):  # a stop asked for while QEMU starts is honoured once it runs
        __import__("signal").signal(sig, lambda signum, _frame: early.append(signum))
    sup = Supervisor(plan, gdir, shutdown_timeout=conf["shutdown_timeout"],
                     console=conf["console"], early_signals=early)
    sup.verify_fd = conf.get("verify_fd")
    dom = plan.guest

    def spawned() -> None:
        if plan.writeback is not None:
            # The write-back needs the model (~70 ms to import, measured): imported in
            # a thread while QEMU starts and loads its state, which is waiting, not
            # work; _write_back's own import waits for it if it has not finished.
            # Started once QEMU is spawned: before, it held the GIL the spawn needed.
            import threading

            threading.Thread(target=__import__, args=("qemuwrap.definition",),
                             daemon=True, name="import-definition").start()

    if conf.get("adopt"):
        sup.adopt(GuestRecord.loads(conf["adopt"].encode(), gdir.file("state.json")))
    else:
        def after_load() -> None:
            if plan.writeback is not None:
                _write_back(plan.writeback, sup.log)
            if plan.previous_genid is not None:
                sup.log(f"genid: {plan.previous_genid} -> {dom.genid_str}")

        sup.launch(incoming_fd=plan.incoming_fd, after_load=after_load, spawned=spawned)
        # Two copies started at once both passed the check before either ran: the one
        # that started later gives way.
        if not conf["allow_duplicate_genid"] and sup.record is not None and dom.genid_str:
            other = duplicate_genid(dom.name, dom.genid_str, conf["state_dir"],
                                    since=sup.record.started)
            if other is not None:
                sup.destroy()
                gdir.clear_runtime()
                raise QemuwrapError(f"genid {dom.genid_str} is already used by the running "
                                    f"guest '{printable(other)}' (a copied definition?); "
                                    "give this guest its own <genid/>, or pass "
                                    "--allow-duplicate-genid")
    if ready_fd is not None:
        record = sup.record.to_json() if sup.record else {}
        record["previous_genid"] = plan.previous_genid or dom.genid_str
        _report(ready_fd, {"record": record})
    # The launch's objects stay for the supervisor's life: kept out of the collector's
    # passes from here (see main), which then runs again for what the loop makes.
    import gc

    gc.freeze()
    gc.enable()
    return sup.run()


def _report(fd: int, msg: dict) -> None:
    """Tell the waiting command how the launch went (one JSON line on a pipe)."""
    import json

    try:
        os.write(fd, json.dumps(msg).encode() + b"\n")
        os.close(fd)
    except OSError:
        pass


def _receive(fd: int) -> dict | None:
    """The launch from the socket ``fd`` (JSON until EOF, the fds it keeps attached):
    the fds renumbered as received (close-on-exec: QEMU inherits none of them), the
    log made stdout and stderr. None if the command closed it without a launch."""
    import array
    import json

    sock = socket.socket(fileno=fd)
    data, fds = b"", array.array("i")
    while True:
        chunk, anc, _flags, _addr = sock.recvmsg(1 << 16, socket.CMSG_SPACE(16 * fds.itemsize),
                                                  socket.MSG_CMSG_CLOEXEC)
        for level, kind, raw in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(raw[:len(raw) - len(raw) % fds.itemsize])
        if not chunk:
            break
        data += chunk
    sock.close()
    if not data:
        return None
    conf = json.loads(data)
    got = dict(zip(conf.pop("passed"), fds, strict=True))
    for key in ("lock_fd", "ready_fd", "verify_fd", "log_fd"):
        if conf.get(key) is not None:
            conf[key] = got[conf[key]]
    plan = conf["plan"]
    if plan.get("incoming_fd") is not None:
        plan["incoming_fd"] = got[plan["incoming_fd"]]
    log = conf.pop("log_fd")
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    return conf


def main(argv: list[str]) -> int:
    """``python -P -m qemuwrap.supervisor FD``: FD holds the launch as JSON (the plan,
    where the guest's directory is, the inherited lock and ready pipe); ``--socket FD``:
    started ahead of its launch, which comes on that socket (``_receive``). A process
    of its own rather than the launching command's fork: it carries only what it needs
    (no model, no capabilities), so each supervisor stays small."""
    import gc
    import json

    # No cyclic collection while the supervisor starts (its imports, the plan): a
    # launch makes no garbage cycles worth a pass, and the passes are on the way to
    # QEMU's spawn. Back on once the guest runs (serve).
    gc.disable()
    if argv[0] == "--socket":  # started early (launcher._Early): the launch comes later
        conf = _receive(int(argv[1]))
        if conf is None:
            return 0  # the command failed before its launch: nothing to do
    else:
        with os.fdopen(int(argv[0]), "rb") as f:
            conf = json.loads(f.read())
    ready_fd = conf.get("ready_fd")
    where = conf.get("where") or conf["name"]
    status = EXIT_ERROR
    try:
        gdir = GuestDir(conf["name"], conf["state_dir"])
        gdir.adopt_lock(conf["lock_fd"])
        status = serve(Plan.from_json(conf["plan"]), gdir, conf, ready_fd)
    except (QemuwrapError, OSError) as exc:
        if isinstance(exc, OSError):
            where_ = f" ({printable(str(exc.filename))})" if exc.filename else ""
            exc = QemuwrapError(f"{exc.strerror or exc}{where_}")
        if ready_fd is not None:
            _report(ready_fd, {"error": str(exc)})
        try:
            print(f"qemuwrap: {printable(where)}: {exc}", file=sys.stderr, flush=True)
        except OSError:
            pass
        status = getattr(exc, "exit_status", EXIT_ERROR)
    except KeyboardInterrupt:
        status = 130
    except BaseException:  # a bug: keep the traceback (in supervisor.log when detached)
        if ready_fd is not None:
            log = os.path.join(conf.get("guest_dir") or "", "supervisor.log")
            _report(ready_fd, {"error": f"the supervisor failed; see {printable(log)}"})
        raise
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
