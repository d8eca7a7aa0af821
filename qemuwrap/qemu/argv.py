"""A QEMU command line as data: options with the XML element each came from.

Values are escaped for QEMU's option syntax (a ``,`` inside a value is doubled),
so no text from the XML can add an option of its own; whole words are quoted
for a POSIX shell when the command is printed.
"""

from __future__ import annotations

from qemuwrap.conf.xmlreader import Node
from qemuwrap.record import Factory, Record

_SHELL_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                        "@%+=:,./-_")


def escape(value: object) -> str:
    """One value inside a QEMU option string: commas doubled."""
    return str(value).replace(",", ",,")


def optstr(*items: object, **props: object) -> str:
    """``first,k=v,...``: positional items are bare values, None props are left out.

    Python names map to QEMU's: ``debug_threads`` is ``debug-threads``; keys with a
    '.' (``file.filename``) are passed with ``**{...}``. Values are escaped.
    """
    parts = [str(i).replace(",", ",,") for i in items]
    parts.extend(f"{key.replace('_', '-')}={str(value).replace(',', ',,')}"
                 for key, value in props.items() if value is not None)
    return ",".join(parts)


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
        self.value = value
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
    env: dict[str, str] = Factory(dict)  # type: ignore[assignment]
    args: list[Arg] = Factory(list)  # type: ignore[assignment]

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
            else:
                note = f"qemuwrap: {arg.why}" if arg.why else ""
            rows.append((text, note))
        width = min(max(len(t) for t, _ in rows), 60) if rows else 0
        out = [shell_quote(self.binary)]
        out.extend(f"{t.ljust(width)}  # {n}" if n else t for t, n in rows)
        return "\n".join(out) + "\n"
