"""Security-related domain elements: ``<seclabel>`` (SELinux/AppArmor/DAC labels),
``<keywrap>`` (s390), ``<launchSecurity>`` (SEV, s390 PV) and ``<idmap>`` (containers).

qemuwrap applies no security driver: labels are read and written back and
``--explain`` says they are not enforced; the rest is refused when a command is built.
"""

from __future__ import annotations

from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import (
    ON_OFF,
    YES_NO,
    Element,
    Int,
    ParseContext,
    Str,
    attr,
    children,
    text_child,
)

UINT = Int(0, 2**32 - 1)


class SeclabelType(ValueSet):
    DYNAMIC = "dynamic"
    STATIC = "static"
    NONE = "none"


class CipherName(ValueSet):
    AES = "aes"
    DEA = "dea"


class LaunchSecurityType(ValueSet):
    SEV = "sev"
    S390_PV = "s390-pv"


class Seclabel(Element):
    """``<seclabel type model relabel>`` with its labels (libvirt's rules per type)."""

    TAG = "seclabel"
    type: SeclabelType | None = attr(SeclabelType)
    model: str | None = attr(Str(r"[A-Za-z0-9_.\-]+", what="security model"))
    relabel: bool | None = attr(YES_NO)
    label: str | None = text_child("label", Str())
    imagelabel: str | None = text_child("imagelabel", Str())
    baselabel: str | None = text_child("baselabel", Str())

    def check(self, ctx: ParseContext) -> None:
        kind = self.type or SeclabelType.DYNAMIC
        if kind == SeclabelType.STATIC and self.label is None:
            raise self.error("a static seclabel needs a <label>")
        if kind == SeclabelType.DYNAMIC and self.relabel is False:
            raise self.error("a dynamic seclabel can't have relabel='no'")
        if kind == SeclabelType.NONE and self.relabel is True:
            raise self.error("seclabel type 'none' can't have relabel='yes'")
        if kind != SeclabelType.DYNAMIC and self.baselabel is not None:
            raise self.error("only a dynamic seclabel can have a <baselabel>")


class Cipher(Element):
    TAG = "cipher"
    name: CipherName = attr(CipherName, required=True)
    state: bool = attr(ON_OFF, required=True)


class KeyWrap(Element):
    """s390 key wrapping: refused on x86 (libvirt: not available on this architecture)."""

    TAG = "keywrap"
    ciphers: list[Cipher] = children(Cipher)


class LaunchSecurity(Element):
    """SEV / s390 protected virtualization: needs host support this machine lacks."""

    TAG = "launchSecurity"
    type: LaunchSecurityType = attr(LaunchSecurityType, required=True)
    kernel_hashes: bool | None = attr(YES_NO, xml="kernelHashes")
    cbitpos: int | None = text_child("cbitpos", UINT)
    reduced_phys_bits: int | None = text_child("reducedPhysBits", UINT)
    policy: str | None = text_child("policy", Str(r"(0x)?[0-9a-fA-F]{1,8}", what="policy"))
    handle: int | None = text_child("handle", UINT)
    dh_cert: str | None = text_child("dhCert", Str())
    session: str | None = text_child("session", Str())

    def check(self, ctx: ParseContext) -> None:
        if self.type == LaunchSecurityType.SEV and self.policy is None:
            raise self.error("missing <policy> for launch security type 'sev'")


class IDMapEntry(Element):
    start: int = attr(UINT, required=True)
    target: int = attr(UINT, required=True)
    count: int = attr(UINT, required=True)


class UIDMap(IDMapEntry):
    TAG = "uid"


class GIDMap(IDMapEntry):
    TAG = "gid"


class IDMap(Element):
    """User namespace id maps: containers only (refused for a QEMU guest)."""

    TAG = "idmap"
    uids: list[UIDMap] = children(UIDMap)
    gids: list[GIDMap] = children(GIDMap)
