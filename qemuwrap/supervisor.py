"""The supervisor: one object that runs a guest's QEMU and answers its events.

Modelled on QEMU's python/qemu/machine/machine.py: ``launch()`` starts QEMU paused,
attaches over QMP, checks the generation ID the guest will see, then resumes it;
``run()`` waits for QMP events and the process's end and applies the definition's
lifecycle actions; ``shutdown()`` asks the guest (ACPI) and forces after a timeout.
Nothing polls: the supervisor sleeps until QEMU, a signal or the kernel wakes it.

QEMU runs in its own session so it outlives the supervisor (libvirt's promise);
a later supervisor can adopt it (``adopt=True``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time

from qemu.qmp import EventListener

from qemuwrap import process, qmp
from qemuwrap.conf.domain import Domain
from qemuwrap.errors import QemuwrapError
from qemuwrap.qemu.argv import Command
from qemuwrap.state import GuestDir

EXIT_POWEROFF = 0  # the guest powered off (or rebooted with on_reboot=destroy)
EXIT_ERROR = 1  # QEMU did not start, or the genid check failed
EXIT_CRASHED = 3  # QEMU died (signal, failure exit) or the guest panicked
EXIT_DESTROYED = 4  # stopped by force: destroy, shutdown timeout, QEMU told to quit

#: SHUTDOWN reasons that mean "someone on the host stopped QEMU".
_HOST_REASONS = ("host-qmp-quit", "host-signal", "host-ui")
#: SHUTDOWN reasons of a reboot that -action reboot=shutdown turned into a shutdown.
_REBOOT_REASONS = ("guest-reset", "host-qmp-system-reset")


class LaunchError(QemuwrapError):
    """QEMU failed to start; the message carries the end of its log."""


def _tail(path: str, lines: int = 3) -> str:
    try:
        with open(path, "rb") as f:
            text = f.read()[-4096:].decode("utf-8", "replace")
    except OSError:
        return ""
    rows = [r.strip() for r in text.splitlines() if r.strip()]
    return " | ".join(rows[-lines:])


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) about readiness and stopping; a no-op elsewhere."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode(), addr)


class Supervisor:
    """Runs and watches the QEMU of one guest."""

    def __init__(self, dom: Domain, gdir: GuestDir, cmd: Command, *, source: str | None,
                 shutdown_timeout: float = 30.0, console: bool = False, log=None,
                 restart_cmd: Command | None = None, pid: int | None = None,
                 early_signals: list[int] | None = None):
        self.dom = dom
        self.gdir = gdir
        self.cmd = cmd
        # A restore or revert starts once from saved state; a restart boots afresh.
        self.restart_cmd = restart_cmd or cmd
        self.source = source
        self.shutdown_timeout = shutdown_timeout
        self.console = console
        self.log = log or (lambda msg: print(f"qemuwrap: {dom.name}: {msg}", file=sys.stderr,
                                             flush=True))
        self.pid = pid  # QEMU's, when the caller spawned it already
        self.early_signals = early_signals if early_signals is not None else []
        self.client = None
        self._exited: asyncio.Future | None = None
        self._events_task: asyncio.Task | None = None
        self.reason: str | None = None  # last SHUTDOWN reason
        self.stopping = False  # we asked the guest to power off
        self.destroying = False  # we are stopping QEMU by force
        self.panicked = False

    # -- hooks (as in QEMU's machine.py) ----------------------------------------
    def _post_launch(self) -> None:
        self.dom.id = self.pid
        from qemuwrap.definition import atomic_write

        atomic_write(self.gdir.file("domain.xml"), self.dom.format().encode(), mode=0o600)
        if self.source:  # kept after the guest ends: snapshot revert finds the definition
            atomic_write(self.gdir.file("definition"), self.source.encode(), mode=0o600)
        self.gdir.write_record({
            "name": self.dom.name, "uuid": self.dom.uuid_str, "genid": self.dom.genid_str,
            "source": self.source, "state_dir": self.gdir.path,
            "qemu_pid": self.pid, "qemu_create_time": process.create_time(self.pid),
            "supervisor_pid": os.getpid(),
            "supervisor_create_time": process.create_time(os.getpid()),
            "qmp_socket": self.gdir.file("qmp.sock"),
            "control_socket": self.gdir.file("control.sock"),
            "started": time.time(), "argv": self.cmd.argv, "env": self.cmd.env,
        })

    def _post_shutdown(self) -> None:
        self.gdir.clear_runtime()

    # -- start -------------------------------------------------------------------------
    async def launch(self, *, incoming: str | None = None, after_load=None) -> None:
        """Attach to the QEMU the caller spawned (spawning it if not, as on a restart),
        check the generation ID it will show the guest, then let the guest run.

        ``incoming``: a migration URI to load saved state from before resuming (QEMU was
        started with ``-incoming defer``). ``after_load()`` runs once the state is loaded
        and the genid checked, before the guest runs (a restore saves its new genid there).
        """
        if self.pid is None:  # not spawned by the caller yet (a restart)
            self.pid = process.start_qemu(self.cmd, self.gdir, self.dom)
        self._exited = process.watch(asyncio.get_running_loop(), self.pid, child=True)
        try:
            await self._attach(alive=lambda: not self._exited.done())
            if incoming is not None:
                await self._load_state(incoming)
            await self._check_genid()
            if after_load is not None:
                after_load()
            if (incoming is None and self.dom.current_memory_kib
                    and self.dom.current_memory_kib < self.dom.memory_kib):
                await self.client.execute("balloon", {"value": self.dom.current_memory_kib * 1024})
            await self.client.execute("cont")
        except BaseException as exc:
            await self._kill()
            if isinstance(exc, LaunchError):
                raise
            detail = _tail(self.gdir.file("qemu.log"))
            status = self._exited.result() if self._exited.done() else None
            what = f"QEMU exited with status {status}" if status is not None else str(exc)
            raise LaunchError(f"QEMU failed to start: {what}" +
                              (f": {detail}" if detail else "")) from None
        self._post_launch()
        self.log(f"running, QEMU pid {self.pid}, genid {self.dom.genid_str or 'none'}")
        if self.console:
            await self._attach_console()

    async def _load_state(self, uri: str) -> None:
        """Feed QEMU a saved state and wait (on MIGRATION events, no polling) for the end.

        QEMU 7.2 exits when a load fails, so the process's end is watched as well.
        """
        listener = EventListener(("MIGRATION",))
        self.client.register_listener(listener)

        async def outcome() -> str:
            async for event in listener:
                status = event["data"]["status"]
                if status in ("completed", "failed", "cancelled"):
                    return status
            return "failed"

        try:
            await self.client.execute("migrate-set-capabilities", {
                "capabilities": [{"capability": "events", "state": True}]})
            await self.client.execute("migrate-incoming", {"uri": uri})
            waiter = asyncio.ensure_future(outcome())
            await asyncio.wait([waiter, self._exited], return_when=asyncio.FIRST_COMPLETED)
            status = waiter.result() if waiter.done() else "failed"
            waiter.cancel()
        finally:
            self.client.remove_listener(listener)
        if status != "completed":
            detail = _tail(self.gdir.file("qemu.log"))
            raise LaunchError("loading the saved state failed" + (f": {detail}" if detail else ""))

    async def adopt(self, record: dict) -> None:
        """Take over a QEMU whose supervisor died: attach, and watch it through a pidfd."""
        self.pid = record["qemu_pid"]
        self._exited = process.watch(asyncio.get_running_loop(), self.pid, child=False)
        await self._attach()
        record.update(supervisor_pid=os.getpid(),
                      supervisor_create_time=process.create_time(os.getpid()))
        self.gdir.write_record(record)
        self.log(f"adopted QEMU pid {self.pid}, genid {self.dom.genid_str or 'none'}")

    async def _attach(self, alive=None) -> None:
        self.client = await qmp.connect(self.gdir.file("qmp.sock"), alive=alive)
        self._events_task = asyncio.ensure_future(self._pump_events())

    async def _check_genid(self) -> None:
        """The ID QEMU will show the guest must be the definition's, or nothing runs."""
        if not self.dom.genid_requested:
            return
        got = (await self.client.execute("query-vm-generation-id"))["guid"]
        if got.lower() != self.dom.genid_str:
            raise LaunchError(f"QEMU reports genid {got}, the definition says "
                              f"{self.dom.genid_str}; not starting the guest")

    async def _attach_console(self) -> None:
        """Copy the first serial port's output to stdout (like ``virsh console``)."""
        import tty

        chardevs = await self.client.execute("query-chardev")
        pty = next((c["filename"][4:] for c in chardevs
                    if c["label"] == "charserial0" and c["filename"].startswith("pty:")), None)
        if pty is None:
            self.log("--console: the guest has no pty serial port 0; nothing to show")
            return
        fd = os.open(pty, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        tty.setraw(fd)
        loop = asyncio.get_running_loop()

        def copy():
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(fd)
                os.close(fd)
                return
            os.write(sys.stdout.fileno(), data.replace(b"\r\n", b"\n"))

        loop.add_reader(fd, copy)

    # -- watching ---------------------------------------------------------------------
    async def _pump_events(self) -> None:
        with contextlib.suppress(asyncio.CancelledError, EOFError, ConnectionError):
            async for event in self.client.events:
                await self._on_event(event["event"], event.get("data") or {})

    async def _on_event(self, name: str, data: dict) -> None:
        dom = self.dom
        if name == "SHUTDOWN":
            self.reason = data.get("reason")
            self.log(f"SHUTDOWN ({self.reason})")
            if dom.on_poweroff == "destroy" or self.reason in _HOST_REASONS:
                return  # -action shutdown=poweroff: QEMU exits by itself
            # -action shutdown=pause: QEMU stopped; what happens next is ours to say.
            if self.stopping or self.reason in _REBOOT_REASONS:
                await self._quit()  # asked to stop, or on_reboot=destroy
            elif dom.on_poweroff == "restart":
                self.log("on_poweroff=restart: resetting the guest (same genid)")
                self.reason = None
                await self._execute("system_reset")
                await self._execute("cont")
            else:
                self.log("on_poweroff=preserve: QEMU kept, guest stopped")
        elif name == "RESET":
            self.log(f"guest reset ({data.get('reason', 'reboot')})")
        elif name == "GUEST_PANICKED":
            self.panicked = True
            self.log(f"guest panicked; on_crash={dom.on_crash}")
            if dom.on_crash == "restart":
                self.panicked = False
                await self._execute("system_reset")
                await self._execute("cont")

    async def _execute(self, command: str, args: dict | None = None):
        with contextlib.suppress(Exception):
            return await self.client.execute(command, args)

    async def run(self) -> int:
        """Wait until the guest ends for good; return the exit status that says how."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal)
        sd_notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=running")
        if self.early_signals:  # SIGTERM/SIGINT arrived while QEMU was starting
            self._on_signal()
        try:
            while True:
                returncode = await asyncio.shield(self._exited)
                status = self._verdict(returncode)
                if status is not None:
                    return status
                self.log("on_crash=restart: starting QEMU again (same genid)")
                await self._detach()
                self.cmd = self.restart_cmd
                self.pid = None
                await self.launch()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self._detach()
            self._post_shutdown()

    def _verdict(self, returncode: int | None) -> int | None:
        """How did QEMU end? None means: on_crash=restart, start it again."""
        if returncode is not None and returncode < 0:
            self.log(f"QEMU was killed by signal {-returncode} "
                     f"({signal.Signals(-returncode).name})")
        if self.destroying:
            self.log("QEMU stopped by force")
            return EXIT_DESTROYED
        if self.reason in _HOST_REASONS:
            try:  # `qemuwrap save` leaves a marker before it tells QEMU to quit
                with open(self.gdir.file("saved")) as f:
                    self.log(f"guest saved to {f.read()}")
                os.unlink(self.gdir.file("saved"))
                return EXIT_POWEROFF
            except FileNotFoundError:
                pass
            self.log(f"QEMU stopped from the host ({self.reason})")
            return EXIT_DESTROYED
        clean = returncode in (0, None) and not self.panicked
        if self.reason in ("guest-shutdown", *_REBOOT_REASONS) and clean:
            self.log("guest powered off" if self.reason == "guest-shutdown"
                     else "guest rebooted; on_reboot=destroy")
            return EXIT_POWEROFF
        if returncode is not None and returncode > 0:
            self.log(f"QEMU exited with status {returncode}: "
                     f"{_tail(self.gdir.file('qemu.log'))}")
        elif returncode is None and self.reason is None:
            self.log("QEMU ended without shutting down")
        if self.dom.on_crash == "restart" and not self.stopping:
            return None
        return EXIT_CRASHED

    def _on_signal(self) -> None:
        if self.stopping:
            asyncio.ensure_future(self.destroy())  # a second signal: stop now
        else:
            asyncio.ensure_future(self.shutdown())

    # -- stopping ---------------------------------------------------------------------
    async def shutdown(self, timeout: float | None = None) -> None:
        """ACPI power button; force the guest off if it is not gone within ``timeout``."""
        timeout = self.shutdown_timeout if timeout is None else timeout
        self.stopping = True
        sd_notify("STOPPING=1")
        self.log(f"asking the guest to power off (ACPI), {timeout:g} s before forcing")
        await self._execute("system_powerdown")
        try:
            await asyncio.wait_for(asyncio.shield(self._exited), timeout)
        except TimeoutError:
            self.log(f"guest still running after {timeout:g} s")
            await self.destroy()

    async def destroy(self) -> None:
        """Stop QEMU now: QMP quit, SIGKILL if QEMU does not answer."""
        if self._exited.done():
            return
        self.destroying = True
        try:
            await asyncio.wait_for(self._quit(), 5)
            await asyncio.wait_for(asyncio.shield(self._exited), 10)
        except (TimeoutError, Exception):  # noqa: BLE001 - any failure: kill
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            await asyncio.shield(self._exited)

    async def _quit(self) -> None:
        with contextlib.suppress(EOFError, ConnectionError, Exception):
            await self.client.execute("quit")

    async def _kill(self) -> None:
        """End a QEMU that failed during launch, and reap it."""
        if self._exited is not None and not self._exited.done():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        if self._exited is not None:
            with contextlib.suppress(Exception):
                await self._exited
        await self._detach()

    async def _detach(self) -> None:
        if self._events_task is not None:
            self._events_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._events_task
            self._events_task = None
        if self.client is not None:
            await qmp.disconnect(self.client)
            self.client = None

