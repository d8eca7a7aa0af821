"""Checks of USB hubs, redirected USB devices and smartcards (libvirt's
qemuValidateDomainDeviceDefHub, ...RedirdevDef, ...SmartcardDef)."""

from __future__ import annotations

from qemuwrap.conf.devices.address import CCIDAddress
from qemuwrap.conf.devices.chardev import CharType
from qemuwrap.conf.devices.controller import ControllerType
from qemuwrap.conf.devices.graphics import GraphicsType
from qemuwrap.conf.devices.smartcard import SmartcardMode
from qemuwrap.hints import TYPE_CHECKING
from qemuwrap.qemu.build.smartcard import SMARTCARD_DEVICES
from qemuwrap.qemu.validate import has_usb

if TYPE_CHECKING:
    from qemuwrap.qemu.validate import Validation


def _chardev_needs_display(v: Validation, where, chr_type: CharType | None) -> None:
    gtypes = {g.type for g in v.dom.devices.graphics}
    if chr_type == CharType.SPICEVMC and GraphicsType.SPICE not in gtypes:
        v.refuse(where, "chardev 'spicevmc' not supported without spice graphics")
    elif chr_type == CharType.DBUS and GraphicsType.DBUS not in gtypes:
        v.refuse(where, "chardev 'dbus' not supported without dbus graphics")


def check_hubs(v: Validation) -> None:
    for hub in v.dom.devices.hubs:
        if not has_usb(v):
            v.refuse(hub, "Can't add USB hub: USB is disabled for this domain")
        else:
            v.require_device("usb-hub", hub)


def check_redirdevs(v: Validation) -> None:
    devs = v.dom.devices
    for dev in devs.redirdevs:
        if not has_usb(v):
            v.refuse(dev, "cannot add redirected USB device: USB is disabled for this "
                          "domain")
            continue
        if v.require_device("usb-redir", dev):
            _chardev_needs_display(v, dev, dev.type)


def check_smartcards(v: Validation) -> None:
    cards = v.dom.devices.smartcards
    ccids = {c.index for c in v.dom.devices.controllers if c.type == ControllerType.CCID}
    for n, card in enumerate(cards):
        addr = card.address
        if n > 0 or (isinstance(addr, CCIDAddress) and (addr.controller, addr.slot) != (0, 0)):
            v.refuse(card, "this QEMU binary lacks multiple smartcard support (one card, in "
                           "slot 0 of CCID controller 0)")
            continue
        if not v.require_device(SMARTCARD_DEVICES[card.mode], card):
            continue
        controller = addr.controller if isinstance(addr, CCIDAddress) else 0
        if controller not in ccids:
            v.refuse(card, f"a smartcard needs <controller type='ccid' index='{controller}'/>")
            continue
        if card.mode == SmartcardMode.PASSTHROUGH:
            _chardev_needs_display(v, card, card.type)


CHECKS = [check_hubs, check_redirdevs, check_smartcards]
