"""One companion process (swtpm, virtiofsd): spawned in its own session beside QEMU, waited
for until it is ready, and stopped soft then hard (after a killed supervisor,
``runtime/companions.clean_up`` stops it from the guest record).

Synchronous on purpose: every wait is a short poll with a deadline (a pidfd tells when a
process ends, child or not), so the supervisor can call these from its start-up and
shut-down phases without an event loop.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable, Sequence

from qemuwrap.errors import QemuwrapError

_POLL = 0.01  # seconds between readiness checks


class CompanionError(QemuwrapError):
    """A companion failed; the message is one line starting with its name (``swtpm: ...``)."""


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat):
    with the pid, it names one process for good (pids are reused, start times are not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return int(data[data.rindex(b")") + 2:].split()[19])


def log_tail(log: int | str | None, limit: int = 3) -> str:
    """The last lines of a log file, or of the file a descriptor writes to (found through
    /proc/self/fd, as the descriptor itself may be write-only), joined with ' / '; '' when
    unreadable or empty."""
    if log is None:
        return ""
    try:
        path = log if isinstance(log, str) else os.readlink(f"/proc/self/fd/{log}")
        with open(path, "rb") as f:
            f.seek(max(os.fstat(f.fileno()).st_size - 4096, 0))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " / ".join(lines[-limit:])


def wait_gone(pid: int, deadline: float) -> bool:
    """Wait until ``pid`` has ended (reaping it if it is our child); False at the deadline."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        _reap(pid)
        return True
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        while True:
            remaining = deadline - time.monotonic()
            if poller.poll(max(remaining, 0) * 1000):
                _reap(pid)
                return True
            if remaining <= 0:
                return False
    finally:
        os.close(pidfd)


def _reap(pid: int) -> int | None:
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if done else None


def terminate(pid: int, deadline: float, *, soft: int = signal.SIGTERM) -> None:
    """Signal ``soft``, wait until ``deadline``, then SIGKILL and wait a little more."""
    try:
        os.kill(pid, soft)
    except ProcessLookupError:
        _reap(pid)
        return
    if wait_gone(pid, deadline):
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    wait_gone(pid, time.monotonic() + 5)


class Daemon:
    """A companion process: its command line, pid and identity."""

    name = "companion"
    #: A log file the program writes itself, for failure messages (and where to look).
    own_log: str | None = None

    def __init__(self, argv: Sequence[str]):
        self.argv = list(argv)
        self.pid: int | None = None
        self.started: int | None = None  # start_time(pid)

    def spawn(self, log_fd: int | None, pass_fds: Sequence[int] = ()) -> int:
        """Run ``argv`` in a new session (it must outlive a killed supervisor, like QEMU),
        stdin from /dev/null, stdout and stderr to ``log_fd``; ``pass_fds`` stay open in it
        under their numbers (every other descriptor Python opened is close-on-exec)."""
        actions: list[tuple] = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)]
        if log_fd is None:
            actions.append((os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0))
            actions.append((os.POSIX_SPAWN_DUP2, 1, 2))
        else:
            actions += [(os.POSIX_SPAWN_DUP2, log_fd, 1), (os.POSIX_SPAWN_DUP2, log_fd, 2)]
        for fd in pass_fds:
            os.set_inheritable(fd, True)
        try:
            pid = os.posix_spawnp(self.argv[0], self.argv, dict(os.environ), setsid=True,
                                  file_actions=actions)
        except OSError as exc:
            raise CompanionError(f"{self.name}: cannot run {self.argv[0]}: "
                                 f"{exc.strerror or exc}") from None
        finally:
            for fd in pass_fds:
                os.set_inheritable(fd, False)
        self.pid = pid
        self.started = start_time(pid)
        return pid

    def wait_ready(self, ready: Callable[[], bool], deadline: float, log_fd: int | None,
                   what: str) -> None:
        """Poll ``ready()`` until it holds; a process that ends or a deadline that passes
        first is a one-line error with the end of its log. The process is stopped then."""
        assert self.pid is not None
        while True:
            if ready():
                return
            status = _reap(self.pid)
            gone = status is not None or start_time(self.pid) != self.started
            if gone or time.monotonic() >= deadline:
                if not gone:
                    terminate(self.pid, time.monotonic() + 2)
                tail = log_tail(log_fd) or log_tail(self.own_log) or (
                    f"see {self.own_log}" if self.own_log else "")
                why = (f"exited with status {status}" if status is not None else "exited"
                       ) if gone else f"not {what} within the deadline"
                self.pid = None
                raise CompanionError(f"{self.name}: {why}" + (f": {tail}" if tail else ""))
            time.sleep(_POLL)

    def running(self) -> bool:
        return self.pid is not None and start_time(self.pid) == self.started \
            and _reap(self.pid) is None

    def stop(self, deadline: float) -> None:
        """SIGTERM, then SIGKILL at the deadline; nothing to do if it already ended."""
        if self.pid is None:
            return
        if self.running():
            terminate(self.pid, deadline)
        else:
            _reap(self.pid)
        self.pid = None
