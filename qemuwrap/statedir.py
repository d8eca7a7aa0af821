"""Where a guest's runtime files live, and the checks that keep that place ours.

The state root is ``--state-dir`` / ``$QEMUWRAP_STATE_DIR``, else ``/run/qemuwrap`` as
root, else ``$XDG_RUNTIME_DIR/qemuwrap``, else ``/tmp/qemuwrap-UID``. ``/tmp`` is
shared with every local user, who could create that name first and wait for our
supervisor to write logs through their symlinks or answer on their sockets; so
before every use the root and each guest directory are checked (:func:`verify_dir`):
a real directory (not a symlink), owned by us, reachable by nobody else (mode 0700,
which we set on a directory of our own, whatever it had). Anything else is refused.

Plain ``os`` only: the dry run computes a guest's paths through this module.
"""

from __future__ import annotations

import os
import stat

from qemuwrap.errors import QemuwrapError, printable

#: Linux's NAME_MAX: a guest name is one directory entry.
NAME_MAX = 255
#: sockaddr_un.sun_path holds 108 bytes with the final NUL.
SOCKET_PATH_MAX = 107
#: The longest file name qemuwrap puts in a guest directory's sockets.
LONGEST_SOCKET_NAME = "supervisor.sock"


class StateDirError(QemuwrapError):
    """The state root or a guest directory is not a place we can trust or use."""


def state_root(override: str | None = None) -> str:
    """``--state-dir`` / ``$QEMUWRAP_STATE_DIR``, else /run/qemuwrap as root, else
    ``$XDG_RUNTIME_DIR/qemuwrap`` (libvirt's system vs session split), else a per-user
    directory in /tmp (checked before use: see the module's docstring)."""
    chosen = override or os.environ.get("QEMUWRAP_STATE_DIR")
    if chosen:
        return os.path.abspath(chosen)
    if os.geteuid() == 0:
        return "/run/qemuwrap"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "qemuwrap")
    return f"/tmp/qemuwrap-{os.geteuid()}"


def check_name(name: str) -> str:
    """A guest name becomes a directory name: no '/', no '.'/'..', no control
    characters, at most 255 bytes (NAME_MAX)."""
    if not name or name in (".", "..") or "/" in name or ".." in name \
            or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise QemuwrapError(f"guest name '{printable(name)}' cannot be used as a directory "
                            "name (no '/', '..' or control characters)")
    size = len(name.encode("utf-8", "surrogateescape"))
    if size > NAME_MAX:
        raise QemuwrapError(f"guest name '{printable(name[:40])}...' is {size} bytes long; "
                            f"a directory name holds at most {NAME_MAX}")
    return name


def guest_dir(name: str, override: str | None = None) -> str:
    """The state directory of guest ``name`` (a plain str: no pathlib on the dry-run path)."""
    return os.path.join(state_root(override), check_name(name))


def check_socket_paths(path: str) -> None:
    """The sockets in guest directory ``path`` must fit in a sockaddr_un."""
    longest = os.path.join(path, LONGEST_SOCKET_NAME)
    size = len(longest.encode("utf-8", "surrogateescape"))
    if size > SOCKET_PATH_MAX:
        raise StateDirError(f"the guest's socket path {printable(longest)} is {size} bytes "
                            f"long; a UNIX socket path holds at most {SOCKET_PATH_MAX} "
                            "(use a shorter guest name or --state-dir)")


def verify_dir(path: str, *, create: bool, what: str = "state directory") -> os.stat_result:
    """Make sure ``path`` is a directory only we can use; create it (0700) if asked.

    Refused: a symlink, something else than a directory, a directory another user
    owns. A directory we own gets mode 0700 whatever it had (as root too: a
    pre-created /run/qemuwrap/NAME with 0755 would show the serial log to everyone).
    """
    uid = os.geteuid()
    for _attempt in range(3):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if not create:
                raise
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                continue  # someone made it meanwhile: check what they made
            except OSError as exc:
                raise StateDirError(f"cannot create the {what} {printable(path)}: "
                                    f"{exc.strerror}") from None
            continue
        except NotADirectoryError:
            raise StateDirError(f"the {what} {printable(path)} is not a directory (a parent "
                                "of it is a file)") from None
        except OSError as exc:
            raise StateDirError(f"cannot use the {what} {printable(path)}: "
                                f"{exc.strerror}") from None
        if stat.S_ISLNK(st.st_mode):
            raise StateDirError(f"the {what} {printable(path)} is a symbolic link; refusing "
                                "to use it")
        if not stat.S_ISDIR(st.st_mode):
            raise StateDirError(f"the {what} {printable(path)} is not a directory")
        if st.st_uid != uid:
            raise StateDirError(f"the {what} {printable(path)} belongs to uid {st.st_uid}, "
                                f"not to us (uid {uid}); refusing to use it")
        if st.st_mode & 0o077:
            try:
                os.chmod(path, 0o700, follow_symlinks=False)
            except OSError as exc:
                raise StateDirError(f"cannot make the {what} {printable(path)} private: "
                                    f"{exc.strerror}") from None
            st = os.lstat(path)
        return st
    raise StateDirError(f"the {what} {printable(path)} keeps changing; refusing to use it")


def open_dir(path: str, expected: os.stat_result) -> int:
    """An fd of the directory checked as ``expected`` (the same inode, not swapped)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise StateDirError(f"cannot open {printable(path)}: {exc.strerror}") from None
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (expected.st_dev, expected.st_ino):
        os.close(fd)
        raise StateDirError(f"{printable(path)} was replaced while it was checked")
    return fd


def secure_root(override: str | None = None, *, create: bool = True) -> str:
    """The state root, checked (and made, 0700, when ``create``)."""
    root = state_root(override)
    parent = os.path.dirname(root)
    if create and not os.path.isdir(parent):
        try:
            os.makedirs(parent, 0o755, exist_ok=True)
        except OSError as exc:
            raise StateDirError(f"cannot create {printable(parent)}: {exc.strerror}") \
                from None
    verify_dir(root, create=create, what="state root")
    return root
