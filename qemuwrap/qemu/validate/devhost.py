"""What the network interfaces, character devices, host devices, vsock and ivshmem
servers (and, through ``uihost.py``, displays, inputs, sound and smartcards) of a
definition need from this host: devices, sockets, bridges and taps that
exist.  A host check (:func:`qemuwrap.qemu.validate.host.check_host` runs it in dry-run,
validate and start; ``--no-host-check`` skips it), not part of translation, so a golden
command is the same on every machine."""

from __future__ import annotations

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


def check_host_devices(dom: Domain) -> list[UnsupportedError]:
    """One refusal per missing host-side piece, in document order."""
    from qemuwrap.qemu.validate.chardev import host_chardevs
    from qemuwrap.qemu.validate.hostdev import host_hostdevs
    from qemuwrap.qemu.validate.misc import host_misc
    from qemuwrap.qemu.validate.net import host_nics
    from qemuwrap.qemu.validate.uihost import host_ui

    h = HostCheck(dom)
    for check in (host_nics, host_chardevs, host_hostdevs, host_misc, host_ui):
        check(h)
    return sorted(h.errors, key=lambda e: getattr(e, "line", 0))
