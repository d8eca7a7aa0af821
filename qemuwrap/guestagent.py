"""A client for the QEMU guest agent (``qemu-ga``) on a guest's agent channel.

The channel is a virtio-serial port whose host end is a unix socket (``<channel
type='unix'>`` with target ``org.qemu.guest_agent.0``). Unlike QMP the agent has no
greeting, and bytes written while nobody listened (an agent not yet started, a client that
gave up) may still be answered later. So every exchange starts with libvirt's handshake:
a 0xFF byte (the agent drops any half-read request), then ``guest-sync-delimited`` with a
random id; the agent answers with 0xFF and that id, and whatever came before is stale and
dropped. Every read has a deadline: an agent that is not running never answers.

Synchronous plain sockets: one short exchange needs no event loop (and no asyncio import).
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from qemuwrap.errors import QemuwrapError

#: The channel name a guest's agent listens on (``<target type='virtio' name=...>``).
CHANNEL_NAME = "org.qemu.guest_agent.0"
DEFAULT_TIMEOUT = 5.0
_DELIMITER = b"\xff"
_MAX_REPLY = 16 << 20  # no agent reply is this large; a garbled stream is cut off here
#: Commands the agent never answers when they succeed (libvirt's list).
NO_REPLY = frozenset({"guest-shutdown", "guest-suspend-disk", "guest-suspend-ram",
                      "guest-suspend-hybrid"})


class AgentError(QemuwrapError):
    """The agent did not answer in time, or answered with an error; one line."""


class AgentCommandError(AgentError):
    """The agent answered with an error (``{"error": {"class": ..., "desc": ...}}``)."""

    def __init__(self, command: str, error: dict):
        self.error_class = str(error.get("class", "GenericError"))
        self.desc = str(error.get("desc", "unknown error"))
        super().__init__(f"guest agent: {command}: {self.desc}")


def parse_command(command: Any) -> dict:
    """A command as ``virsh qemu-agent-command`` takes it (JSON text, or the object
    itself), checked: an object with a string ``execute``; AgentError (one line) if not."""
    request: Any = command
    if isinstance(command, str):
        try:
            request = json.loads(command)
        except (ValueError, RecursionError) as exc:
            raise AgentError(f"guest agent: not a JSON command: {exc}") from None
    if not isinstance(request, dict) or not isinstance(request.get("execute"), str):
        raise AgentError("guest agent: the command must be a JSON object with 'execute'")
    if "arguments" in request and not isinstance(request["arguments"], dict):
        raise AgentError("guest agent: the command's 'arguments' must be a JSON object")
    return request


class GuestAgent:
    """One connection to the agent socket; ``with GuestAgent(path) as agent: agent.execute(...)``.

    ``timeout`` bounds each command, its handshake included: one deadline for both."""

    def __init__(self, path: str, timeout: float = DEFAULT_TIMEOUT):
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""
        self._synced = False
        self._budget = timeout  # the running exchange's timeout, for its message

    def __enter__(self) -> GuestAgent:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise AgentError(f"guest agent: cannot connect to {self.path}: "
                             f"{exc.strerror or exc}") from None
        self._sock = sock
        self._buf = b""
        self._synced = False

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # --- bytes with a deadline ------------------------------------------------------------------

    def _send(self, data: bytes, deadline: float) -> None:
        sock = self._require()
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.sendall(data)
        except TimeoutError:
            raise AgentError(f"guest agent: {self.path}: cannot send (the channel is full; "
                             "is the agent running in the guest?)") from None
        except OSError as exc:
            raise AgentError(f"guest agent: {self.path}: {exc.strerror or exc}") from None

    def _fill(self, deadline: float, waiting_for: str) -> None:
        """Read more bytes into the buffer, or fail at the deadline."""
        sock = self._require()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AgentError(f"guest agent: no answer to {waiting_for} within "
                             f"{self._budget:g} s (is qemu-ga running in the guest?)")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            chunk = None
        except OSError as exc:
            raise AgentError(f"guest agent: {self.path}: {exc.strerror or exc}") from None
        if chunk is None:
            self._fill(deadline, waiting_for)  # re-checks the deadline and reports it
            return
        if not chunk:
            raise AgentError(f"guest agent: {self.path}: the channel closed")
        self._buf += chunk
        if len(self._buf) > _MAX_REPLY:
            raise AgentError(f"guest agent: {self.path}: reply larger than "
                             f"{_MAX_REPLY >> 20} MiB")

    def _read_object(self, deadline: float, waiting_for: str) -> Any:
        """The next JSON value on the stream: the agent writes each reply as one line."""
        while True:
            line, newline, rest = self._buf.partition(b"\n")
            if not newline:
                self._fill(deadline, waiting_for)
                continue
            self._buf = rest
            line = line.strip(b" \t\r" + _DELIMITER)
            if not line:
                continue
            try:
                return json.loads(line)
            except (ValueError, RecursionError):
                continue  # a garbled line (a reset mid-reply), or a guest's trick: not ours

    # --- protocol -------------------------------------------------------------------------------

    def sync(self, deadline: float | None = None) -> None:
        """libvirt's handshake: drop everything before the agent's delimiter and our id."""
        if deadline is None:
            self._budget = self.timeout
            deadline = time.monotonic() + self.timeout
        ident = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF
        request = {"execute": "guest-sync-delimited", "arguments": {"id": ident}}
        self._buf = b""
        self._send(_DELIMITER + json.dumps(request).encode() + b"\n", deadline)
        while True:
            while _DELIMITER not in self._buf:
                self._buf = b""  # stale replies and garbage before the delimiter
                self._fill(deadline, "guest-sync-delimited")
            self._buf = self._buf.split(_DELIMITER, 1)[1]
            reply = self._read_object(deadline, "guest-sync-delimited")
            if isinstance(reply, dict) and reply.get("return") == ident:
                self._synced = True
                return
            # An older handshake's answer: keep looking for ours.

    def execute(self, command: str, arguments: dict | None = None, *,
                timeout: float | None = None) -> Any:
        """Run one command; its ``return`` value (None for commands that never answer)."""
        request: dict[str, Any] = {"execute": command}
        if arguments is not None:
            request["arguments"] = arguments
        reply = self.execute_json(json.dumps(request), timeout=timeout)
        if reply is None:
            return None
        return reply.get("return")

    def execute_json(self, text: str | dict, *, timeout: float | None = None,
                     deadline: float | None = None) -> dict | None:
        """Send a command given as JSON text (or its object); the whole reply
        (``{"return": ...}``), or None for a command that does not answer on success. An
        ``error`` reply raises AgentCommandError. ``timeout`` (default: the connection's)
        bounds the handshake and the command together; or ``deadline`` (a
        ``time.monotonic()``), for a request that started its ``timeout`` earlier."""
        request = parse_command(text)
        command = request["execute"]
        self._budget = self.timeout if timeout is None else timeout
        if deadline is None:
            deadline = time.monotonic() + self._budget
        if not self._synced:
            self.sync(deadline)
        self._synced = False  # the next command handshakes again: a timeout leaves stale bytes
        self._send(json.dumps(request).encode() + b"\n", deadline)
        if command in NO_REPLY:
            # Success is silence; a refusal still answers at once. Wait a little for it.
            try:
                reply = self._read_object(min(deadline, time.monotonic() + 0.5), command)
            except AgentError:
                return None
        else:
            reply = self._read_object(deadline, command)
        if not isinstance(reply, dict):
            raise AgentError(f"guest agent: {command}: unexpected reply {reply!r:.80}")
        if "error" in reply:
            raise AgentCommandError(command, reply["error"] if isinstance(reply["error"], dict)
                                    else {"desc": str(reply["error"])})
        return reply

    def _require(self) -> socket.socket:
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        return self._sock


# --- one-shot helpers (one connection each) -------------------------------------------------


def command(path: str, text: str | dict, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Like ``virsh qemu-agent-command``: JSON text in, the reply's JSON text out
    (``{"return": ...}``); an empty string for a command that does not answer."""
    with GuestAgent(path, timeout) as agent:
        reply = agent.execute_json(text)
    return "" if reply is None else json.dumps(reply)


def _run(path: str, name: str, arguments: dict | None = None,
         timeout: float = DEFAULT_TIMEOUT) -> Any:
    with GuestAgent(path, timeout) as agent:
        return agent.execute(name, arguments)


def ping(path: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Raises AgentError unless the agent answers."""
    _run(path, "guest-ping", timeout=timeout)


def osinfo(path: str, timeout: float = DEFAULT_TIMEOUT) -> dict:
    """``guest-get-osinfo``: kernel-release, machine, name, id, pretty-name, ..."""
    return _run(path, "guest-get-osinfo", timeout=timeout)


def network_interfaces(path: str, timeout: float = DEFAULT_TIMEOUT) -> list[dict]:
    """``guest-network-get-interfaces``: name, hardware-address, ip-addresses per interface."""
    return _run(path, "guest-network-get-interfaces", timeout=timeout)


def addresses(path: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, list[str]]:
    """The guest's addresses by interface (``ADDR/PREFIX``), loopback left out."""
    return addresses_of(network_interfaces(path, timeout), loopback=False)


def addresses_of(interfaces: Any, *, loopback: bool = True) -> dict[str, list[str]]:
    """``ADDR/PREFIX`` by interface name from a ``guest-network-get-interfaces`` reply
    (what ``status`` shows); whatever in it is not of that shape is left out."""
    out: dict[str, list[str]] = {}
    for iface in interfaces if isinstance(interfaces, list) else []:
        if not isinstance(iface, dict) or not isinstance(iface.get("name"), str):
            continue
        if iface["name"] == "lo" and not loopback:
            continue
        found = iface.get("ip-addresses")
        out[iface["name"]] = [
            f"{a['ip-address']}/{a['prefix']}" for a in (found if isinstance(found, list) else [])
            if isinstance(a, dict) and isinstance(a.get("ip-address"), str)
            and isinstance(a.get("prefix"), int)]
    return out


def shutdown(path: str, mode: str = "powerdown", timeout: float = DEFAULT_TIMEOUT) -> None:
    """``guest-shutdown`` (mode ``powerdown``, ``halt`` or ``reboot``); no reply on success."""
    _run(path, "guest-shutdown", {"mode": mode}, timeout=timeout)


def fsfreeze_freeze(path: str, timeout: float = 60.0) -> int:
    """Freeze the guest's file systems; how many were frozen. Thaw soon: writes block."""
    return int(_run(path, "guest-fsfreeze-freeze", timeout=timeout))


def fsfreeze_thaw(path: str, timeout: float = DEFAULT_TIMEOUT) -> int:
    """Thaw them again; how many were thawed."""
    return int(_run(path, "guest-fsfreeze-thaw", timeout=timeout))


def fsfreeze_status(path: str, timeout: float = DEFAULT_TIMEOUT) -> str:
    """``thawed`` or ``frozen``."""
    return str(_run(path, "guest-fsfreeze-status", timeout=timeout))
