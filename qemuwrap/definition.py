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


# -- identity write-back -------------------------------------------------------------
def splice(data: bytes, edits: list[tuple[int, int, str]]) -> bytes:
    """``data`` with each byte range ``[start, end)`` replaced by its new text (UTF-8);
    ranges must not overlap (an insertion is ``start == end``)."""
    out, pos = [], 0
    for start, end, text in sorted(edits, key=lambda e: (e[0], e[1])):
        if start < pos:
            raise ValueError("overlapping edits")
        out += [data[pos:start], text.encode("utf-8")]
        pos = end
    out.append(data[pos:])
    return b"".join(out)


def _indent(data: bytes, offset: int) -> str:
    """The white space before ``offset`` on its line ('' if other text precedes it)."""
    line = data.rfind(b"\n", 0, offset) + 1
    lead = data[line:offset]
    return lead.decode("ascii") if lead.strip(b" \t") == b"" else ""


def _start_tag_end(data: bytes, start: int) -> int:
    """Offset just past the start tag beginning at ``start`` ('>' inside quoted attribute
    values skipped)."""
    quote = None
    for i in range(start + 1, len(data)):
        c = data[i:i + 1]
        if quote is not None:
            if c == quote:
                quote = None
        elif c in (b"'", b'"'):
            quote = c
        elif c == b">":
            return i + 1
    raise DefinitionWriteError("malformed start tag")


def identity_edits(data: bytes, dom: Domain) -> list[tuple[int, int, str]]:
    """The edits that store what this load made up or changed: a generated ``<uuid>``
    (after ``<name>``), generated MACs (first child of their ``<interface>``), and a
    ``<genid>`` that was generated or differs from the file's."""
    edits: list[tuple[int, int, str]] = []
    genid_node = dom.nodes.get("genid")
    if dom.genid_requested and genid_node is not None and dom.genid is not None:
        raw = data[genid_node.start:genid_node.end].decode("utf-8", "replace")
        inner = raw.split(">", 1)[1].rsplit("<", 1)[0] if not raw.endswith("/>") else ""
        if dom.genid_generated or guid.parse(inner) != dom.genid:
            edits.append((genid_node.start, genid_node.end,
                          f"<genid>{guid.format(dom.genid)}</genid>"))
    name_node = dom.nodes.get("name")
    if dom.uuid_generated and name_node is not None:
        indent = _indent(data, name_node.start)
        sep = "\n" + indent if indent else ""
        edits.append((name_node.end, name_node.end, f"{sep}<uuid>{dom.uuid_str}</uuid>"))
    for nic in dom.devices.interfaces:
        node = nic.node
        if not nic.mac_generated or node is None:
            continue
        mac = f"<mac address='{nic.mac}'/>"
        tag_end = _start_tag_end(data, node.start)
        indent = _indent(data, node.start)
        if data[tag_end - 2:tag_end] == b"/>":  # <interface .../>: open it up
            head = data[node.start:tag_end - 2].rstrip().decode("utf-8")
            inner = f"\n{indent}  {mac}\n{indent}" if indent else mac
            edits.append((node.start, tag_end, f"{head}>{inner}</interface>"))
        else:
            child_indent = (_indent(data, node.children[0].start) if node.children
                            else indent + "  ")
            sep = "\n" + child_indent if indent or child_indent else ""
            edits.append((tag_end, tag_end, f"{sep}{mac}"))
    return edits


def save_identity(path: str | os.PathLike, data: bytes, dom: Domain) -> bool:
    """Store the identity this load made up (uuid, MACs) or changed (genid) in the file
    ``dom`` was read from, in one atomic replace touching only those elements, so the
    next start is the same machine. False if there was nothing to store.

    Refuses if the file changed since it was read: a concurrent edit is not overwritten.
    """
    edits = identity_edits(data, dom)
    if not edits:
        return False
    try:
        with open(path, "rb") as f:
            current = f.read()
        if current != data:
            raise DefinitionWriteError(f"{os.fspath(path)} changed while it was being used; "
                                       "not overwriting it")
        atomic_write(path, splice(data, edits))
    except OSError as exc:
        raise DefinitionWriteError(f"cannot save the guest's identity into "
                                   f"{os.fspath(path)}: {exc.strerror}") from None
    return True
