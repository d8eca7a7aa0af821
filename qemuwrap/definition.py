"""Writing a definition file back: atomically, in its own encoding, touching nothing but
what must change, and keeping what the file is.

Edits are ``(start, end, new_text)`` on the file's own bytes (the offsets the reader
gives each element); :func:`splice` writes the new text in the file's encoding and
checks the result decodes to exactly the intended text.  :func:`atomic_write` replaces
the file whole (a crash leaves the old or the new file, never a torn one) and keeps its
owner, group, mode and extended attributes (POSIX ACLs, SELinux labels); it refuses a
file the user marked read-only or could not write, a hard-linked file (a rename would
break the link), and writes through a symbolic link to its target, saying so.  The new
content is written to an unnamed ``O_TMPFILE`` and only linked in at the very end; a
temp name left by a kill in that last instant is removed by the next write.
"""

from __future__ import annotations

import contextlib
import os
import stat

from qemuwrap.conf import guid, untrusted
from qemuwrap.conf.domain import Domain
from qemuwrap.errors import QemuwrapError, XMLError

#: (start, end, new_text): replace the file's bytes [start, end) by new_text.
Edit = tuple[int, int, str]

#: ioctl FS_IOC_GETFLAGS and the inode flags that forbid a rewrite (linux/fs.h).
_FS_IOC_GETFLAGS = 0x80086601
_FS_IMMUTABLE_FL = 0x10
_FS_APPEND_FL = 0x20
_TEMP_MARK = ".qemuwrap-"
#: Temp names of versions before O_TMPFILE (".NAME.<12 hex>.tmp"): removed when this old.
_OLD_TEMP_AGE = 600.0


