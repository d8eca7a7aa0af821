"""A shared folder for the guest: QEMU 7.2's own virtiofsd, one per ``<filesystem>``.

virtiofsd is a vhost-user back end: it serves one connection (QEMU's) and ends when QEMU
lets go. Like libvirt, qemuwrap binds and listens on the socket itself and hands the
listening descriptor over (``--fd``), so the socket is there, owner-only, before QEMU
starts, and nothing has to connect to it to see whether it is ready (a test connection
would be taken for QEMU's). virtiofsd says when it waits for its connection; that line in
its log is the readiness signal.

QEMU needs the guest's RAM shared with virtiofsd (``<memoryBacking><access
mode='shared'/>``, checked in validation); QEMU's side (the shared memory backend, the
``vhost-user-fs-pci`` device) is built in ``qemu/build/``. After a killed supervisor,
``runtime/companions.clean_up`` stops the daemon from the guest record.
"""

from __future__ import annotations

import os
import socket
import time

from qemuwrap.companions.daemon import CompanionError, Daemon
from qemuwrap.qemu.argv import optstr

VIRTIOFSD = "/usr/lib/qemu/virtiofsd"  # QEMU 7.2's C daemon, in qemu-system-common
CACHE_MODES = ("auto", "always", "none")
#: What virtiofsd prints once it waits for QEMU on the socket it was given.
READY_TEXT = "Waiting for vhost-user socket connection"


def virtiofsd_argv(source: str, fd: int | str = "FD", cache: str = "auto", xattr: bool = False,
                   thread_pool_size: int | None = None,
                   binary: str = VIRTIOFSD) -> list[str]:
    """The daemon's command line; ``fd`` is the listening socket's descriptor number in the
    daemon (``FD`` in a dry run, where no socket exists)."""
    options = optstr(source=source, cache=cache)
    if xattr:
        options += ",xattr"
    argv = [binary, f"--fd={fd}", "-o", options]
    if thread_pool_size is not None:
        argv.append(f"--thread-pool-size={thread_pool_size}")
    return argv


def _privileged() -> bool:
    return os.geteuid() == 0


def _read_from(log_fd: int | None, offset: int) -> str:
    """What the file behind ``log_fd`` holds from ``offset`` on (at most 64 KiB)."""
    if log_fd is None:
        return ""
    try:
        with open(os.readlink(f"/proc/self/fd/{log_fd}"), "rb") as f:
            f.seek(offset)
            return f.read(65536).decode(errors="replace")
    except OSError:
        return ""


class Virtiofsd(Daemon):
    """One filesystem's daemon: ``refusals``/``prepare`` (checks), ``start`` (bind, listen,
    spawn, wait for its ready line), ``stop``."""

    name = "virtiofsd"

    def __init__(self, source: str, sock: str, cache: str = "auto", xattr: bool = False,
                 thread_pool_size: int | None = None, binary: str = VIRTIOFSD):
        super().__init__(virtiofsd_argv(source, "FD", cache, xattr, thread_pool_size, binary))
        self.source = source
        self.sock = sock
        self.cache = cache
        self.xattr = xattr
        self.thread_pool_size = thread_pool_size
        self.binary = binary

    def refusals(self) -> list[str]:
        """What keeps it from starting here, one line each, before anything is spawned
        (the launcher asks: ``runtime/companions.refuse_unstartable``)."""
        lines = []
        if not os.access(self.binary, os.X_OK):
            lines.append(f"virtiofsd: {self.binary} not found (Debian package "
                         "qemu-system-common)")
        elif not _privileged():
            lines.append("virtiofsd: QEMU 7.2's virtiofsd needs root (it sandboxes itself "
                         "in new namespaces): start the guest as root, or share "
                         f"{self.source} over 9p (remove <driver type='virtiofs'/>)")
        if self.cache not in CACHE_MODES:
            lines.append(f"virtiofsd: unknown cache mode {self.cache!r}")
        if not os.path.isdir(self.source):
            lines.append(f"virtiofsd: {self.source} is not a directory")
        return lines

    def prepare(self) -> None:
        """The same checks again at start (the directory may have gone meanwhile)."""
        lines = self.refusals()
        if lines:
            raise CompanionError(lines[0])

    def start(self, log_fd: int | None, deadline: float) -> int:
        """Listen on the socket, hand it over, return the pid once virtiofsd waits for QEMU."""
        try:
            os.unlink(self.sock)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            old = os.umask(0o177)  # the socket file is created owner-only
            try:
                listener.bind(self.sock)
            finally:
                os.umask(old)
            listener.listen(1)
            fd = listener.fileno()
            # Only what the log gains from now on counts: logs are kept across starts.
            offset = os.fstat(log_fd).st_size if log_fd is not None else 0
            self.argv = virtiofsd_argv(self.source, fd, self.cache, self.xattr,
                                       self.thread_pool_size, self.binary)
            pid = self.spawn(log_fd, pass_fds=(fd,))
        except OSError as exc:
            raise CompanionError(f"virtiofsd: cannot listen on {self.sock}: "
                                 f"{exc.strerror or exc}") from None
        finally:
            listener.close()  # the daemon has its own copy; QEMU connects to that one

        def ready() -> bool:
            return READY_TEXT in _read_from(log_fd, offset)

        if log_fd is None:
            # Nowhere to read its ready line from: alive a moment after exec is all we know.
            time.sleep(0.05)
            self.wait_ready(lambda: True, deadline, log_fd, "ready")
        else:
            self.wait_ready(ready, deadline, log_fd, "ready")
        return pid

    def stop(self, deadline: float) -> None:
        """After QEMU: virtiofsd ends once QEMU has gone; else SIGTERM, then SIGKILL."""
        super().stop(deadline)
        try:
            os.unlink(self.sock)
        except FileNotFoundError:
            pass
