"""What this QEMU binary and machine type can give a definition (libvirt's qemu_validate.c).

Every refusal is one line that names the element and the reason, found before QEMU runs:
a guest never starts without something its XML asked for, and QEMU never fails later on
an option we could have judged here.  All refusals are collected in one pass (one line
each, in document order), so a user fixes a definition in one round.  The builders in
``qemu/build`` never refuse: they may assume everything checked here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from qemuwrap.conf.devices.controller import ControllerModel, ControllerType
from qemuwrap.conf.domain import Domain
from qemuwrap.conf.xmlmodel import Element
from qemuwrap.conf.xmlreader import Node
from qemuwrap.errors import Problems, UnsupportedError
from qemuwrap.qemu.capabilities import Capabilities
from qemuwrap.qemu.validate.machine import (
    X86_ARCHES,
    MachineType,
    classify_machine,
    resolve_machine,
)


class Validation:
    """One validation pass: the definition, what the binary offers, the refusals so far."""

    def __init__(self, dom: Domain, caps: Capabilities, machine: MachineType):
        self.dom = dom
        self.caps = caps
        self.machine = machine
        self.errors: list[UnsupportedError] = []

    @property
    def q35(self) -> bool:
        return self.machine.family == "q35"

    def refuse(self, where: Element | Node | None, message: str) -> None:
        self.errors.append(refusal(where, message))

    def require_device(self, name: str, where: Element | Node | None) -> bool:
        """Refuse (and say False) unless the binary has device ``name``."""
        if self.caps.has_device(name):
            return True
        self.refuse(where, f"{self.caps.emulator} has no '{name}' device")
        return False


def has_usb(v: Validation) -> bool:
    """Whether the guest has a USB bus: a USB controller that is not model 'none'."""
    return any(c.type == ControllerType.USB and c.model != ControllerModel.NONE
               for c in v.dom.devices.controllers)


def refusal(where: Element | Node | None, message: str) -> UnsupportedError:
    """``line N: /path: message`` (or just the message for an element built in code)."""
    node = where.node if isinstance(where, Element) else where
    if node is None:
        tag = f"<{where.TAG}>: " if isinstance(where, Element) else ""
        err = UnsupportedError(tag + message)
        err.line = 0  # type: ignore[attr-defined]
        return err
    err = UnsupportedError(f"line {node.line}: {node.path}: {message}")
    err.line = node.line  # type: ignore[attr-defined]
    return err


Check = Callable[[Validation], None]

#: Every area's checks (``qemu/validate/AREA.py``'s CHECKS), in the order their messages
#: read best (then sorted by line), with the <devices> lists that give the area work
#: (none: always checked).  An area whose devices a guest does not have would find
#: nothing, and is not imported: a small definition loads a small part of the model.
AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("machine", ()), ("cpu", ()), ("memory", ()), ("platform", ()), ("disk", ("disks",)),
    ("companion_devices", ("tpms", "filesystems")), ("input", ("inputs",)),
    ("graphics", ("graphics",)), ("audio", ("audios",)), ("sound", ("sounds",)),
    ("video", ("videos",)),
    ("usb", ("hubs", "redirdevs", "smartcards")), ("controller", ()),
    ("net", ("interfaces",)), ("chardev", ("serials", "parallels", "channels", "consoles")),
    ("hostdev", ("hostdevs", "interfaces")), ("misc", ()))


def _checks(dom: Domain) -> list[Check]:
    """The checks of every area ``dom`` gives work, in AREAS' order."""
    devs = dom.devices
    out: list[Check] = []
    for area, kinds in AREAS:
        if not kinds or any(getattr(devs, kind) for kind in kinds):
            out += importlib.import_module(f"{__name__}.{area}").CHECKS
    return out


def validate(dom: Domain, caps: Capabilities) -> MachineType:
    """Check ``dom`` against ``caps``; raise every refusal at once; the machine type."""
    machine, early = resolve_machine(dom, caps)
    v = Validation(dom, caps, machine)
    v.errors.extend(early)
    if not early:
        for check in _checks(dom):
            check(v)
    if v.errors:
        v.errors.sort(key=lambda e: getattr(e, "line", 0))
        raise Problems.of(v.errors)
    return machine


__all__ = ["X86_ARCHES", "MachineType", "Validation", "classify_machine", "has_usb",
           "refusal", "resolve_machine", "validate"]
