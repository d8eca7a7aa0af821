"""The error types the CLI turns into one-line messages and exit codes."""

from __future__ import annotations


class QemuwrapError(Exception):
    """A problem the user can fix; its text is one line, shown without a traceback.

    The message is made printable here, whoever built it from what input."""

    exit_status = 1

    def __init__(self, *args):
        if args and isinstance(args[0], str):
            args = (printable(args[0]), *args[1:])
        super().__init__(*args)


class XMLError(QemuwrapError):
    """The domain XML is malformed, invalid or asks for something unsupported."""

    def __init__(self, message: str, element: str | None = None, line: int | None = None):
        self.element = element
        self.line = line
        #: False for a rule across fields (a model check), which a schema cannot state.
        self.declared = True
        super().__init__(message)


class UnsupportedError(QemuwrapError):
    """The definition is valid but this QEMU / machine / arch cannot provide it."""


class UsageError(QemuwrapError):
    """The command line was wrong."""

    exit_status = 2


class Problems(QemuwrapError):
    """Several problems found in one pass (every unsupported element, every invalid
    value): the text is one line per problem, each printed with the usual prefix."""

    def __init__(self, errors: list[QemuwrapError]):
        self.errors = errors
        # Each message is printable already; the newlines between them are the format.
        Exception.__init__(self, "\n".join(str(e) for e in errors))

    @staticmethod
    def of(errors: list) -> QemuwrapError:
        """The one error itself, or all of them together (an XMLError when all are)."""
        if len(errors) == 1:
            return errors[0]
        if all(isinstance(e, XMLError) for e in errors):
            return XMLProblems(list(errors))
        return Problems(list(errors))


class XMLProblems(Problems, XMLError):
    """Several problems with the XML itself (see Problems)."""

    def __init__(self, errors: list[QemuwrapError]):
        Problems.__init__(self, errors)
        self.element = getattr(errors[0], "element", None)
        self.line = getattr(errors[0], "line", None)
        self.declared = any(getattr(e, "declared", True) for e in errors)


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
