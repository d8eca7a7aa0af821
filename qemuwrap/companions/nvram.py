"""Each UEFI guest's own variable store (NVRAM), copied from the firmware's VARS template.

The file outlives every QEMU of the guest (boot entries, secure boot keys, ...), so it
lives in a persistent place, not in the runtime state directory: as root
``/var/lib/qemuwrap/nvram/NAME_VARS.fd`` (libvirt: ``/var/lib/libvirt/qemu/nvram``),
otherwise ``$XDG_DATA_HOME/qemuwrap/nvram`` (``~/.local/share`` by default). The
definition records it as libvirt does: ``<nvram template='TEMPLATE'>PATH</nvram>``.
It is made once, on the first start, and kept; ``clone`` copies it for the new guest.

No process here: :class:`Nvram` has the companion's ``prepare()`` (the file work) and
nothing to start or stop.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping

from qemuwrap.companions.storage import persistent_dir
from qemuwrap.errors import QemuwrapError


class NvramError(QemuwrapError):
    """The NVRAM file cannot be made or copied; the message starts with ``nvram:``."""


def nvram_dir(privileged: bool | None = None, environ: Mapping[str, str] | None = None) -> str:
    """Where NVRAM files live: ``/var/lib/qemuwrap/nvram`` or the user's data directory."""
    return persistent_dir("nvram", privileged, environ)


def default_path(name: str, fmt: str = "raw", privileged: bool | None = None,
                 environ: Mapping[str, str] | None = None) -> str:
    """The NVRAM path a definition without ``<nvram>`` gets: ``DIR/NAME_VARS.fd``
    (``.qcow2`` for a qcow2 template). ``name`` must already be a checked guest name."""
    suffix = "qcow2" if fmt == "qcow2" else "fd"
    return os.path.join(nvram_dir(privileged, environ), f"{name}_VARS.{suffix}")


def _copy_new(src: str, dst: str) -> None:
    """Copy ``src`` to ``dst``, which must not exist: written to a temp file beside it
    (mode 0600, fsync'd), then linked into place, so nobody sees half a file and two
    concurrent first starts cannot clobber each other (the loser's link fails, and the
    winner's complete file is used)."""
    directory = os.path.dirname(dst) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    import tempfile  # only when a guest starts: a dry run asks just for the path

    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(dst)}.")  # 0600
    try:
        with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            fout.flush()
            os.fsync(fout.fileno())
        try:
            os.link(tmp, dst)
        except FileExistsError:
            pass  # made by a concurrent start: theirs is as good as ours
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def ensure(path: str, template: str | None) -> bool:
    """Make the guest's NVRAM file from ``template`` unless it exists; True if made now.

    An existing file is kept whatever its size (the guest's variables live there). No
    file and no template is an error, as in libvirt."""
    if os.path.lexists(path):
        if not os.path.isfile(path):
            raise NvramError(f"nvram: {path} exists but is not a regular file")
        return False
    if template is None:
        raise NvramError(f"nvram: {path} does not exist and no template is known to make it "
                         "from (<nvram template=...>)")
    try:
        _copy_new(template, path)
    except OSError as exc:
        where = exc.filename or path
        raise NvramError(f"nvram: cannot copy {template} to {path}: {where}: "
                         f"{exc.strerror}") from None
    return True


def clone(src: str, dst: str) -> None:
    """Copy a guest's NVRAM for a new guest (``clone``); refuses to overwrite."""
    if os.path.lexists(dst):
        raise NvramError(f"nvram: {dst} already exists; not overwriting another guest's NVRAM")
    try:
        _copy_new(src, dst)
    except OSError as exc:
        where = exc.filename or src
        raise NvramError(f"nvram: cannot copy {src} to {dst}: {where}: {exc.strerror}") from None


class Nvram:
    """The NVRAM companion: only file work before QEMU starts."""

    name = "nvram"

    def __init__(self, path: str, template: str | None):
        self.path = path
        self.template = template
        self.created = False

    def prepare(self) -> None:
        """Copy the template on the guest's first start; keep the file afterwards."""
        self.created = ensure(self.path, self.template)
