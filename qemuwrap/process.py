"""Starting QEMU and knowing when it ends, with nothing heavier than ``os``.

QEMU is spawned (``posix_spawn``) before the supervisor imports asyncio and qemu.qmp,
so those imports overlap QEMU's own start-up. It runs in its own session with its
output in the state directory, so it outlives the supervisor. Its end is learnt
from a pidfd, which works the same for a child and for an adopted QEMU.
"""

from __future__ import annotations

import os

from qemuwrap.errors import QemuwrapError
from qemuwrap.qemu.argv import Command


class SpawnError(QemuwrapError):
    """QEMU could not be executed at all."""


def spawn(cmd: Command, log_path: str) -> int:
    """Start ``cmd`` in a new session, stdin from /dev/null, output appended to ``log_path``."""
    logfd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        return os.posix_spawn(cmd.binary, cmd.argv, cmd.env, setsid=True, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, logfd, 1),
            (os.POSIX_SPAWN_DUP2, logfd, 2),
        ])
    except OSError as exc:
        raise SpawnError(f"cannot run {cmd.binary}: {exc.strerror}") from None
    finally:
        os.close(logfd)


def start_qemu(cmd: Command, gdir, dom) -> int:
    """A fresh start in the guest's state directory: old logs and runtime files go, then
    QEMU is spawned (paused: the command has ``-S``). Returns its pid."""
    for name in ("qemu.log", *(f"serial{s.port}.log" for s in dom.devices.serials)):
        try:
            os.unlink(gdir.file(name))
        except FileNotFoundError:
            pass
    gdir.clear_runtime()
    return spawn(cmd, gdir.file("qemu.log"))


def watch(loop, pid: int, *, child: bool):
    """A future that completes when ``pid`` ends: with its exit code (negative for a
    signal) if it is our child, else None (another process's status is not ours)."""
    fut = loop.create_future()
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        fut.set_result(_reap(pid) if child else None)
        return fut

    def ended() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        if not fut.done():
            fut.set_result(_reap(pid) if child else None)

    loop.add_reader(pidfd, ended)
    return fut


def create_time(pid: int) -> float:
    """When ``pid`` started, in seconds since the epoch: psutil's own formula (boot time +
    start ticks), without importing psutil (~20 ms) on the way to a running guest."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    ticks = int(stat[stat.rindex(b")") + 2:].split()[19])
    with open("/proc/stat", "rb") as f:
        btime = next(int(line.split()[1]) for line in f if line.startswith(b"btime"))
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def _reap(pid: int) -> int | None:
    try:
        _pid, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status)
