"""The supervisor's control socket (``supervisor.sock``): requests from the tools.

One JSON object per line each way, file descriptors (a save's pipe) passed with
SCM_RIGHTS. The socket is created with mode 0600 in the guest's 0700 directory, and
each connection's peer credentials are checked (our uid, or root): nobody else can
ask a supervisor for anything.

Requests: ``{"request": "status"}``, ``shutdown {timeout, mode}`` (mode ``acpi`` or
``agent``), ``destroy``, ``save`` (with the fd QEMU writes to; ``commit {path}`` on the
same connection once the client's file is whole), ``snapshot-create {name, quiesce}``,
``snapshot-delete {name}``, ``suspend``, ``resume``, ``agent {command, timeout}`` (one
guest agent command). Replies carry ``"ok": true`` and what happened, or
``"error": "one line"``; a request that takes time may send progress objects
(``"event": ...``) before its reply.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from collections.abc import Callable

from qemuwrap.errors import QemuwrapError, printable

SOCKET = "supervisor.sock"
MAX_LINE = 1 << 20


class ControlError(QemuwrapError):
    """The supervisor could not be reached, or answered with an error."""


class NoSupervisor(ControlError):
    """No supervisor listens on the guest's control socket."""


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


class Connection:
    """One client of the control socket, as the supervisor sees it."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""
        self.fds: list[int] = []
        self.closed = False
        self.on_close: list[Callable[[], None]] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, msg: dict) -> None:
        if self.closed:
            return
        try:
            self.sock.setblocking(True)
            self.sock.settimeout(2.0)
            self.sock.sendall(json.dumps(msg).encode() + b"\n")
        except OSError:
            self.close()
        finally:
            if not self.closed:
                self.sock.setblocking(False)

    def receive(self) -> list[dict]:
        """Read what is there: whole requests (fds attached to ``self.fds``)."""
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.sock, 65536, 8)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:
            data, fds = b"", []
        self.fds.extend(fds)
        if not data:
            self.close()
            return []
        self.buf += data
        if len(self.buf) > MAX_LINE:
            self.send({"error": "request too long"})
            self.close()
            return []
        out = []
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            try:
                msg = json.loads(line)
            except ValueError:
                msg = None
            if not isinstance(msg, dict) or not isinstance(msg.get("request"), str):
                self.send({"error": "not a request"})
                continue
            out.append(msg)
        return out

    def take_fds(self) -> list[int]:
        fds, self.fds = self.fds, []
        return fds

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for fd in self.take_fds():
            os.close(fd)
        self.sock.close()
        for callback in self.on_close:
            callback()


class Server:
    """The listening socket; ``handler(conn, request)`` gets each request."""

    def __init__(self, loop, path: str, handler: Callable[[Connection, dict], None]):
        self.loop = loop
        self.path = path
        self.handler = handler
        self.conns: set[Connection] = set()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            self.sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600, follow_symlinks=False)
        self.sock.listen(16)
        self.sock.setblocking(False)
        loop.add_reader(self.sock.fileno(), self._accept)

    def _accept(self) -> None:
        try:
            sock, _addr = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        if _peer_uid(sock) not in (os.geteuid(), 0):
            sock.close()
            return
        sock.setblocking(False)
        conn = Connection(sock)
        self.conns.add(conn)
        conn.on_close.append(lambda: self._forget(conn))
        self.loop.add_reader(conn.fileno(), lambda: self._readable(conn))

    def _forget(self, conn: Connection) -> None:
        self.conns.discard(conn)

    def _readable(self, conn: Connection) -> None:
        fd = conn.fileno()
        for msg in conn.receive():
            try:
                self.handler(conn, msg)
            except QemuwrapError as exc:
                conn.send({"error": str(exc)})
        if conn.closed:
            self.loop.remove_reader(fd)

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        for conn in list(self.conns):
            self.loop.remove_reader(conn.fileno())
            conn.close()


class Client:
    """A tool's connection to a supervisor."""

    def __init__(self, path: str, timeout: float = 5.0):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(timeout)
        self.buf = b""
        try:
            self.sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            self.sock.close()
            raise NoSupervisor("no supervisor answers") from None
        except OSError as exc:
            self.sock.close()
            raise ControlError(f"cannot reach the supervisor at {printable(path)}: "
                               f"{exc.strerror}") from None
        # The socket must be the supervisor's: run by us (or root).
        if _peer_uid(self.sock) not in (os.geteuid(), 0):
            self.sock.close()
            raise ControlError(f"{printable(path)} is served by another user; refusing it")

    def send(self, msg: dict, fds: list[int] | None = None) -> None:
        data = json.dumps(msg).encode() + b"\n"
        try:
            if fds:
                sent = socket.send_fds(self.sock, [data], fds)
                if sent < len(data):
                    self.sock.sendall(data[sent:])
            else:
                self.sock.sendall(data)
        except OSError as exc:
            raise ControlError(f"the supervisor went away: {exc.strerror or exc}") from None

    def receive(self, timeout: float | None) -> dict:
        """The next message; ControlError if none comes within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.buf:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0)
            if remaining is not None and remaining <= 0:
                raise ControlError(f"the supervisor did not answer within {timeout:g} s")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                raise ControlError(f"the supervisor went away: {exc.strerror}") from None
            if not data:
                raise ControlError("the supervisor ended without an answer")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        msg = json.loads(line)
        if not isinstance(msg, dict):
            raise ControlError("the supervisor sent something that is not an answer")
        return msg

    def reply(self, timeout: float | None) -> dict:
        """Skip progress events; the final reply, or ControlError with its error line."""
        while True:
            msg = self.receive(timeout)
            if "error" in msg:
                raise ControlError(str(msg["error"]))
            if "event" not in msg:
                return msg

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def request(path: str, msg: dict, *, timeout: float = 10.0) -> dict:
    """One request, one reply."""
    with Client(path, timeout=min(timeout, 5.0)) as client:
        client.send(msg)
        return client.reply(timeout)
