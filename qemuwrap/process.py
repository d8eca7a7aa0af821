"""Starting host processes and knowing them again, with nothing heavier than ``os``.

QEMU is spawned (``posix_spawn``) in its own session with its output appended to a log
in the state directory, so it outlives the supervisor. A process is recognised later by
pid *and* create time (and, where recorded, its argv): a pid alone may have been reused
after a reboot. These read ``/proc`` directly rather than through psutil, whose import
costs ~22 ms and ~1.5 MiB on the way to every running guest and in every supervisor
(measured: ``python -c 'import psutil'`` 33.5 ms against 11.0 ms bare).
"""

from __future__ import annotations

import os
import signal

from qemuwrap.errors import QemuwrapError


class SpawnError(QemuwrapError):
    """A program could not be executed at all."""


def spawn(binary: str, argv: list[str], env: dict[str, str], log_fd: int) -> int:
    """Start ``argv`` in a new session, stdin from /dev/null, stdout and stderr to
    ``log_fd`` (the caller's, appended). Returns the pid."""
    try:
        return os.posix_spawn(binary, argv, env, setsid=True, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, log_fd, 1),
            (os.POSIX_SPAWN_DUP2, log_fd, 2),
        ])
    except OSError as exc:
        raise SpawnError(f"cannot run {binary}: {exc.strerror}") from None


def _stat_fields(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:].split()


_BOOT_TIME: list[int] = []


def create_time(pid: int) -> float | None:
    """When ``pid`` started, in seconds since the epoch (psutil's formula: boot time +
    start ticks); None if there is no such process."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    if not _BOOT_TIME:
        with open("/proc/stat", "rb") as f:
            _BOOT_TIME.append(next(int(line.split()[1]) for line in f
                                   if line.startswith(b"btime")))
    return _BOOT_TIME[0] + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def cmdline(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return [w.decode("utf-8", "surrogateescape") for w in raw.split(b"\0")[:-1]]


def is_alive(pid: int, created: float, argv: list[str] | None = None) -> bool:
    """True if ``pid`` is still the process that started at ``created`` (and runs
    ``argv``, when given), and has not ended (a zombie has)."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in (b"Z", b"X"):
        return False
    started = create_time(pid)
    if started is None or abs(started - created) > 0.05:
        return False
    return not argv or cmdline(pid) == argv


def state_letter(pid: int) -> str | None:
    """The kernel's one-letter state of ``pid`` (R, S, D, T = stopped, Z, ...)."""
    fields = _stat_fields(pid)
    return fields[0].decode() if fields else None


def pidfd(pid: int) -> int | None:
    """A pidfd (readable once ``pid`` ends), or None if it is gone already."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


def reap(pid: int) -> int | None:
    """Our child's exit code (negative: killed by that signal), None if not our child."""
    try:
        _pid, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status)


def wait_gone(pid: int, created: float, timeout: float) -> bool:
    """Wait until the process ``pid`` (started at ``created``) has ended; False if it
    still runs after ``timeout`` seconds. Works for any process (a pidfd, not wait)."""
    fd = pidfd(pid)
    if fd is None:
        return True
    try:
        if is_alive(pid, created):
            import select

            select.select([fd], [], [], max(timeout, 0))
            if is_alive(pid, created):
                return False
    finally:
        os.close(fd)
    return True


def kill_hard(pid: int, created: float, timeout: float = 10.0) -> bool:
    """SIGKILL (works on a stopped or hung process too) and wait for the end; False if
    it still runs after ``timeout``."""
    fd = pidfd(pid)
    if fd is None:
        return True
    try:
        if not is_alive(pid, created):
            return True
        signal.pidfd_send_signal(fd, signal.SIGKILL)
    except ProcessLookupError:
        return True
    finally:
        os.close(fd)
    ended = wait_gone(pid, created, timeout)
    reap_if_child(pid)
    return ended


def reap_if_child(pid: int) -> None:
    """Collect ``pid``'s exit status if it is our child and has ended (no zombie left)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
