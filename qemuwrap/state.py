"""A guest's state directory: the files that let qemuwrap find, check and adopt a guest.

Layout of ``ROOT/NAME/`` (ROOT from :func:`qemuwrap.statedir.state_root`):

- ``lock``            flock'ed (exclusive) by the one supervisor of this guest
- ``state.json``      who runs what: QEMU's pid, create time and argv, the supervisor's pid
- ``domain.xml``      the live definition (with ``id``)
- ``qemu.pid``        written by QEMU itself (``-pidfile``)
- ``qmp.sock``        the supervisor's QMP monitor; ``control.sock`` a second one for tools
- ``qemu.log``        QEMU's stdout and stderr; ``serialN.log`` the serial consoles
- ``supervisor.log``  a background supervisor's own messages

The lock, not a pid file, says whether a supervisor is alive: the kernel drops it
when the supervisor dies, however it dies. QEMU never inherits it (Python opens
files close-on-exec), so a guest that outlives its supervisor frees the lock.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os

from qemuwrap.definition import atomic_write
from qemuwrap.errors import QemuwrapError
from qemuwrap.statedir import guest_dir, state_root

RUNTIME_FILES = ("state.json", "domain.xml", "qemu.pid", "qmp.sock", "control.sock")


class GuestBusyError(QemuwrapError):
    """Another supervisor runs (or is starting) this guest."""


class GuestDir:
    """The state directory of one guest."""

    def __init__(self, name: str, root: str | None = None):
        self.name = name
        self.path = guest_dir(name, root)
        self._lock_fd: int | None = None

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    # -- the supervisor lock ---------------------------------------------------
    def lock(self) -> None:
        """Take the guest's lock or raise GuestBusyError; creates the directory."""
        while True:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
            try:
                fd = os.open(self.file("lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                continue  # the directory was removed under us: make it again
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    holder = self.read_record() or {}
                    pid = holder.get("supervisor_pid")
                    who = f" (supervisor pid {pid})" if pid else ""
                    raise GuestBusyError(f"guest '{self.name}' is already running or "
                                         f"starting{who}") from None
                raise
            # The file we locked must still be the one at the path (not unlinked by a
            # supervisor cleaning up just before we opened it).
            try:
                if os.fstat(fd).st_ino == os.stat(self.file("lock")).st_ino:
                    self._lock_fd = fd
                    return
            except FileNotFoundError:
                pass
            os.close(fd)

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def supervised(self) -> bool:
        """True if some process holds the lock (a supervisor is alive)."""
        try:
            fd = os.open(self.file("lock"), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False

    # -- records -----------------------------------------------------------------
    def write_record(self, record: dict) -> None:
        atomic_write(self.file("state.json"), json.dumps(record, indent=1).encode(),
                     mode=0o600)

    def read_record(self) -> dict | None:
        try:
            with open(self.file("state.json"), "rb") as f:
                return json.load(f)
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None

    def qemu_process(self, record: dict | None = None):
        """The running QEMU of this guest as a psutil.Process, or None.

        A pid alone proves nothing after a reboot or pid reuse: the process must have
        the recorded create time and command line.
        """
        import psutil

        record = record or self.read_record()
        if not record or not record.get("qemu_pid"):
            return None
        try:
            proc = psutil.Process(record["qemu_pid"])
            if abs(proc.create_time() - record["qemu_create_time"]) > 0.05:
                return None
            if proc.cmdline() != record["argv"]:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    # -- cleanup -------------------------------------------------------------------
    def clear_runtime(self) -> None:
        """Remove what only means something while the guest runs; keep the logs."""
        for name in RUNTIME_FILES:
            try:
                os.unlink(self.file(name))
            except FileNotFoundError:
                pass

    def remove(self) -> None:
        """Remove the whole directory (a start that failed leaves nothing behind)."""
        import shutil

        shutil.rmtree(self.path, ignore_errors=True)


def all_guests(root: str | None = None) -> list[GuestDir]:
    base = state_root(root)
    try:
        names = sorted(os.listdir(base))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        try:
            out.append(GuestDir(name, root))
        except QemuwrapError:
            continue
    return out
