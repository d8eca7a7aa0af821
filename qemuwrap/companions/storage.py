"""Where companions keep what belongs to a guest for good (NVRAM, TPM state): outside the
runtime state directory, which goes when the guest ends. As root ``/var/lib/qemuwrap/KIND``
(libvirt: ``/var/lib/libvirt/...``), otherwise ``$XDG_DATA_HOME/qemuwrap/KIND``
(``~/.local/share`` by default): the same system/session split as the state directory."""

from __future__ import annotations

import os
from collections.abc import Mapping

SYSTEM_ROOT = "/var/lib/qemuwrap"


def persistent_dir(kind: str, privileged: bool | None = None,
                   environ: Mapping[str, str] | None = None) -> str:
    """The directory for one kind of persistent state (``nvram``, ``swtpm``)."""
    env = os.environ if environ is None else environ
    if privileged is None:
        privileged = os.geteuid() == 0
    if privileged:
        return os.path.join(SYSTEM_ROOT, kind)
    data = env.get("XDG_DATA_HOME") or os.path.join(
        env.get("HOME") or os.path.expanduser("~"), ".local", "share")
    return os.path.join(data, "qemuwrap", kind)
