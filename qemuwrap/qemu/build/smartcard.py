"""Smartcards in the CCID reader (libvirt's qemuBuildSmartcardCommandLine)."""

from __future__ import annotations

from qemuwrap.conf.devices.address import CCIDAddress
from qemuwrap.conf.devices.chardev import CharType
from qemuwrap.conf.devices.controller import ControllerType
from qemuwrap.conf.devices.smartcard import (
    DEFAULT_DATABASE,
    SPICEVMC_SMARTCARD,
    Smartcard,
    SmartcardMode,
)
from qemuwrap.conf.xmlmodel import table
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext
from qemuwrap.qemu.build.chardev import chardev

SMARTCARD_DEVICES = table(SmartcardMode, {
    SmartcardMode.HOST: "ccid-card-emulated",
    SmartcardMode.HOST_CERTIFICATES: "ccid-card-emulated",
    SmartcardMode.PASSTHROUGH: "ccid-card-passthru"})


def ccid_bus(ctx: BuildContext, card: Smartcard) -> str:
    """``ALIAS.0`` of the CCID controller the card's address names (``ccid0.0``)."""
    index = card.address.controller if isinstance(card.address, CCIDAddress) else 0
    for ctrl in ctx.dom.devices.controllers:
        if ctrl.type == ControllerType.CCID and ctrl.index == index and ctrl.alias_name:
            return f"{ctrl.alias_name}.0"
    return f"ccid{index}.0"


def build_smartcards(ctx: BuildContext) -> None:
    """Only the first card: QEMU has one slot per reader (validation refuses more)."""
    cards = ctx.dom.devices.smartcards
    if not cards:
        return
    card = cards[0]
    props: dict[str, object] = {}
    if card.mode == SmartcardMode.HOST:
        props["backend"] = "nss-emulated"
    elif card.mode == SmartcardMode.HOST_CERTIFICATES:
        certs = card.certificate_names
        props.update(backend="certificates", cert1=certs[0], cert2=certs[1],
                     cert3=certs[2], db=card.database or DEFAULT_DATABASE)
    else:
        chr_id = f"char{card.alias_name}"
        if card.type == CharType.SPICEVMC:
            ctx.cmd.add("-chardev", optstr("spicevmc", id=chr_id, name=SPICEVMC_SMARTCARD),
                        card.node)
        else:
            chardev(ctx, chr_id, card, card.node)
        props["chardev"] = chr_id
    ctx.cmd.add("-device", optstr(SMARTCARD_DEVICES[card.mode], **props, id=card.alias_name,
                                  bus=ccid_bus(ctx, card)), card.node)
