"""``<smartcard>``: a CCID smartcard for the guest's USB CCID reader, emulated by QEMU
from the host's NSS database (``host``, ``host-certificates``) or passed through from
a remote client over a character device (``passthrough``)."""

from __future__ import annotations

from qemuwrap.conf.devices.chardev import CharDevice, CharType
from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import (
    Element,
    ParseContext,
    Path,
    Str,
    attr,
    children,
    text,
    text_child,
)

#: libvirt's VIR_DOMAIN_SMARTCARD_DEFAULT_DATABASE.
DEFAULT_DATABASE = "/etc/pki/nssdb"
#: The chardev name of a smartcard on a SPICE connection.
SPICEVMC_SMARTCARD = "smartcard"


class SmartcardMode(ValueSet):
    HOST = "host"
    HOST_CERTIFICATES = "host-certificates"
    PASSTHROUGH = "passthrough"


class Certificate(Element):
    """``<certificate>``: the NSS nickname of one of the card's three certificates."""

    TAG = "certificate"
    name: str = text(Str(empty=False, what="certificate name"), required=True)


class Smartcard(CharDevice):
    TAG = "smartcard"
    mode: SmartcardMode = attr(SmartcardMode, required=True)
    type: CharType | None = attr(CharType)  # type: ignore[assignment]
    certificates: list[Certificate] = children(Certificate)
    database: str | None = text_child("database", Path())

    def address_types(self) -> tuple[str, ...]:
        return ("ccid",)

    def check(self, ctx: ParseContext) -> None:
        if self.mode == SmartcardMode.PASSTHROUGH:
            if self.type is None:
                raise self.error("passthrough mode requires a character device type "
                                 "attribute")
            if self.certificates or self.database is not None:
                raise self.error("certificates are only for mode 'host-certificates'")
            if self.type == CharType.SPICEVMC and self.source is None:
                return
            super().check(ctx)
            return
        if self.type is not None or self.source is not None:
            raise self.error(f"mode '{self.mode}' takes no character device")
        if self.mode == SmartcardMode.HOST_CERTIFICATES:
            if len(self.certificates) != 3:
                raise self.error("host-certificates mode needs exactly three certificates")
        elif self.certificates or self.database is not None:
            raise self.error("certificates are only for mode 'host-certificates'")

    @property
    def certificate_names(self) -> list[str]:
        return [c.name for c in self.certificates]