class DefinitionWriteError(QemuwrapError):
    """The definition file could not be updated (nothing was changed)."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


# --------------------------------------------------------------------------- splicing


def splice(data: bytes, edits) -> bytes:
    """``data`` with each edit applied, new text encoded as the file is.

    Refuses (DefinitionWriteError) a stateful encoding (ISO-2022-*, where bytes depend
    on what came before), offsets that are not on character boundaries, and overlapping
    edits.  Characters the encoding cannot hold are written as character references.
    """
    try:
        doc = untrusted.decode(data)
    except XMLError as exc:
        raise DefinitionWriteError(f"cannot edit the file: {exc}") from None
    ordered = sorted(edits)
    if not ordered:
        return data
    if doc.stateful:
        raise DefinitionWriteError(
            f"cannot edit a {doc.name} file in place (its bytes depend on what comes "
            "before them); save it as UTF-8")
    codec, bom = doc.codec, doc.bom
    pieces, expected = [data[:bom]], []
    pos = bom
    try:
        for start, end, text in ordered:
            if not bom <= pos <= start <= end <= len(data):
                raise DefinitionWriteError(f"edit {start}..{end} overlaps another or lies "
                                           "outside the file")
            new = untrusted.encode_text(doc, text)
            pieces += [data[pos:start], new]
            expected += [data[pos:start].decode(codec), data[start:end].decode(codec),
                         new.decode(codec)]
            expected.pop(-2)  # decoded only to prove the replaced bytes are whole characters
            pos = end
        pieces.append(data[pos:])
        expected.append(data[pos:].decode(codec))
        result = b"".join(pieces)
        if result[bom:].decode(codec) != "".join(expected):
            raise UnicodeError("the edited file does not decode to the edited text")
    except UnicodeError as exc:
        raise DefinitionWriteError(f"cannot edit the {doc.name} file in place: {exc}") \
            from None
    return result


def with_genid(data: bytes, dom: Domain, new: bytes) -> bytes:
    """``data`` (the file ``dom`` was read from) with its ``<genid>`` set to ``new``."""
    node = dom.nodes.get("genid")
    if node is None:
        raise DefinitionWriteError("the definition has no <genid> element")
    return splice(data, [(node.start, node.end, f"<genid>{guid.format(new)}</genid>")])


def save_genid(path: str | os.PathLike, data: bytes, dom: Domain, new: bytes | None = None) \
        -> str | None:
    """Store ``new`` (default: the domain's current genid) in the file ``dom`` came from;
    returns a note for the user (the file was a symbolic link), or None.

    Refuses if the file changed since it was read: a concurrent edit is not overwritten.
    """
    new = dom.genid if new is None else new
    if new is None:
        raise DefinitionWriteError("the definition has no genid to save")
    shown = os.fspath(path)
    try:
        current = untrusted.read_bytes(path)
    except XMLError as exc:
        raise DefinitionWriteError(f"cannot save the genid into {shown}: {exc}") from None
    if current != data:
        raise DefinitionWriteError(f"{shown} changed while it was being used; "
                                   "not overwriting it")
    try:
        return atomic_write(path, with_genid(data, dom, new))
    except DefinitionWriteError as exc:
        raise DefinitionWriteError(f"cannot save the genid into {shown}: {exc.reason}",
                                   exc.reason) from None


# --------------------------------------------------------------------------- writing


def atomic_write(path: str | os.PathLike, data: bytes, *, mode: int | None = None,
                 follow_symlinks: bool = True) -> str | None:
    """Replace the file at ``path`` with ``data``, atomically; returns a note for the
    user (written through a symbolic link), or None.

    An existing file keeps owner, group, mode (unless ``mode`` is given) and extended
    attributes.  ``follow_symlinks=False`` replaces a symbolic link itself, never its
    target (for directories only qemuwrap writes).  Raises DefinitionWriteError, with
    nothing changed, when the file could not be written as it is.
    """
    path = os.fspath(path)
    target, note = path, None
    if follow_symlinks and os.path.islink(path):
        target = os.path.realpath(path)
        note = f"{path} is a symbolic link: wrote its target {target}"
    directory, base = os.path.split(os.path.abspath(target))
    try:
        old = os.lstat(target)
    except FileNotFoundError:
        old = None
    except OSError as exc:
        raise _failed(target, exc.strerror) from None
    if old is not None and stat.S_ISLNK(old.st_mode):
        old = None  # follow_symlinks=False: the link itself is replaced
    if old is not None:
        _check_replaceable(target, old)
    _check_directory(directory)
    _remove_stale_temps(directory, base)
    try:
        fd, temp = _create_temp(directory, base)
    except OSError as exc:
        raise _failed(target, f"cannot create a file in {directory}: {exc.strerror}") \
            from None
    try:
        try:
            _write_all(fd, data)
            if old is not None:
                _copy_identity(target, old, fd, mode)
            else:
                os.fchmod(fd, 0o644 if mode is None else mode)
            os.fsync(fd)
            if temp is None:  # O_TMPFILE: give it a name only now
                temp = os.path.join(directory, _temp_name(base))
                _link_unnamed(fd, temp)
            os.rename(temp, target)
            temp = None
        except OSError as exc:
            raise _failed(target, exc.strerror) from None
    finally:
        os.close(fd)
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)
    with contextlib.suppress(OSError):  # make the rename durable; best effort
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return note


def _link_unnamed(fd: int, name: str) -> None:
    """linkat(2) of an O_TMPFILE file through /proc/self/fd with AT_SYMLINK_FOLLOW.  A
    ``src_dir_fd`` makes Python call linkat(); plain os.link() calls link(), which
    would link the /proc magic link itself (EXDEV)."""
    proc = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.link(str(fd), name, src_dir_fd=proc, follow_symlinks=True)
    finally:
        os.close(proc)


def _failed(path: str, reason: str | None) -> DefinitionWriteError:
    reason = reason or "unknown error"
    return DefinitionWriteError(f"cannot write {path}: {reason}", reason)


def _check_replaceable(path: str, st: os.stat_result) -> None:
    """Refuse what a user marked read-only or could not write, and what a rename would
    change: hard links (the other names would keep the old content)."""
    if not stat.S_ISREG(st.st_mode):
        raise _failed(path, "not a regular file")
    if st.st_nlink > 1:
        raise _failed(path, f"it has {st.st_nlink} hard links, which replacing it would "
                            "break")
    flags = _inode_flags(path)
    if flags & _FS_IMMUTABLE_FL:
        raise _failed(path, "it is immutable (chattr +i)")
    if flags & _FS_APPEND_FL:
        raise _failed(path, "it is append-only (chattr +a)")
    euid = os.geteuid()
    if euid == 0:
        # root may write anything: respect the user's read-only marking instead.
        if not st.st_mode & 0o222:
            raise _failed(path, f"it is read-only (mode {stat.S_IMODE(st.st_mode):04o})")
        return
    if not os.access(path, os.W_OK):
        raise _failed(path, f"you may not write it (mode {stat.S_IMODE(st.st_mode):04o}, "
                            f"owner uid {st.st_uid}, or its ACL)")
    if st.st_uid != euid:
        raise _failed(path, f"it belongs to uid {st.st_uid}: replacing it as uid {euid} "
                            "would change its owner")


def _inode_flags(path: str) -> int:
    """The file's inode flags, or 0 where the file system has none."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
                     | os.O_NOFOLLOW)
    except OSError:
        return 0
    try:
        buf = fcntl.ioctl(fd, _FS_IOC_GETFLAGS, b"\0" * 8)
    except OSError:
        return 0
    finally:
        os.close(fd)
    return int.from_bytes(buf[:4], "little")


