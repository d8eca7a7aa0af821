"""Writing a definition file back: atomically, and touching nothing but what must change.

A file on disk is only ever replaced whole (temp file in the same directory, fsync,
rename, fsync of the directory), so a crash leaves the old or the new file, never a
torn one. Saving a genid edits only the ``<genid>`` element's bytes: comments,
formatting and everything else a user wrote stay byte for byte.
"""

from __future__ import annotations

import os

from qemuwrap.conf import guid
from qemuwrap.conf.domain import Domain
from qemuwrap.errors import QemuwrapError


class DefinitionWriteError(QemuwrapError):
    """The definition file could not be updated (nothing was changed)."""


def atomic_write(path: str | os.PathLike, data: bytes, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data``: write a temp file beside it, fsync, rename."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if mode is None:
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
    # A name of our own beside the target (tempfile costs ~5 ms of start-up to import).
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def with_genid(data: bytes, dom: Domain, new: bytes) -> bytes:
    """``data`` (the file ``dom`` was read from) with its ``<genid>`` set to ``new``."""
    node = dom.nodes.get("genid")
    if node is None:
        raise DefinitionWriteError("the definition has no <genid> element")
    element = f"<genid>{guid.format(new)}</genid>".encode()
    return data[:node.start] + element + data[node.end:]


def save_genid(path: str | os.PathLike, data: bytes, dom: Domain, new: bytes | None = None) \
        -> None:
    """Store ``new`` (default: the domain's current genid) in the file ``dom`` came from.

    Refuses if the file changed since it was read: a concurrent edit is not overwritten.
    """
    new = dom.genid if new is None else new
    try:
        with open(path, "rb") as f:
            current = f.read()
        if current != data:
            raise DefinitionWriteError(f"{os.fspath(path)} changed while it was being used; "
                                       "not overwriting it")
        atomic_write(path, with_genid(data, dom, new))
    except OSError as exc:
        raise DefinitionWriteError(f"cannot save the genid into {os.fspath(path)}: "
                                   f"{exc.strerror}") from None
