"""Where a guest's runtime files live, and the check that keeps a name a single path part."""

from __future__ import annotations

import os

from qemuwrap.errors import QemuwrapError


def state_root(override: str | None = None) -> str:
    """``--state-dir`` / ``$QEMUWRAP_STATE_DIR``, else /run/qemuwrap as root, else
    ``$XDG_RUNTIME_DIR/qemuwrap`` (libvirt's system vs session split)."""
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
    """A guest name becomes a directory name: no '/', no '.'/'..', no control characters."""
    if not name or name in (".", "..") or "/" in name or ".." in name \
            or any(ord(c) < 32 or ord(c) == 127 for c in name) or len(name) > 200:
        raise QemuwrapError(f"guest name {name!r} cannot be used as a directory name "
                            "(no '/', '..' or control characters)")
    return name


def guest_dir(name: str, override: str | None = None) -> str:
    """The state directory of guest ``name`` (a plain str: no pathlib on the dry-run path)."""
    return os.path.join(state_root(override), check_name(name))