def _check_directory(directory: str) -> None:
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            raise _failed(directory, "it is on a read-only file system")
    except OSError as exc:
        raise _failed(directory, exc.strerror) from None
    if os.geteuid() != 0 and not os.access(directory, os.W_OK | os.X_OK):
        raise _failed(directory, "you may not create files in this directory (the "
                                 "file is replaced through a new file beside it)")


def _temp_name(base: str) -> str:
    return f".{base}{_TEMP_MARK}{os.getpid()}-{os.urandom(4).hex()}.tmp"


def _create_temp(directory: str, base: str) -> tuple[int, str | None]:
    """An unnamed file in ``directory`` (O_TMPFILE), or a named one where the file
    system has no O_TMPFILE; (fd, name or None)."""
    flags = os.O_WRONLY | os.O_CLOEXEC
    tmpfile = getattr(os, "O_TMPFILE", 0)
    if tmpfile and os.path.isdir("/proc/self/fd"):
        try:
            return os.open(directory, flags | tmpfile, 0o600), None
        except OSError as exc:
            if exc.errno not in (95, 21, 22):  # EOPNOTSUPP, EISDIR, EINVAL: no O_TMPFILE
                raise
    temp = os.path.join(directory, _temp_name(base))
    return os.open(temp, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), temp


def _remove_stale_temps(directory: str, base: str) -> None:
    """Temp files of this target that a killed writer left: those of a dead process,
    and old ones of versions that named them without a pid (".NAME.<12 hex>.tmp")."""
    prefix = f".{base}."
    try:
        names = [n for n in os.listdir(directory) if n.startswith(prefix) and
                 n.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        middle = name[len(prefix) - 1:-len(".tmp")]
        if middle.startswith(_TEMP_MARK):
            pid = middle[len(_TEMP_MARK):].partition("-")[0]
            stale = pid.isdigit() and not _alive(int(pid))
        else:
            stale = len(middle) == 13 and _is_hex(middle[1:]) and \
                _age(os.path.join(directory, name)) > _OLD_TEMP_AGE
        if stale:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))


def _age(path: str) -> float:
    import time

    try:
        return time.time() - os.lstat(path).st_mtime
    except OSError:
        return 0.0


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _copy_identity(path: str, old: os.stat_result, fd: int, mode: int | None) -> None:
    """Give the new file the old one's owner, group, mode and extended attributes."""
    if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.fchown(fd, old.st_uid, old.st_gid)
        except PermissionError:
            raise _failed(path, f"cannot keep its group (gid {old.st_gid})") from None
    os.fchmod(fd, stat.S_IMODE(old.st_mode) if mode is None else mode)
    try:
        names = os.listxattr(path)
    except OSError as exc:
        if exc.errno in (95, 61):  # EOPNOTSUPP, ENODATA: no extended attributes here
            return
        raise
    for name in names:
        try:
            os.setxattr(fd, name, os.getxattr(path, name))
        except OSError as exc:
            raise _failed(path, f"cannot keep its extended attribute {name}: "
                                f"{exc.strerror}") from None


# --------------------------------------------------------------------------- identity


