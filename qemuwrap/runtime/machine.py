"""Machine: one QEMU process (and its companions), driven with deadlines.

Shaped after QEMU's ``python/qemu/machine/machine.py``: ``launch()`` in phases
(companions, spawn, QMP), a soft stop that turns hard after a timeout, and a failure
that carries QEMU's exit code, command line and the end of its output. The
supervisor owns one Machine; nothing else drives that QEMU while the supervisor lives.

Every wait has a deadline and every failure after the spawn stops what was spawned:
a launch that fails leaves no QEMU and no companion running.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence

from qemuwrap import process
from qemuwrap.errors import QemuwrapError
from qemuwrap.runtime.companions import Companion, clean_up
from qemuwrap.runtime.qmp import QMP, MonitorError
from qemuwrap.runtime.record import Companion as CompanionEntry
from qemuwrap.runtime.record import Proc

#: How long QEMU gets to bring up its QMP monitor.
QMP_TIMEOUT = 30.0
#: How long a QMP ``quit`` gets before QEMU is killed.
QUIT_TIMEOUT = 3.0


class Exe:
    """A program to run: binary, argv and environment (a built QEMU command, as data)."""

    def __init__(self, binary: str, argv: list[str], env: dict[str, str]):
        self.binary = binary
        self.argv = list(argv)
        self.env = dict(env)

    @classmethod
    def of(cls, cmd) -> Exe:
        """From a qemu.argv.Command."""
        return cls(cmd.binary, cmd.argv, cmd.env)


class MachineError(QemuwrapError):
    """QEMU failed: its exit code (if it ended), command line and the end of its log."""

    def __init__(self, message: str, *, exitcode: int | None = None,
                 argv: Sequence[str] = (), output: str = ""):
        self.message = message
        self.exitcode = exitcode
        self.argv = list(argv)
        self.output = output
        super().__init__(message + (f": {output}" if output else ""))


def tail(path: str, lines: int = 3) -> str:
    """The last lines of a log, joined on one line (for a one-line message)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        size = os.fstat(fd).st_size
        text = os.pread(fd, 4096, max(size - 4096, 0)).decode("utf-8", "replace")
    finally:
        os.close(fd)
    rows = [r.strip() for r in text.splitlines() if r.strip()]
    marks = [i for i, r in enumerate(rows) if r.startswith("---- ")]
    if marks:  # only what this start wrote
        rows = rows[marks[-1] + 1:]
    return " | ".join(rows[-lines:])


def chardev_logs(argv: Sequence[str], directory: str) -> list[str]:
    """The names of the files in ``directory`` that QEMU's command line has it log
    character devices to (``logfile=PATH``, commas doubled as QEMU escapes them)."""
    out = []
    for word in argv:
        for found in re.finditer(r"(?:^|,)logfile=((?:[^,]|,,)*)", word):
            path = found.group(1).replace(",,", ",")
            if os.path.dirname(path) == directory and os.path.basename(path) not in out:
                out.append(os.path.basename(path))
    return out


