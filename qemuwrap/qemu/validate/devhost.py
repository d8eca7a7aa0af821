"""What the network interfaces, character devices, host devices, a passthrough TPM,
vsock and ivshmem servers (and, through ``uihost.py``, displays, inputs, sound and
smartcards) of a definition need from this host: devices, sockets, bridges and taps
that exist.  A host check (:func:`qemuwrap.qemu.validate.host.check_host` runs it in dry-run,
validate and start; ``--no-host-check`` skips it), not part of translation, so a golden
command is the same on every machine."""

from __future__ import annotations

import importlib

from qemuwrap.conf.domain import Domain
from qemuwrap.conf.xmlmodel import Element
from qemuwrap.errors import UnsupportedError
from qemuwrap.qemu.validate import refusal


class HostCheck:
    """The refusals of one host check (what the ``host_*`` functions are given)."""

    def __init__(self, dom: Domain):
        self.dom = dom
        self.errors: list[UnsupportedError] = []

    def refuse(self, where: Element | None, message: str) -> None:
        self.errors.append(refusal(where, message))


#: Each area's host check, in order, with the <devices> lists that give it work (none:
#: always run); an area the guest has no devices of is not imported.
AREAS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("net", "host_nics", ("interfaces",)),
    ("chardev", "host_chardevs", ("serials", "parallels", "channels", "consoles", "rngs")),
    ("hostdev", "host_hostdevs", ("interfaces", "hostdevs")),
    ("misc", "host_misc", ("vsock", "shmems")),
    ("companion_devices", "host_tpms", ("tpms",)),
    ("uihost", "host_ui", ()))


def check_host_devices(dom: Domain) -> list[UnsupportedError]:
    """One refusal per missing host-side piece, in document order."""
    h = HostCheck(dom)
    devs = dom.devices
    for area, name, kinds in AREAS:
        if not kinds or any(getattr(devs, kind) for kind in kinds):
            getattr(importlib.import_module(f"qemuwrap.qemu.validate.{area}"), name)(h)
    return sorted(h.errors, key=lambda e: getattr(e, "line", 0))