def _indent(data: bytes, offset: int, doc: untrusted.Document) -> str:
    """The white space before ``offset`` on its line ('' if other text precedes it, or
    in an encoding whose newline is not the byte 0x0A)."""
    if doc.codec.startswith(("utf-16", "utf-32")):
        return ""  # new elements go inline: correct, if not pretty
    line = data.rfind(b"\n", 0, offset) + 1
    lead = data[line:offset]
    return lead.decode("ascii") if lead.strip(b" \t") == b"" else ""


def _start_tag_end(data: bytes, start: int, doc: untrusted.Document) -> int:
    """Offset just past the start tag beginning at ``start`` ('>' inside quoted attribute
    values skipped), in the file's own encoding."""
    width = 1
    if doc.codec.startswith("utf-16"):
        width = 2
    elif doc.codec.startswith("utf-32"):
        width = 4
    quote = None
    for i in range(start + width, len(data), width):
        c = data[i:i + width].decode(doc.codec, "replace")
        if quote is not None:
            if c == quote:
                quote = None
        elif c in ("'", '"'):
            quote = c
        elif c == ">":
            return i + width
    raise DefinitionWriteError("malformed start tag")


def identity_edits(data: bytes, dom: Domain) -> list[tuple[int, int, str]]:
    """The edits that store what this load made up or changed: a generated ``<uuid>``
    (after ``<name>``), generated MACs (first child of their ``<interface>``), and a
    ``<genid>`` that was generated or differs from the file's."""
    try:
        doc = untrusted.decode(data)
    except XMLError as exc:
        raise DefinitionWriteError(f"cannot edit the file: {exc}") from None
    edits: list[tuple[int, int, str]] = []
    genid_node = dom.nodes.get("genid")
    if dom.genid_requested and genid_node is not None and dom.genid is not None:
        if dom.genid_generated or guid.parse(genid_node.text) != dom.genid:
            edits.append((genid_node.start, genid_node.end,
                          f"<genid>{guid.format(dom.genid)}</genid>"))
    name_node = dom.nodes.get("name")
    if dom.uuid_generated and name_node is not None:
        indent = _indent(data, name_node.start, doc)
        sep = "\n" + indent if indent else ""
        edits.append((name_node.end, name_node.end, f"{sep}<uuid>{dom.uuid_str}</uuid>"))
    for nic in dom.devices.interfaces:
        node = nic.node
        if not nic.mac_generated or node is None:
            continue
        mac = f"<mac address='{nic.mac}'/>"
        tag_end = _start_tag_end(data, node.start, doc)
        indent = _indent(data, node.start, doc)
        if not node.children and node.end == tag_end and \
                data[node.start:tag_end].decode(doc.codec).endswith("/>"):
            head = data[node.start:tag_end].decode(doc.codec)[:-2].rstrip()
            inner = f"\n{indent}  {mac}\n{indent}" if indent else mac
            edits.append((node.start, tag_end, f"{head}>{inner}</interface>"))
        else:
            child_indent = (_indent(data, node.children[0].start, doc) if node.children
                            else indent + "  ")
            sep = "\n" + child_indent if indent or child_indent else ""
            edits.append((tag_end, tag_end, f"{sep}{mac}"))
    return edits


def save_identity(path: str | os.PathLike, data: bytes, dom: Domain,
                  notes: list[str] | None = None) -> bool:
    """Store the identity this load made up (uuid, MACs) or changed (genid) in the file
    ``dom`` was read from, in one atomic replace touching only those elements, so the
    next start is the same machine.  False if nothing needed storing; a note for the user
    (the file was a symbolic link) goes to ``notes``.

    Refuses if the file changed since it was read: a concurrent edit is not overwritten.
    """
    edits = identity_edits(data, dom)
    if not edits:
        return False
    shown = os.fspath(path)
    try:
        current = untrusted.read_bytes(path)
    except XMLError as exc:
        raise DefinitionWriteError(f"cannot save the guest's identity into {shown}: "
                                   f"{exc}") from None
    if current != data:
        raise DefinitionWriteError(f"{shown} changed while it was being used; "
                                   "not overwriting it")
    try:
        note = atomic_write(path, splice(data, edits))
    except DefinitionWriteError as exc:
        raise DefinitionWriteError(f"cannot save the guest's identity into {shown}: "
                                   f"{exc.reason}", exc.reason) from None
    if note is not None and notes is not None:
        notes.append(note)
    return True
