"""The guest agent from the tools: ``qemuwrap agent`` (as ``virsh qemu-agent-command``),
what ``status`` shows of it, and ``shutdown --mode agent`` and ``snapshot create
--quiesce`` for a guest whose supervisor is gone.

A supervisor alone talks to its guest's agent socket (``runtime/agent.py``: one exchange
at a time, each with its deadline); the tools ask it. Only when no supervisor lives do
they use the socket themselves, with the same deadlines, as the other commands' fallback.

Where the socket is comes from the definition the guest runs, by the rule the command
builder used for QEMU's ``-chardev`` (``qemu/build/chardev.py: channel_socket``): the
supervisor is handed it at launch and reports it in ``status``; without a supervisor it
is worked out again from the live definition in the state directory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qemuwrap.errors import QemuwrapError, printable
from qemuwrap.guestagent import (
    CHANNEL_NAME,
    DEFAULT_TIMEOUT,
    GuestAgent,
    addresses_of,
    parse_command,
)
from qemuwrap.ops import guests
from qemuwrap.runtime import control
from qemuwrap.runtime.agent import (
    FREEZE,
    FREEZE_TIMEOUT,
    NO_CHANNEL,
    SHUTDOWN,
    THAW,
    THAW_TIMEOUT,
    NoAgentChannel,
    check_timeout,
)
from qemuwrap.runtime.guestdir import GuestDir
from qemuwrap.runtime.record import GuestRecord

#: ``status`` asks briefly: it must never hang on a guest without an agent.
STATUS_PING_TIMEOUT = 1.0
STATUS_INTERFACES_TIMEOUT = 2.0
#: Beyond an agent command's own deadline, how long its supervisor may take to answer.
ASK_MARGIN = 5.0


def socket_path(dom: Any, state_dir: str) -> str | None:
    """The guest agent's socket for a definition run from ``state_dir``: its channel's
    ``<source path>``, or the path the builder gave QEMU. None when the definition has
    no channel named ``org.qemu.guest_agent.0`` that is a unix socket QEMU listens on."""
    from qemuwrap.conf.devices.chardev import ChannelTargetType, CharType, chr_spec
    from qemuwrap.qemu.build.chardev import channel_socket

    for chan in dom.devices.channels:
        if chan.target_type != ChannelTargetType.VIRTIO or chan.target.name != CHANNEL_NAME:
            continue
        spec = chr_spec(chan)
        if chan.type != CharType.UNIX or not spec.listen:
            return None
        return spec.path or channel_socket(state_dir, chan)
    return None


def live_socket_path(gdir: GuestDir) -> str | None:
    """The agent socket of the running guest, from its live definition (``domain.xml``,
    written by its supervisor into the owner-only state directory)."""
    from qemuwrap.conf.domain import parse_domain
    from qemuwrap.conf.xmlreader import parse_bytes

    xml = gdir.read("domain.xml")
    if xml is None:
        raise QemuwrapError(f"guest '{printable(gdir.name)}': its live definition is gone")
    return socket_path(parse_domain(parse_bytes(xml)), gdir.path)


def _direct(gdir: GuestDir, request: dict, timeout: float) -> dict | None:
    """One command straight to the socket (no supervisor lives)."""
    path = live_socket_path(gdir)
    if path is None:
        raise NoAgentChannel(NO_CHANNEL)
    with GuestAgent(path, timeout) as agent:
        return agent.execute_json(request)


def execute(gdir: GuestDir, record: GuestRecord, request: dict, timeout: float) -> dict | None:
    """One checked agent command for a running guest: through its supervisor, or
    directly when it has none. The reply (``{"return": ...}``; None for a command that
    does not answer on success), or a one-line error."""
    if guests.supervisor_alive(gdir, record):
        try:
            reply = guests.ask(gdir, {"request": "agent", "command": request,
                                      "timeout": timeout}, timeout + ASK_MARGIN)
        except control.NoSupervisor:
            pass  # it went away meanwhile: ask the agent ourselves
        else:
            return reply.get("reply")
    return _direct(gdir, request, timeout)


def command(name: str, state_dir: str | None, text: str,
            timeout: float = DEFAULT_TIMEOUT) -> dict:
    """``qemuwrap agent NAME JSON``: ``{"name", "command", "reply"}``."""
    request = parse_command(text)
    timeout = check_timeout(timeout)
    gdir, record = guests.running(name, state_dir)
    reply = execute(gdir, record, request, timeout)
    return {"name": name, "command": request["execute"], "reply": reply}


def status(gdir: GuestDir, record: GuestRecord, supervised: bool,
           live: dict | None) -> dict:
    """What ``status`` shows of the agent: ``agent_socket``; ``agent``: ``answers``,
    ``not answering``, ``no channel``, or ``unknown`` (a supervisor too busy to ask);
    ``addresses`` by interface (``ADDR/PREFIX``) when it answers. ``live``: the
    supervisor's status reply (None if it gave none). Short deadlines: never hangs."""
    out: dict = {"agent_socket": None, "agent": "no channel", "addresses": None}
    try:
        path = live.get("agent_socket") if supervised and live is not None \
            else live_socket_path(gdir)
    except QemuwrapError:
        return {**out, "agent": "unknown"}
    if path is None:
        return out
    out["agent_socket"] = path
    if supervised and live is None:
        return {**out, "agent": "unknown"}  # its owner is busy: not behind its back
    try:
        execute(gdir, record, {"execute": "guest-ping"}, STATUS_PING_TIMEOUT)
    except QemuwrapError:
        return {**out, "agent": "not answering"}
    out["agent"] = "answers"
    try:
        reply = execute(gdir, record, {"execute": "guest-network-get-interfaces"},
                        STATUS_INTERFACES_TIMEOUT)
    except QemuwrapError:
        return out
    out["addresses"] = addresses_of((reply or {}).get("return"))
    return out


def ask_shutdown(gdir: GuestDir, timeout: float) -> None:
    """``guest-shutdown`` straight to the agent (no supervisor lives); one line if the
    guest could not be asked."""
    try:
        _direct(gdir, SHUTDOWN, max(min(timeout, 5.0), 1.0))
    except QemuwrapError as exc:
        raise QemuwrapError(f"{exc}; the guest was not asked to power off") from None


def quiesced(gdir: GuestDir, action: Callable[[], None]) -> int:
    """Freeze the guest's file systems, ``action()``, thaw (also when the freeze or the
    action failed), straight through the socket (no supervisor lives); how many file
    systems were frozen."""
    path = live_socket_path(gdir)
    if path is None:
        raise NoAgentChannel(NO_CHANNEL)
    try:
        with GuestAgent(path, FREEZE_TIMEOUT) as agent:
            frozen = (agent.execute_json(FREEZE) or {}).get("return")
    except QemuwrapError as exc:
        _thaw(path)
        raise QemuwrapError(f"cannot quiesce the guest: {exc}; no snapshot taken") from None
    try:
        action()
    except BaseException:
        _thaw(path)
        raise
    error = _thaw(path)
    if error is not None:
        raise QemuwrapError(
            f"the snapshot was taken, but the guest's file systems could not be thawed "
            f"({error}): they may still be frozen; thaw them with "
            "'{\"execute\":\"guest-fsfreeze-thaw\"}' through 'qemuwrap agent'")
    return frozen if isinstance(frozen, int) else 0


def _thaw(path: str) -> QemuwrapError | None:
    try:
        with GuestAgent(path, THAW_TIMEOUT) as agent:
            agent.execute_json(THAW)
    except QemuwrapError as exc:
        return exc
    return None
