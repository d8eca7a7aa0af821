"""``<sysinfo>``: SMBIOS tables the guest's firmware reports (type='smbios') and
fw_cfg entries (type='fwcfg')."""

from __future__ import annotations

import re

from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import (
    Element,
    ParseContext,
    Path,
    Str,
    attr,
    child,
    children,
    text,
)


class SysinfoType(ValueSet):
    SMBIOS = "smbios"
    FWCFG = "fwcfg"


class BiosEntryName(ValueSet):
    VENDOR = "vendor"
    VERSION = "version"
    DATE = "date"
    RELEASE = "release"


class SystemEntryName(ValueSet):
    MANUFACTURER = "manufacturer"
    PRODUCT = "product"
    VERSION = "version"
    SERIAL = "serial"
    UUID = "uuid"
    SKU = "sku"
    FAMILY = "family"


class BaseBoardEntryName(ValueSet):
    MANUFACTURER = "manufacturer"
    PRODUCT = "product"
    VERSION = "version"
    SERIAL = "serial"
    ASSET = "asset"
    LOCATION = "location"


class ChassisEntryName(ValueSet):
    MANUFACTURER = "manufacturer"
    VERSION = "version"
    SERIAL = "serial"
    ASSET = "asset"
    SKU = "sku"


#: SMBIOS strings: any text (QEMU's option escaping keeps them one value).
VALUE = Str(strip=False)


#: SMBIOS 2.3's BIOS release date: mm/dd/yy or mm/dd/yyyy (libvirt checks it so).
_BIOS_DATE = re.compile(r"(0[1-9]|1[0-2])/(0[1-9]|[12][0-9]|3[01])/([0-9]{2}|[0-9]{4})")


class BiosEntry(Element):
    TAG = "entry"
    name: BiosEntryName = attr(BiosEntryName, required=True)
    value: str = text(VALUE, required=True)

    def check(self, ctx: ParseContext) -> None:
        """libvirt's rule for the BIOS date: mm/dd/yy or mm/dd/yyyy (SMBIOS)."""
        if self.name == BiosEntryName.DATE and not _BIOS_DATE.fullmatch(self.value):
            raise self.error("Invalid BIOS 'date' format")


class SystemEntry(Element):
    TAG = "entry"
    name: SystemEntryName = attr(SystemEntryName, required=True)
    value: str = text(VALUE, required=True)


class BaseBoardEntry(Element):
    TAG = "entry"
    name: BaseBoardEntryName = attr(BaseBoardEntryName, required=True)
    value: str = text(VALUE, required=True)


class ChassisEntry(Element):
    TAG = "entry"
    name: ChassisEntryName = attr(ChassisEntryName, required=True)
    value: str = text(VALUE, required=True)


class OEMEntry(Element):
    TAG = "entry"
    value: str = text(VALUE, required=True)


class FwCfgEntry(Element):
    """``<entry name='opt/...' file='...'/>`` or ``<entry name='opt/...'>VALUE</entry>``."""

    TAG = "entry"
    name: str = attr(Str(r"[ -~]+", what="fw_cfg name"), required=True)
    file: str | None = attr(Path())
    value: str | None = text(VALUE)

    def check(self, ctx: ParseContext) -> None:
        if (self.file is None) == (self.value is None):
            raise self.error("a fw_cfg entry needs either a file or a value")
        if not self.name.startswith("opt/"):
            raise self.error(f"fw_cfg entry name '{self.name}' must start with 'opt/'")


class _Entries(Element):
    """A group of named entries; each name at most once."""

    def check(self, ctx: ParseContext) -> None:
        entries = self.entries  # type: ignore[attr-defined]
        if not entries:
            raise self.error(f"<{self.TAG}> needs at least one <entry>")
        seen: set[str] = set()
        for e in entries:
            name = getattr(e, "name", None)
            if name is not None:
                if name in seen:
                    ctx.record(e.error(f"entry '{name}' is given twice"))
                seen.add(name)

    def get(self, name: str) -> str | None:
        return next((e.value for e in self.entries  # type: ignore[attr-defined]
                     if e.name == name), None)


class SysinfoBios(_Entries):
    TAG = "bios"
    entries: list[BiosEntry] = children(BiosEntry)


class SysinfoSystem(_Entries):
    TAG = "system"
    entries: list[SystemEntry] = children(SystemEntry)


class SysinfoBaseBoard(_Entries):
    TAG = "baseBoard"
    entries: list[BaseBoardEntry] = children(BaseBoardEntry)


class SysinfoChassis(_Entries):
    TAG = "chassis"
    entries: list[ChassisEntry] = children(ChassisEntry)


class SysinfoOEMStrings(_Entries):
    TAG = "oemStrings"
    entries: list[OEMEntry] = children(OEMEntry)


class Sysinfo(Element):
    """One ``<sysinfo type=...>`` (a domain may have one of each type)."""

    TAG = "sysinfo"
    type: SysinfoType = attr(SysinfoType, required=True)
    bios: SysinfoBios | None = child(SysinfoBios)
    system: SysinfoSystem | None = child(SysinfoSystem)
    base_boards: list[SysinfoBaseBoard] = children(SysinfoBaseBoard)
    chassis: SysinfoChassis | None = child(SysinfoChassis)
    oem_strings: SysinfoOEMStrings | None = child(SysinfoOEMStrings)
    fw_cfgs: list[FwCfgEntry] = children(FwCfgEntry)

    def check(self, ctx: ParseContext) -> None:
        smbios = (self.bios, self.system, self.chassis, self.oem_strings)
        if self.type == SysinfoType.FWCFG:
            if any(smbios) or self.base_boards:
                raise self.error("<sysinfo type='fwcfg'> takes only <entry> elements")
        elif self.fw_cfgs:
            raise self.fw_cfgs[0].error("<entry> directly in <sysinfo> needs "
                                        "type='fwcfg'")
