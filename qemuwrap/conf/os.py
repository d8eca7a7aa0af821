"""``<os>``: guest type and machine, firmware (loader, NVRAM, auto-selection), boot
order and menu, direct kernel boot, SMBIOS mode and ACPI tables."""

from __future__ import annotations

from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import (
    YES_NO,
    Element,
    Int,
    ParseContext,
    Path,
    Str,
    Token,
    attr,
    child,
    children,
    custom,
    text,
    text_child,
)
from qemuwrap.conf.xmlreader import XML_SPACE, Node
from qemuwrap.conf.xmlwriter import Writer


class OSType(ValueSet):
    HVM = "hvm"


class BootDev(ValueSet):
    HD = "hd"
    CDROM = "cdrom"
    NETWORK = "network"
    FD = "fd"


class Firmware(ValueSet):
    BIOS = "bios"
    EFI = "efi"


class FirmwareFeatureName(ValueSet):
    ENROLLED_KEYS = "enrolled-keys"
    SECURE_BOOT = "secure-boot"


class LoaderType(ValueSet):
    ROM = "rom"
    PFLASH = "pflash"


class SmbiosMode(ValueSet):
    EMULATE = "emulate"
    HOST = "host"
    SYSINFO = "sysinfo"


class NvramType(ValueSet):
    FILE = "file"
    BLOCK = "block"
    NETWORK = "network"


class NvramProtocol(ValueSet):
    """Network protocols an NVRAM image may live on (libvirt 9.0 allows every disk
    protocol; QEMU's -blockdev drivers of the same names)."""

    NBD = "nbd"
    ISCSI = "iscsi"
    RBD = "rbd"
    GLUSTER = "gluster"
    HTTP = "http"
    HTTPS = "https"
    FTP = "ftp"
    FTPS = "ftps"
    TFTP = "tftp"
    SSH = "ssh"
    NFS = "nfs"


class ACPITableType(ValueSet):
    SLIC = "slic"


class OSTypeEl(Element):
    TAG = "type"
    arch: str = attr(Str(r"[a-z0-9_]+", what="architecture"), default="x86_64")
    machine: str | None = attr(Str(r"[A-Za-z0-9_.\-]+", what="machine type"))
    value: OSType = text(OSType, required=True)


class OSBoot(Element):
    TAG = "boot"
    dev: BootDev = attr(BootDev, required=True)


class FirmwareFeature(Element):
    TAG = "feature"
    enabled: bool = attr(YES_NO, required=True)
    name: FirmwareFeatureName = attr(FirmwareFeatureName, required=True)


class FirmwareEl(Element):
    """``<firmware><feature enabled name/></firmware>``: what auto-selection must give."""

    TAG = "firmware"
    features: list[FirmwareFeature] = children(FirmwareFeature)

    def check(self, ctx: ParseContext) -> None:
        if not self.features:
            raise self.error("<firmware> needs at least one <feature>")
        seen: set[str] = set()
        for f in self.features:
            if f.name in seen:
                ctx.record(f.error(f"firmware feature '{f.name}' is listed twice"))
            seen.add(f.name)

    def wants(self, name: FirmwareFeatureName) -> bool | None:
        return next((f.enabled for f in self.features if f.name == name), None)


class Loader(Element):
    """``<loader readonly secure type stateless>PATH</loader>``."""

    TAG = "loader"
    readonly: bool | None = attr(YES_NO)
    secure: bool | None = attr(YES_NO)
    type: LoaderType | None = attr(LoaderType)
    stateless: bool | None = attr(YES_NO)
    path: str | None = text(Path())


class NvramHost(Element):
    TAG = "host"
    name: str = attr(Token(r"[A-Za-z0-9_.:\-\[\]]+", what="host name"), required=True)
    port: int | None = attr(Int(0, 65535))


class NvramSource(Element):
    """``<nvram type=...><source .../></nvram>``: an NVRAM image not in a plain path."""

    TAG = "source"
    file: str | None = attr(Path())
    dev: str | None = attr(Path())
    protocol: NvramProtocol | None = attr(NvramProtocol)
    name: str | None = attr(Str(what="export name"))
    hosts: list[NvramHost] = children(NvramHost)


def _read_nvram_path(node: Node, ctx: ParseContext) -> str | None:
    """The element's own text: a path (RelaxNG cannot mix a typed value with the
    <source> child, so the schema says text and the model checks the path)."""
    node.text_used = True
    raw = node.text.strip(XML_SPACE)
    if not raw:
        return None
    try:
        return Path().parse(raw, "value")
    except ValueError as exc:
        err = node.error(str(exc))
        err.declared = False
        raise err from None


def _write_nothing(value: object, w: Writer) -> None:
    """Written by Nvram.format."""


