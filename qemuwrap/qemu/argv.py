"""A QEMU command line as data: options with the XML element each came from.

Every value stays a value.  QEMU reads an option string ``first,key=value,...`` with
QemuOpts (util/qemu-option.c) or keyval (util/keyval.c); inside a value a ``,`` is
doubled, so no text from the XML can add a key of its own.  The first, implied-key
value (``-vnc HOST:N``, ``-device DRIVER``) is weaker: QEMU reads it as a key when it
holds a ``=`` before any ``,`` (``-vnc websocket=0.0.0.0:0`` sets ``websocket``),
QemuOpts' id scan reads ``,,id=X`` inside it as the option's id, keyval ends it at the
first ``,`` or ``=`` whatever the escaping, an empty one is no value at all, and
``help`` or ``?`` asks for help.  Such a value is written under its explicit key
(``-vnc vnc=websocket=0.0.0.0:0``), from :data:`IMPLIED_KEYS`; :class:`Arg` does it,
so every builder gets it.  Whole words are quoted for a POSIX shell when printed.
"""

from __future__ import annotations

from qemuwrap.conf.xmlreader import Node
from qemuwrap.errors import UnsupportedError
from qemuwrap.record import Factory, Record

_SHELL_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                        "@%+=:,./-_")
#: The key QEMU 7.2 gives the first value of each option that has one (QemuOpts lists'
#: implied_opt_name, keyval's implied key).  An option whose implied value is free text
#: must be listed, or a misreadable value is refused.
IMPLIED_KEYS = {
    "-name": "guest", "-machine": "type", "-accel": "accel", "-m": "size", "-smp": "cpus",
    "-device": "driver", "-chardev": "backend", "-netdev": "type", "-vnc": "vnc",
    "-boot": "order", "-mon": "chardev", "-blockdev": "driver", "-display": "type",
    "-object": "qom-type", "-audiodev": "driver", "-numa": "type", "-tpmdev": "type",
    "-fsdev": "fsdriver",
}
_HELP = ("help", "?")


def escape(value: object) -> str:
    """One value inside a QEMU option string: commas doubled."""
    return str(value).replace(",", ",,")


def implied_is_safe(value: str) -> bool:
    """Whether QEMU reads ``value`` as the first, implied-key value of an option string,
    both with QemuOpts (also its id scan) and with keyval."""
    return bool(value) and "," not in value and "=" not in value and value not in _HELP


class OptionString(str):
    """An option string that remembers its implied first value, so :class:`Arg` can
    write it under its explicit key when QEMU would misread it."""

    __slots__ = ("implied", "rest")

    implied: str | None  # the first value as given (unescaped), or None
    rest: str  # the ``key=value`` part after it

    def for_option(self, option: str) -> str:
        if self.implied is None or implied_is_safe(self.implied):
            return self
        key = IMPLIED_KEYS.get(option)
        if key is None:
            raise UnsupportedError(f"{option}: the value '{self.implied}' cannot be passed "
                                   "to QEMU as a value")
        explicit = f"{key}={escape(self.implied)}"
        return f"{explicit},{self.rest}" if self.rest else explicit


def optstr(*items: object, **props: object) -> str:
    """``first,k=v,...``: at most one positional item, the implied-key value; None props
    are left out.

    Python names map to QEMU's: ``debug_threads`` is ``debug-threads``; keys with a
    '.' (``file.filename``) are passed with ``**{...}``. Values are escaped.
    """
    if len(items) > 1:
        raise TypeError("optstr() takes at most one implied value")
    rest = ",".join(f"{key.replace('_', '-')}={str(value).replace(',', ',,')}"
                    for key, value in props.items() if value is not None)
    if not items:
        out = OptionString(rest)
        out.implied = None
    else:
        first = str(items[0])
        escaped = first.replace(",", ",,")
        out = OptionString(f"{escaped},{rest}" if rest else escaped)
        out.implied = first
    out.rest = rest
    return out


def shell_quote(word: str) -> str:
    """Quote a word for a POSIX shell only where needed (no shlex: keeps start-up light)."""
    if word and _SHELL_SAFE.issuperset(word):
        return word
    return "'" + word.replace("'", "'\\''") + "'"


class Arg:
    """One option (``-device``) with its value, and where it came from (a plain class:
    a command has dozens, built on every translation)."""

    __slots__ = ("option", "value", "source", "why")

    def __init__(self, option: str, value: str | None = None, source: Node | None = None,
                 why: str | None = None):
        self.option = option
        self.value = value.for_option(option) if isinstance(value, OptionString) else value
        self.source = source
        self.why = why  # for options that no element asked for

    def __repr__(self) -> str:
        return f"Arg({self.option!r}, {self.value!r})"

    @property
    def words(self) -> list[str]:
        return [self.option] if self.value is None else [self.option, self.value]


class Command(Record):
    """Environment and argv of one QEMU process."""

    binary: str
    env: dict[str, str] = Factory(dict)
    args: list[Arg] = Factory(list)

    def add(self, option: str, value: str | None = None, source: Node | None = None,
            why: str | None = None) -> None:
        self.args.append(Arg(option, value, source, why))

    @property
    def argv(self) -> list[str]:
        out = [self.binary]
        for arg in self.args:
            out.extend(arg.words)
        return out

    def to_args(self) -> str:
        """libvirt's ``.args`` layout: env lines, binary, one option per line, `` \\``-joined."""
        lines = [f"{k}={shell_quote(v)}" for k, v in self.env.items()]
        lines.append(shell_quote(self.binary))
        lines.extend(" ".join(map(shell_quote, arg.words)) for arg in self.args)
        return " \\\n".join(lines) + "\n"

    def to_json(self) -> dict:
        return {"env": dict(self.env), "argv": self.argv}

    def explain(self, xml: bytes) -> str:
        """Each option beside the XML element (as written in ``xml``) it came from."""
        from qemuwrap.conf.untrusted import decode

        codec = decode(xml).codec  # offsets are into the file's own bytes, in its encoding
        rows = []
        for arg in self.args:
            text = " ".join(shell_quote(w) for w in arg.words)
            if arg.source is not None:
                src = arg.source
                raw = xml[src.start:src.end].decode(codec, "replace")
                if src.children:  # a container by its start tag only; a leaf whole
                    raw = raw[:raw.find(">") + 1]
                first = " ".join(raw.split())
                if len(first) > 72:
                    first = first[:69] + "..."
                note = f"line {arg.source.line}: {first}"
                if arg.why:  # what the element asks that the option does not do
                    note += f" (qemuwrap: {arg.why})"
            else:
                note = f"qemuwrap: {arg.why}" if arg.why else ""
            rows.append((text, note))
        width = min(max(len(t) for t, _ in rows), 60) if rows else 0
        out = [shell_quote(self.binary)]
        out.extend(f"{t.ljust(width)}  # {n}" if n else t for t, n in rows)
        return "\n".join(out) + "\n"
