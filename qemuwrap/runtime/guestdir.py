"""A guest's state directory: the one place that says which guests run, and how.

Layout of ``ROOT/NAME/`` (ROOT from :func:`qemuwrap.statedir.state_root`):

- ``lock``            flock'ed (exclusive) by the one supervisor of this guest
- ``state.json``      the guest record (:class:`~qemuwrap.runtime.record.GuestRecord`)
- ``domain.xml``      the live definition (with ``id``)
- ``qemu.pid``        written by QEMU itself (``-pidfile``)
- ``supervisor.sock`` the supervisor's control socket (requests from the tools)
- ``qmp.sock``        the supervisor's QMP monitor; ``control.sock`` QEMU's second
                      monitor, used by the tools only when no supervisor lives
- ``qemu.log``, ``serialN.log``, ``supervisor.log``, the companions' ``KIND-ID.log``
                      (and swtpm's own ``swtpm.log``): kept, appended, rotated by size
- ``definition``      where the XML lives (kept: ``snapshot revert`` finds it)

The directory is checked before every use (ours, 0700, not a symlink: see
``statedir.verify_dir``) and its files are opened relative to a directory fd with
``O_NOFOLLOW``, new ones created exclusively. The lock, not a pid file, says whether a
supervisor is alive: the kernel drops it when the supervisor dies, however it dies.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time

from qemuwrap import process
from qemuwrap.errors import QemuwrapError, printable
from qemuwrap.runtime.record import GuestRecord
from qemuwrap.statedir import (
    StateDirError,
    check_name,
    check_socket_paths,
    open_dir,
    secure_root,
    state_root,
    verify_dir,
)

RUNTIME_FILES = ("state.json", "domain.xml", "qemu.pid", "qmp.sock", "control.sock",
                 "supervisor.sock")
LOGS = ("qemu.log", "supervisor.log")
#: A log larger than this is rotated (NAME.1, NAME.2, ...) before a start appends to it.
LOG_MAX_BYTES = 4 << 20
LOG_KEEP = 3
_OPEN = os.O_CLOEXEC | os.O_NOFOLLOW


class GuestBusyError(QemuwrapError):
    """Another supervisor runs (or is starting) this guest."""


class UnknownGuestError(QemuwrapError):
    """No guest of that name has a state directory here."""


class GuestDir:
    """The state directory of one guest."""

    def __init__(self, name: str, root: str | None = None):
        self.name = check_name(name)
        self.root_override = root
        self.root = state_root(root)
        self.path = os.path.join(self.root, name)
        self._fd: int | None = None
        self._lock_fd: int | None = None

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    # -- the directory ------------------------------------------------------------
    def prepare(self) -> None:
        """Create (or check) the root and this directory, ours and private."""
        check_socket_paths(self.path)
        secure_root(self.root_override)
        self._open(create=True)

    def exists(self) -> bool:
        """True if the directory exists (and is ours: anything else is refused)."""
        try:
            self.dirfd()
        except FileNotFoundError:
            return False
        return True

    def dirfd(self) -> int:
        """The checked directory's fd; FileNotFoundError if there is none."""
        if self._fd is None:
            self._open(create=False)
        assert self._fd is not None
        return self._fd

    def _open(self, *, create: bool) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if not create:
            verify_dir(self.root, create=False, what="state root")
        st = verify_dir(self.path, create=create, what="guest directory")
        self._fd = open_dir(self.path, st)

    def close(self) -> None:
        self.unlock()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- files ------------------------------------------------------------------------
    def open(self, name: str, flags: int, mode: int = 0o600) -> int:
        return os.open(name, flags | _OPEN, mode, dir_fd=self.dirfd())

    def read(self, name: str, limit: int = 1 << 20) -> bytes | None:
        """A file's bytes, or None if it does not exist."""
        try:
            fd = self.open(name, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StateDirError(f"{printable(self.file(name))} is a symbolic link; "
                                    "refusing to read it") from None
            raise
        try:
            return os.read(fd, limit)
        finally:
            os.close(fd)

    def write(self, name: str, data: bytes) -> None:
        """Replace file ``name`` atomically: a new file created exclusively, renamed over
        the old one (relative to the directory fd: no path is followed). Not fsync'd:
        these files describe running processes, which a power loss ends too (and the
        root is a tmpfs, /run or $XDG_RUNTIME_DIR, in the usual case); the rename alone
        keeps a reader from ever seeing half a file."""
        dfd = self.dirfd()
        tmp = f".{name}.{os.urandom(6).hex()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN, 0o600, dir_fd=dfd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.close(fd)
            fd = -1
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
            raise

    def unlink(self, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self.dirfd())
        except FileNotFoundError:
            pass

    # -- logs ---------------------------------------------------------------------------
    def open_log(self, name: str, marker: str | None = None) -> int:
        """Open log ``name`` for appending (rotated first if it grew too large), with a
        start marker line."""
        self.rotate(name)
        fd = self.open(name, os.O_RDWR | os.O_CREAT | os.O_APPEND)  # read: its last byte
        if marker:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            try:
                size = os.fstat(fd).st_size  # a line cut short by the last run ends here
                lead = "\n" if size and os.pread(fd, 1, size - 1) != b"\n" else ""
                os.write(fd, f"{lead}---- {stamp} {marker} ----\n".encode())
            except OSError:
                os.close(fd)
                raise
        return fd

    def rotate(self, name: str, *, always: bool = False) -> None:
        """NAME -> NAME.1 -> ... -> NAME.KEEP when NAME is over LOG_MAX_BYTES (or
        ``always``)."""
        dfd = self.dirfd()
        try:
            size = os.stat(name, dir_fd=dfd, follow_symlinks=False).st_size
        except FileNotFoundError:
            return
        if size <= LOG_MAX_BYTES and not always:
            return
        for i in range(LOG_KEEP - 1, 0, -1):
            try:
                os.rename(f"{name}.{i}", f"{name}.{i + 1}", src_dir_fd=dfd, dst_dir_fd=dfd)
            except FileNotFoundError:
                pass
        os.rename(name, f"{name}.1", src_dir_fd=dfd, dst_dir_fd=dfd)

    def logs(self) -> list[str]:
        """The log files present (supervisor, QEMU, serial ports, then the companions'),
        oldest rotation first within each log."""
        try:
            names = os.listdir(self.dirfd())
        except FileNotFoundError:
            return []
        out = []
        serial = sorted(n for n in names if n.startswith("serial") and n.endswith(".log"))
        # The companions' (swtpm-tpm0.log, virtiofsd-fs0.log; swtpm's own swtpm.log), and
        # any other log kept here.
        others = sorted(n for n in names if n.endswith(".log") and n not in serial
                        and n not in ("supervisor.log", "qemu.log"))
        for base in ("supervisor.log", "qemu.log", *serial, *others):
            out += [f"{base}.{i}" for i in range(LOG_KEEP, 0, -1) if f"{base}.{i}" in names]
            if base in names:
                out.append(base)
        return out

    # -- the supervisor lock ---------------------------------------------------
    def lock(self) -> None:
        """Take the guest's lock or raise GuestBusyError; creates the directory."""
        for _attempt in range(10):
            self.prepare()
            try:
                fd = self.open("lock", os.O_RDWR | os.O_CREAT)
            except FileNotFoundError:
                continue  # the directory was removed under us: make it again
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    pid = None
                    try:
                        record = self.read_record()
                        pid = record.supervisor.pid if record and record.supervisor else None
                    except QemuwrapError:
                        pass
                    who = f" (supervisor pid {pid})" if pid else ""
                    raise GuestBusyError(f"guest '{printable(self.name)}' is already running "
                                         f"or starting{who}") from None
                raise
            try:  # still the file at that name (not unlinked by a cleanup meanwhile)?
                if os.fstat(fd).st_ino == os.stat("lock", dir_fd=self.dirfd(),
                                                  follow_symlinks=False).st_ino:
                    self._lock_fd = fd
                    return
            except FileNotFoundError:
                pass
            os.close(fd)
        raise GuestBusyError(f"guest '{printable(self.name)}': its lock keeps changing")

    def adopt_lock(self, fd: int) -> None:
        """The lock taken by the command that started this process (inherited fd)."""
        os.set_inheritable(fd, False)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def lock_fd(self) -> int | None:
        return self._lock_fd

    def supervised(self) -> bool:
        """True if some process holds the lock (a supervisor is alive)."""
        try:
            fd = self.open("lock", os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False

    # -- the record ---------------------------------------------------------------
    def write_record(self, record: GuestRecord) -> None:
        self.write("state.json", record.dumps())

    def read_record(self) -> GuestRecord | None:
        """The guest record, None if there is none; RecordError if it is damaged."""
        try:
            data = self.read("state.json")
        except (FileNotFoundError, NotADirectoryError):
            return None
        if data is None:
            return None
        return GuestRecord.loads(data, self.file("state.json"))

    def running(self, record: GuestRecord | None = None) -> GuestRecord | None:
        """The record, if its QEMU still runs (same pid, create time and argv)."""
        record = record if record is not None else self.read_record()
        if record is None or record.qemu is None:
            return None
        q = record.qemu
        return record if process.is_alive(q.pid, q.create_time, q.argv) else None

    def clear_runtime(self) -> None:
        """Remove what only means something while the guest runs; keep the logs."""
        for name in RUNTIME_FILES:
            try:
                self.unlink(name)
            except FileNotFoundError:
                pass


def duplicate_genid(name: str, genid: str, root: str | None, *,
                    since: float | None = None) -> str | None:
    """The name of another guest under this root that runs with ``genid`` (and started
    before ``since``, when given), or None."""
    for other in all_guests(root):
        if other.name == name:
            continue
        try:
            record = other.running()
        except QemuwrapError:
            continue
        if record is None or record.genid != genid:
            continue
        if since is not None and (record.started, record.name) >= (since, name):
            continue
        return other.name
    return None


def all_guests(root: str | None = None) -> list[GuestDir]:
    """Every guest directory under the root (names that are not guest names skipped)."""
    base = state_root(root)
    try:
        verify_dir(base, create=False, what="state root")
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