class Nvram(Element):
    """``<nvram template=...>PATH</nvram>``: the guest's UEFI variable store."""

    TAG = "nvram"
    template: str | None = attr(Path())
    type: NvramType | None = attr(NvramType)
    path: str | None = custom(_read_nvram_path, _write_nothing, rng="<text/>",
                              present=lambda v: False)
    source: NvramSource | None = child(NvramSource)

    def format(self, w: Writer) -> None:
        if self.source is None:
            if self.path is None:
                w.empty("nvram", *self.attrs())
            else:
                w.text("nvram", self.path, *self.attrs())
            return
        w.open("nvram", *self.attrs())
        self.source.format(w)
        w.close("nvram")

    def check(self, ctx: ParseContext) -> None:
        src = self.source
        if self.type is None:
            if src is not None:
                raise src.error("<nvram><source> needs <nvram type=...>")
            return
        if self.path is not None:
            raise self.error(f"<nvram type='{self.type}'> takes a <source>, not a path")
        if src is None:
            raise self.error(f"<nvram type='{self.type}'> needs a <source>")
        needed = {NvramType.FILE: "file", NvramType.BLOCK: "dev",
                  NvramType.NETWORK: "protocol"}[self.type]
        if getattr(src, needed) is None:
            raise src.error(f"missing attribute '{needed}'")
        if self.type == NvramType.NETWORK and not src.hosts:
            raise src.error("a network NVRAM needs a <host>")

    @property
    def image(self) -> str | None:
        """The local file or device holding the variables, if any."""
        if self.path is not None:
            return self.path
        if self.source is not None:
            return self.source.file or self.source.dev
        return None


class BootMenu(Element):
    TAG = "bootmenu"
    enable: bool = attr(YES_NO, required=True)
    timeout: int | None = attr(Int(0, 65535))


class Smbios(Element):
    TAG = "smbios"
    mode: SmbiosMode = attr(SmbiosMode, required=True)


class Bios(Element):
    TAG = "bios"
    useserial: bool | None = attr(YES_NO)
    reboot_timeout: int | None = attr(Int(-1, 65535), xml="rebootTimeout")


class ACPITable(Element):
    TAG = "table"
    type: ACPITableType = attr(ACPITableType, required=True)
    path: str = text(Path(), required=True)


class OSACPI(Element):
    TAG = "acpi"
    tables: list[ACPITable] = children(ACPITable)


class OS(Element):
    """``<os>``: guest type, firmware, boot order, direct kernel boot."""

    TAG = "os"
    firmware: Firmware | None = attr(Firmware)
    type: OSTypeEl = child(OSTypeEl, required=True)
    firmware_el: FirmwareEl | None = child(FirmwareEl)
    loader: Loader | None = child(Loader)
    nvram: Nvram | None = child(Nvram)
    kernel: str | None = text_child("kernel", Path())
    initrd: str | None = text_child("initrd", Path())
    cmdline: str | None = text_child("cmdline", Str(strip=False))
    dtb: str | None = text_child("dtb", Path())
    boots: list[OSBoot] = children(OSBoot)
    bootmenu: BootMenu | None = child(BootMenu)
    smbios: Smbios | None = child(Smbios)
    bios: Bios | None = child(Bios)
    acpi: OSACPI | None = child(OSACPI)

    def check(self, ctx: ParseContext) -> None:
        seen: set[BootDev] = set()
        for b in self.boots:
            if b.dev in seen:
                ctx.record(b.error(f"boot device '{b.dev}' is listed twice"))
            seen.add(b.dev)
        if (self.initrd or self.cmdline is not None) and not self.kernel:
            raise self.error("<initrd> and <cmdline> need a <kernel>")
        if self.firmware_el is not None and self.firmware != Firmware.EFI:
            raise self.firmware_el.error("firmware features need <os firmware='efi'>")
        loader = self.loader
        if loader is not None and loader.path is not None and self.firmware is not None \
                and loader.type is None:
            raise loader.error("loader attribute 'type' cannot be specified when firmware "
                               "autoselection is enabled (give type='pflash' with a path)")
        if self.firmware == Firmware.BIOS and self.nvram is not None:
            raise self.nvram.error("firmware type 'bios' does not support nvram")
        if loader is not None and loader.stateless is False and (
                self.firmware == Firmware.BIOS or (self.firmware is None and
                                                   loader.type != LoaderType.PFLASH)):
            raise loader.error("Only pflash loader type permits NVRAM")
        if loader is not None and loader.path is None and self.firmware is None:
            raise loader.error("a <loader> without a path needs <os firmware=...>")
        if self.nvram is not None and self.loader is None and self.firmware is None:
            raise self.nvram.error("<nvram> needs a <loader> or <os firmware='efi'>")
        if loader is not None and loader.stateless and self.nvram is not None:
            raise self.nvram.error("a stateless <loader> can't have an <nvram>")
        if loader is not None and loader.path is not None and loader.type is None and \
                self.firmware is None:
            loader.type = LoaderType.ROM  # libvirt's default, written back
        if self.acpi is not None and len(self.acpi.tables) > 1:
            raise self.acpi.tables[1].error("only one ACPI table is supported")

    @property
    def arch(self) -> str:
        return self.type.arch

    @property
    def machine(self) -> str | None:
        return self.type.machine

    @property
    def boot(self) -> list[BootDev]:
        return [b.dev for b in self.boots]

    @property
    def loader_type(self) -> LoaderType | None:
        """libvirt's default: a loader with a path and no type is a ROM (``-bios``)."""
        if self.loader is None:
            return None
        return self.loader.type or LoaderType.ROM