class Machine:
    """A QEMU process: spawned by us (``launch``) or found running (``attach``)."""

    def __init__(self, cmd: Exe, gdir, *, companions: Sequence[Companion] = (),
                 on_change: Callable[[], None] | None = None, marker: str = "start"):
        self.cmd = cmd
        self.gdir = gdir
        self.companions = list(companions)
        self.companion_entries: list[CompanionEntry] = []
        self.on_change = on_change or (lambda: None)
        self.marker = marker
        self.proc: Proc | None = None
        self.child = False
        self.pidfd: int | None = None
        self.qmp: QMP | None = None
        self.exitcode: int | None = None
        self._reaped = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    # -- launch ---------------------------------------------------------------------
    def launch(self, *, qmp_timeout: float = QMP_TIMEOUT,
               spawned: Callable[[], None] | None = None) -> None:
        """Companions in order, QEMU (paused: its command has ``-S``), then QMP. On any
        failure, everything started is stopped again and MachineError raised.
        ``spawned``: called once QEMU is spawned and recorded, while it starts up (work
        that can overlap QEMU's own start)."""
        try:
            self._pre_launch()
            self._launch()
            if spawned is not None:
                spawned()
            self._post_launch(qmp_timeout)
        except BaseException as exc:
            exitcode = self.kill()
            self.stop_companions(record=False)
            if isinstance(exc, MachineError):
                raise
            if not isinstance(exc, QemuwrapError | OSError):
                raise
            what = (f"QEMU exited with status {exitcode}" if exitcode is not None
                    else (exc.strerror if isinstance(exc, OSError) and exc.strerror
                          else str(exc)))
            raise MachineError(f"QEMU failed to start: {what}", exitcode=exitcode,
                               argv=self.cmd.argv,
                               output=tail(self.gdir.file("qemu.log"))) from None

    def _pre_launch(self) -> None:
        deadline = time.monotonic() + QMP_TIMEOUT
        for companion in self.companions:
            self.companion_entries.append(companion.start(self.gdir))
            self.on_change()
            companion.wait_ready(deadline)

    def _launch(self) -> None:
        # QEMU appends to the serial logs itself (chardev logfile, logappend=on): each is
        # rotated by size and given this start's marker first, as qemu.log is.
        for name in chardev_logs(self.cmd.argv, self.gdir.path):
            os.close(self.gdir.open_log(name, marker=self.marker))
        log = self.gdir.open_log("qemu.log", marker=self.marker)
        # QEMU's sockets and logs: the owner's only (the directory is 0700 as well).
        umask = os.umask(0o077)
        try:
            pid = process.spawn(self.cmd.binary, self.cmd.argv, self.cmd.env, log)
        finally:
            os.umask(umask)
            os.close(log)
        self.child = True
        self.pidfd = process.pidfd(pid)
        created = process.create_time(pid)
        self.proc = Proc(pid, created if created is not None else time.time(), self.cmd.argv)
        self.on_change()  # recorded before anything else can fail: status sees it

    def _post_launch(self, timeout: float) -> None:
        self.qmp = QMP.connect(self.gdir.file("qmp.sock"), timeout=timeout,
                               alive=lambda: not self.exited())

    def attach(self, proc: Proc) -> None:
        """Take over a QEMU we did not start (adopt): watch it, talk to it."""
        self.proc = proc
        self.child = False
        self.pidfd = process.pidfd(proc.pid)
        self.qmp = QMP.connect(self.gdir.file("qmp.sock"), timeout=10,
                               alive=lambda: not self.exited())

    # -- state ------------------------------------------------------------------------
    def exited(self) -> bool:
        if self._reaped or self.proc is None:
            return True
        if self.pidfd is None:
            return not process.is_alive(self.proc.pid, self.proc.create_time)
        import select

        return bool(select.select([self.pidfd], [], [], 0)[0])

    def reap(self) -> int | None:
        """Once QEMU ended: its exit code (negative: a signal) if it was our child."""
        if not self._reaped and self.proc is not None:
            self.exitcode = process.reap(self.proc.pid) if self.child else None
            self._reaped = True
            self.close()
        return self.exitcode

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for QEMU to end; True if it did (and is reaped)."""
        if self.proc is None:
            return True
        if self.pidfd is not None and not self._reaped:
            import select

            select.select([self.pidfd], [], [], max(timeout, 0))
        elif not self._reaped:
            process.wait_gone(self.proc.pid, self.proc.create_time, timeout)
        if self.exited():
            self.reap()
            return True
        return False

    def execute(self, command: str, args: dict | None = None, *, timeout: float = 5.0):
        if self.qmp is None:
            raise MonitorError("QEMU's monitor is not connected")
        return self.qmp.execute(command, args, timeout=timeout)

    # -- stopping ---------------------------------------------------------------------
    def quit(self, timeout: float = QUIT_TIMEOUT) -> int | None:
        """QMP ``quit``; SIGKILL if QEMU has not ended within ``timeout`` (a stopped or
        hung QEMU answers nothing). Returns the exit code, QEMU is gone either way."""
        if self.proc is None or self._reaped:
            return self.exitcode
        deadline = time.monotonic() + timeout
        if process.state_letter(self.proc.pid) not in ("T", "t", None):
            try:
                self.execute("quit", timeout=timeout)
            except QemuwrapError:
                pass
            if self.wait(deadline - time.monotonic()):
                return self.exitcode
        return self.kill()

    def kill(self) -> int | None:
        """SIGKILL, whatever state QEMU is in (stopped included), and reap it."""
        if self.proc is None or self._reaped:
            return self.exitcode
        try:
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            elif process.is_alive(self.proc.pid, self.proc.create_time):
                os.kill(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.wait(10)
        return self.exitcode

    def stop_companions(self, *, record: bool = True) -> None:
        """After QEMU: each companion stopped, in reverse order of start (``record``:
        and the guest record told; not when the launch failed, maybe for want of
        space to write it)."""
        entries = self.companion_entries
        owners: list[Companion | None] = [*self.companions[:len(entries)]]
        owners += [None] * (len(entries) - len(owners))  # adopted: only the record's entries
        for companion, entry in reversed(list(zip(owners, entries, strict=True))):
            try:
                if companion is not None:
                    companion.stop(entry)
                else:
                    clean_up(entry)
            except Exception as exc:  # noqa: BLE001 - the others must still be stopped
                # One line in the supervisor's log (its stderr), naming the companion.
                print(f"qemuwrap: {entry.kind} {entry.id}: not cleaned up: {exc}",
                      file=sys.stderr, flush=True)
        self.companion_entries.clear()
        if record:
            self.on_change()

    def close(self) -> None:
        if self.qmp is not None:
            self.qmp.close()
            self.qmp = None
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
