"""Write XML the way libvirt formats it: two-space indent, single-quoted attributes."""

from __future__ import annotations

from collections.abc import Iterable

_ATTR_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "'": "&apos;",
                               '"': "&quot;", "\n": "&#10;", "\t": "&#9;"})
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def escape_text(text: str) -> str:
    return text.translate(_TEXT_ESCAPES)


class Writer:
    """Accumulates lines; ``attrs`` pairs whose value is None are left out."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0

    @staticmethod
    def _attrs(attrs: Iterable[tuple[str, object]]) -> str:
        return "".join(f" {k}='{str(v).translate(_ATTR_ESCAPES)}'"
                       for k, v in attrs if v is not None)

    def empty(self, tag: str, *attrs: tuple[str, object]) -> None:
        self.lines.append(f"{'  ' * self.depth}<{tag}{self._attrs(attrs)}/>")

    def text(self, tag: str, value: object, *attrs: tuple[str, object]) -> None:
        """``<tag attrs>value</tag>``; nothing when value is None."""
        if value is None:
            return
        self.lines.append(f"{'  ' * self.depth}<{tag}{self._attrs(attrs)}>"
                          f"{escape_text(str(value))}</{tag}>")

    def open(self, tag: str, *attrs: tuple[str, object]) -> None:
        self.lines.append(f"{'  ' * self.depth}<{tag}{self._attrs(attrs)}>")
        self.depth += 1

    def close(self, tag: str) -> None:
        self.depth -= 1
        self.lines.append(f"{'  ' * self.depth}</{tag}>")

    def raw(self, xml: str) -> None:
        """Foreign XML kept as written, re-indented to this depth."""
        lines = xml.split("\n")
        indent = "  " * self.depth
        self.lines.append(indent + lines[0])
        self.lines.extend(lines[1:])

    def getvalue(self) -> str:
        return "\n".join(self.lines) + "\n"
