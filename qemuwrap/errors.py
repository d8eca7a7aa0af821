"""The error types the CLI turns into one-line messages and exit codes."""


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
