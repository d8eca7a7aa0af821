"""``<redirdev>``: a USB device of a remote client redirected into the guest (usbredir
over a SPICE channel, a D-Bus display, or a TCP/UNIX socket), and ``<redirfilter>``:
which devices the guest accepts.

The host end is a character device source, modelled by ``chardev.CharDevice``.
"""

from __future__ import annotations

from qemuwrap.conf.devices.chardev import CharDevice, CharType
from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import (
    YES_NO,
    Element,
    Kind,
    KindError,
    ParseContext,
    _pattern,
    attr,
    children,
)
from qemuwrap.conf.xmlreader import to_int


class RedirdevBus(ValueSet):
    USB = "usb"


#: Character device types a usb-redir can use; others have no usbredir peer.
REDIRDEV_TYPES = frozenset({CharType.SPICEVMC, CharType.TCP, CharType.UNIX, CharType.DBUS})
#: The chardev name usbredir uses on a SPICE connection and on a D-Bus display.
SPICEVMC_USBREDIR = "usbredir"
DBUS_USBREDIR = "org.qemu.usbredir"


class Redirdev(CharDevice):
    TAG = "redirdev"
    bus: RedirdevBus = attr(RedirdevBus, default=RedirdevBus.USB)

    def address_types(self) -> tuple[str, ...]:
        return ("usb",)

    def check(self, ctx: ParseContext) -> None:
        if self.type not in REDIRDEV_TYPES:
            names = ", ".join(f"'{t}'" for t in sorted(REDIRDEV_TYPES))
            raise self.error(f"unsupported redirdev type '{self.type}' (supported: {names})")
        if self.type in (CharType.SPICEVMC, CharType.DBUS) and self.source is None:
            return  # the channel of the SPICE or D-Bus connection: nothing on the host
        super().check(ctx)


class USBId(Kind[int]):
    """A USB class/vendor/product filter value: ``-1`` (any) or C's strtol base 0."""

    def __init__(self, maximum: int, digits: int):
        self.maximum = maximum
        self.digits = digits

    def parse(self, raw: str, name: str) -> int:
        if raw == "-1":
            return -1
        return to_int(raw, f"attribute '{name}'", 0, self.maximum, 0)

    def format(self, value: int) -> str:
        return "-1" if value < 0 else f"0x{value:0{self.digits}X}"

    def rng(self, text: bool = False) -> str:
        return _pattern("-1|0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*", text)


class USBVersion(Kind[int]):
    """``-1`` or ``MAJOR.MINOR`` (``1.1`` is 1.10), kept as USB's BCD (0x0110)."""

    def parse(self, raw: str, name: str) -> int:
        if raw == "-1":
            return -1
        major, dot, minor = raw.partition(".")
        if not (dot and major.isdigit() and minor.isdigit() and major.isascii()
                and minor.isascii()) or int(major) >= 100 or int(minor) >= 100:
            raise KindError(f"Cannot parse USB device version {raw}")
        lo = int(minor) * 10 if len(minor) == 1 else int(minor)
        hi = int(major)
        return (hi // 10) << 12 | (hi % 10) << 8 | (lo // 10) << 4 | (lo % 10)

    def format(self, value: int) -> str:
        if value < 0:
            return "-1"
        major = ((value >> 12) & 0xF) * 10 + ((value >> 8) & 0xF)
        minor = ((value >> 4) & 0xF) * 10 + (value & 0xF)
        return f"{major}.{minor:02d}"

    def rng(self, text: bool = False) -> str:
        return _pattern(r"-1|[0-9]{1,2}\.[0-9]{1,2}", text)


class USBDevFilter(Element):
    """``<usbdev>``: one rule; the first rule that matches a device decides."""

    TAG = "usbdev"
    usb_class: int = attr(USBId(0xFF, 2), xml="class", default=-1)
    vendor: int = attr(USBId(0xFFFF, 4), default=-1)
    product: int = attr(USBId(0xFFFF, 4), default=-1)
    version: int = attr(USBVersion(), default=-1)
    allow: bool = attr(YES_NO, required=True)

    def filter_rule(self) -> str:
        """One rule of usb-redir's ``filter=`` (qemuBuildRedirdevDevProps)."""
        parts = [f"0x{self.usb_class:02X}" if self.usb_class >= 0 else "-1"]
        for value in (self.vendor, self.product, self.version):
            parts.append(f"0x{value:04X}" if value >= 0 else "-1")
        return ":".join(parts) + f":{int(self.allow)}"


class Redirfilter(Element):
    TAG = "redirfilter"
    usbdevs: list[USBDevFilter] = children(USBDevFilter)

    def filter_string(self) -> str | None:
        if not self.usbdevs:
            return None
        return "|".join(rule.filter_rule() for rule in self.usbdevs)
