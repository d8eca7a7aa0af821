"""The error types the CLI turns into one-line messages and exit codes."""

from __future__ import annotations


class QemuwrapError(Exception):
    """A problem the user can fix; its text is one line, shown without a traceback."""

    exit_status = 1


class XMLError(QemuwrapError):
    """The domain XML is malformed, invalid or asks for something unsupported."""

    def __init__(self, message: str, element: str | None = None, line: int | None = None):
        self.element = element
        self.line = line
        super().__init__(message)


class UnsupportedError(QemuwrapError):
    """The definition is valid but this QEMU / machine / arch cannot provide it."""


class UsageError(QemuwrapError):
    """The command line was wrong."""

    exit_status = 2


def printable(text: str) -> str:
    """``text`` safe to print on one terminal line: control characters (newlines, escape
    sequences), other unprintable characters and undecodable bytes of a file name
    (surrogate escapes) are shown as backslash escapes; printable text is unchanged."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape",
                                                       "backslashreplace").decode("ascii")
                   for c in text)


_DEBUG = [bool(__import__("os").environ.get("QEMUWRAP_DEBUG"))]


def set_debug(on: bool) -> None:
    """``-v``/``--debug``: what qemuwrap does goes to stderr (children inherit it)."""
    import os

    _DEBUG[0] = on
    if on:
        os.environ["QEMUWRAP_DEBUG"] = "1"


def debug(message: str) -> None:
    if _DEBUG[0]:
        import sys

        print(f"qemuwrap: debug: {printable(message)}", file=sys.stderr, flush=True)
