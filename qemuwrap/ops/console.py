"""``console NAME`` (the guest's first serial port, interactively, Ctrl-] leaves, as
``virsh console``) and ``logs NAME [--follow]``."""

from __future__ import annotations

import os
import select
import socket
import sys
import time

from qemuwrap.errors import QemuwrapError, printable
from qemuwrap.ops import guests

ESCAPE = b"\x1d"  # Ctrl-]


def _endpoint(name: str, state_dir: str | None) -> tuple[str, str]:
    """("pty", path) or ("unix", socket path) of serial port 0."""
    gdir, record = guests.running(name, state_dir)
    if record.console:
        return "pty", record.console
    xml = gdir.read("domain.xml")
    if xml is not None:
        from qemuwrap.conf.devices.chardev import CharType, SourceMode
        from qemuwrap.conf.domain import parse_domain
        from qemuwrap.conf.xmlreader import parse_bytes

        dom = parse_domain(parse_bytes(xml))
        ports = [s for s in dom.devices.serials if s.port == 0] or dom.devices.consoles[:1]
        for port in ports:
            src = port.source
            if port.type == CharType.UNIX and src is not None and src.path \
                    and src.mode == SourceMode.BIND:
                return "unix", src.path
    raise QemuwrapError(f"guest '{printable(name)}' has no interactive serial console "
                        "(a pty or a unix socket QEMU listens on)")


def console(name: str, state_dir: str | None, *, escape: bytes = ESCAPE) -> int:
    """Copy between the terminal and the console until Ctrl-] (or the guest ends)."""
    kind, path = _endpoint(name, state_dir)
    if kind == "pty":
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        import tty

        tty.setraw(fd)
        sock = None
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise QemuwrapError(f"cannot reach the console at {printable(path)}: "
                                f"{exc.strerror}") from None
        fd = sock.fileno()
    stdin = sys.stdin.fileno()
    stdout = sys.stdout.fileno()
    saved = None
    if os.isatty(stdin):
        import termios
        import tty

        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin)
    try:
        sys.stderr.write(f"Connected to guest '{printable(name)}' ({printable(path)}); "
                         "escape character is ^]\r\n")
        sys.stderr.flush()
        watch = [fd, stdin]
        while True:
            ready = select.select(watch, [], [], 1.0)[0]
            if not ready:
                continue
            if fd in ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    sys.stderr.write("\r\nThe console closed (the guest ended).\r\n")
                    return 0
                os.write(stdout, data)
            if stdin in ready:
                data = os.read(stdin, 4096)
                if not data:  # stdin closed (not a terminal): keep showing output
                    watch = [fd]
                    continue
                if escape in data:
                    head = data.split(escape, 1)[0]
                    if head:
                        os.write(fd, head)
                    sys.stderr.write("\r\n")
                    return 0
                os.write(fd, data)
    finally:
        if saved is not None:
            import termios

            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        if sock is not None:
            sock.close()
        else:
            os.close(fd)


def logs(name: str, state_dir: str | None, *, follow: bool = False,
         out=None, poll: float = 0.2) -> int:
    """Print the guest's logs (supervisor, QEMU, serial ports, companions; rotated ones
    first), each under a ``==> NAME <==`` line; with ``follow``, go on printing what is
    appended."""
    out = out or sys.stdout.buffer
    gdir = guests.guest(name, state_dir)
    names = gdir.logs()
    if not names and not follow:
        raise QemuwrapError(f"guest '{printable(name)}' has no logs yet")
    offsets: dict[str, int] = {}
    last = None
    for log in names:
        data = gdir.read(log, limit=1 << 30) or b""
        out.write(f"==> {log} <==\n".encode())
        out.write(data)
        if data and not data.endswith(b"\n"):
            out.write(b"\n")
        offsets[log] = len(data)
        last = log
    out.flush()
    if not follow:
        return 0
    while True:
        time.sleep(poll)
        for log in gdir.logs():
            if log[-2:-1] == "." and log[-1].isdigit():
                continue  # rotated: nothing is appended to those
            try:
                fd = gdir.open(log, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                size = os.fstat(fd).st_size
                start = offsets.get(log, 0)
                if size < start:  # rotated or truncated: start over
                    start = 0
                if size > start:
                    data = os.pread(fd, size - start, start)
                    if log != last:
                        out.write(f"\n==> {log} <==\n".encode())
                        last = log
                    out.write(data)
                    out.flush()
                    offsets[log] = start + len(data)
            finally:
                os.close(fd)
