"""The guest record (``state.json``): who runs what, typed and versioned on disk.

One class for everything qemuwrap keeps about a running guest, read back with every
field's type checked: a hand-edited or damaged file is a one-line refusal naming the
file and the field, never a ``KeyError`` three modules later.

Companions (host processes started before QEMU and stopped after it: swtpm,
virtiofsd, dnsmasq, ...) are recorded here too, with what identifies each process
(pid and create time) and the paths to remove after it, so ``destroy`` and ``adopt``
can clean up after a supervisor that was killed.
"""

from __future__ import annotations

import json

from qemuwrap.errors import QemuwrapError, printable

VERSION = 1


class RecordError(QemuwrapError):
    """state.json is not a record this qemuwrap wrote."""


class _Plain:
    """Value semantics for the record classes (explicit ``__init__``s keep them typed
    without importing dataclasses, ~13 ms, on the way to every running guest)."""

    __slots__: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(
            getattr(self, f) == getattr(other, f) for f in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__slots__)
        return f"{type(self).__name__}({shown})"


class Proc(_Plain):
    """A process as the kernel can confirm it: pid and create time (a pid alone may have
    been reused), and the argv it was started with."""

    __slots__ = ("pid", "create_time", "argv")

    def __init__(self, pid: int, create_time: float, argv: list[str] | None = None):
        self.pid = pid
        self.create_time = create_time
        self.argv = argv if argv is not None else []


class Link(_Plain):
    """A network device made for the guest (a tap): deleted once the guest ends, if the
    device of that ``name`` is still the one with ``index`` (the kernel's ifindex; a
    later device that took the name is left alone).  A tap on a qemuwrap network also
    names the guest's ``mac``, the ``bridge`` and dnsmasq's ``leases`` file, so the
    guest's DHCP lease is released with it."""

    __slots__ = ("name", "index", "mac", "bridge", "leases")

    def __init__(self, name: str, index: int | None = None, mac: str | None = None,
                 bridge: str | None = None, leases: str | None = None):
        self.name = name
        self.index = index
        self.mac = mac
        self.bridge = bridge
        self.leases = leases


class Companion(_Plain):
    """A host process or resource that lives as long as the guest's QEMU.

    ``kind`` names what it is ("swtpm", "virtiofsd", "tap", ...); ``proc`` is None for a
    resource without a process (a tap device); ``cleanup`` lists the paths removed once
    it stopped; ``link`` the network device removed then (a record written before links
    were recorded has none: the field is optional).
    """

    __slots__ = ("kind", "id", "proc", "cleanup", "link")

    def __init__(self, kind: str, id: str, proc: Proc | None = None,  # noqa: A002
                 cleanup: list[str] | None = None, link: Link | None = None):
        self.kind = kind
        self.id = id
        self.proc = proc
        self.cleanup = cleanup if cleanup is not None else []
        self.link = link


class GuestRecord(_Plain):
    """A running guest: the QEMU, the supervisor that owns it, where to reach both.

    ``qemu`` is None only while companions start, before QEMU is spawned; ``source`` is
    the definition file the guest was started from (None: a restore from the definition
    stored in a save file); ``console`` the first serial port's pty; ``vnc`` the VNC
    display as host:port.
    """

    __slots__ = ("name", "uuid", "state_dir", "started", "qemu", "genid", "source", "env",
                 "supervisor", "console", "vnc", "companions")

    def __init__(self, name: str, uuid: str, state_dir: str, started: float, *,
                 qemu: Proc | None = None, genid: str | None = None,
                 source: str | None = None, env: dict[str, str] | None = None,
                 supervisor: Proc | None = None, console: str | None = None,
                 vnc: str | None = None, companions: list[Companion] | None = None):
        self.name = name
        self.uuid = uuid
        self.state_dir = state_dir
        self.started = started
        self.qemu = qemu
        self.genid = genid
        self.source = source
        self.env = env if env is not None else {}
        self.supervisor = supervisor
        self.console = console
        self.vnc = vnc
        self.companions = companions if companions is not None else []

    # -- on disk ---------------------------------------------------------------
    def to_json(self) -> dict:
        out = _plain(self)
        out["version"] = VERSION
        return out

    def dumps(self) -> bytes:
        return json.dumps(self.to_json(), indent=1).encode()

    @classmethod
    def loads(cls, data: bytes, where: str) -> GuestRecord:
        """Parse and check a record; RecordError (one line, naming ``where``) if not."""
        try:
            raw = json.loads(data)
        except (ValueError, RecursionError):
            raise RecordError(f"{printable(where)}: not a guest record (damaged JSON)") \
                from None
        if not isinstance(raw, dict):
            raise RecordError(f"{printable(where)}: not a guest record (not a JSON object)")
        version = raw.get("version")
        if version != VERSION:
            raise RecordError(f"{printable(where)}: guest record version "
                              f"{printable(repr(version))}; this qemuwrap reads version "
                              f"{VERSION}")
        return _build(cls, raw, where, "")


#: Field name -> how to check and build it, per class (nested records by class).
_TYPES: dict[type, dict[str, object]] = {
    Proc: {"pid": int, "create_time": float, "argv": [str]},
    Link: {"name": str, "index": (int, None), "mac": (str, None), "bridge": (str, None),
           "leases": (str, None)},
    Companion: {"kind": str, "id": str, "proc": (Proc, None), "cleanup": [str],
                "link": (Link, None)},
    GuestRecord: {"name": str, "uuid": str, "state_dir": str, "qemu": (Proc, None),
                  "started": float, "genid": (str, None), "source": (str, None),
                  "env": {str: str}, "supervisor": (Proc, None), "console": (str, None),
                  "vnc": (str, None), "companions": [Companion]},
}
_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string"}


#: Fields with a default (the others are required).
_REQUIRED = {Proc: ("pid", "create_time"), Link: ("name",), Companion: ("kind", "id"),
             GuestRecord: ("name", "uuid", "state_dir", "started")}


def _plain(value):
    if isinstance(value, _Plain):
        return {f: _plain(getattr(value, f)) for f in value.__slots__}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _build(cls, raw, where: str, path: str):
    if not isinstance(raw, dict):
        raise _wrong(where, path.rstrip("."), "an object")
    kwargs = {}
    for name, spec in _TYPES[cls].items():
        if name in raw:
            kwargs[name] = _check(spec, raw[name], where, path + name)
        elif name in _REQUIRED[cls]:
            raise RecordError(f"{printable(where)}: guest record lacks '{path + name}'")
    return cls(**kwargs)


def _check(spec, value, where: str, path: str):
    if isinstance(spec, tuple):  # (type, None): optional
        if value is None:
            return None
        return _check(spec[0], value, where, path)
    if isinstance(spec, list):
        if not isinstance(value, list):
            raise _wrong(where, path, "a list")
        return [_check(spec[0], v, where, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(spec, dict):
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise _wrong(where, path, "an object of strings")
        return dict(value)
    if spec in _TYPES:
        return _build(spec, value, where, path + ".")
    if spec is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _wrong(where, path, "a number")
        return float(value)
    if isinstance(value, bool) or not isinstance(value, spec):
        raise _wrong(where, path, _TYPE_NAMES.get(spec, spec.__name__))
    if spec is int and value < 0:
        raise _wrong(where, path, "a positive integer")
    return value


def _wrong(where: str, path: str, what: str) -> RecordError:
    return RecordError(f"{printable(where)}: damaged guest record: '{path}' is not {what}")
