"""``<disk>``: what a guest's disks, cdroms and floppies are made of and where they sit."""

from __future__ import annotations

import enum
import re

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.xmlmodel import Element, ParseContext, Path, Str, attr, child, flag


class DiskType(enum.StrEnum):
    FILE = "file"
    BLOCK = "block"
    DIR = "dir"
    NETWORK = "network"
    VOLUME = "volume"
    NVME = "nvme"
    VHOSTUSER = "vhostuser"


class DiskDevice(enum.StrEnum):
    DISK = "disk"
    CDROM = "cdrom"
    FLOPPY = "floppy"
    LUN = "lun"


class DiskBus(enum.StrEnum):
    IDE = "ide"
    FDC = "fdc"
    SCSI = "scsi"
    VIRTIO = "virtio"
    XEN = "xen"
    USB = "usb"
    UML = "uml"
    SATA = "sata"
    SD = "sd"


class DiskFormat(enum.StrEnum):
    RAW = "raw"
    DIR = "dir"
    BOCHS = "bochs"
    CLOOP = "cloop"
    DMG = "dmg"
    ISO = "iso"
    VPC = "vpc"
    VDI = "vdi"
    FAT = "fat"
    VHD = "vhd"
    PLOOP = "ploop"
    COW = "cow"
    QCOW = "qcow"
    QCOW2 = "qcow2"
    QED = "qed"
    VMDK = "vmdk"
    LUKS = "luks"
    VHDX = "vhdx"
    AIO = "aio"
    NONE = "none"


class DriverName(enum.StrEnum):
    QEMU = "qemu"


#: libvirt's bus for a target name's prefix (virDomainDiskDefPostParse).
BUS_BY_PREFIX = {"hd": DiskBus.IDE, "sd": DiskBus.SATA, "vd": DiskBus.VIRTIO,
                 "fd": DiskBus.FDC}
_TARGET = re.compile(r"(hd|sd|vd|fd)[a-z]{1,2}")


class DiskDriver(Element):
    TAG = "driver"
    name: DriverName | None = attr(DriverName)
    type: DiskFormat | None = attr(DiskFormat)


class DiskSource(Element):
    TAG = "source"
    file: str | None = attr(Path())
    dev: str | None = attr(Path())


class DiskTarget(Element):
    TAG = "target"
    dev: str = attr(Str(), required=True)
    bus: DiskBus | None = attr(DiskBus)

    def check(self, ctx: ParseContext) -> None:
        if not _TARGET.fullmatch(self.dev):
            raise self.error(f"unsupported target dev '{self.dev}' (expected hdX, sdX or vdX)")
        if self.bus is None:
            self.bus = BUS_BY_PREFIX[self.dev[:2]]


class Disk(PCIDevice):
    TAG = "disk"
    type: DiskType = attr(DiskType, default=DiskType.FILE)
    device: DiskDevice = attr(DiskDevice, default=DiskDevice.DISK)
    driver: DiskDriver | None = child(DiskDriver)
    src: DiskSource | None = child(DiskSource)
    target: DiskTarget = child(DiskTarget, required=True)
    readonly: bool = flag("readonly")

    def check(self, ctx: ParseContext) -> None:
        if self.src is not None:
            wanted = "file" if self.type == DiskType.FILE else "dev"
            other = "dev" if wanted == "file" else "file"
            if getattr(self.src, other) is not None:
                raise self.src.error(f"unsupported attribute '{other}' for a "
                                     f"type='{self.type}' disk")
            if getattr(self.src, wanted) is None:
                raise self.src.error(f"missing attribute '{wanted}'")
        elif self.device == DiskDevice.DISK:
            raise self.error("a disk needs a <source>")
        if self.device == DiskDevice.CDROM:
            if self.target.bus == DiskBus.VIRTIO:
                raise self.target.error("a cdrom cannot be on bus 'virtio' (use ide or sata)")
            self.readonly = True

    def address_types(self) -> tuple[str, ...]:
        return ("pci",) if self.target.bus == DiskBus.VIRTIO else ("drive",)

    # -- what the rest of qemuwrap asks of a disk ------------------------------------
    @property
    def source(self) -> str | None:
        """The file or block device the disk reads (None: an empty cdrom)."""
        if self.src is None:
            return None
        return self.src.file if self.type == DiskType.FILE else self.src.dev

    @source.setter
    def source(self, path: str | None) -> None:
        if path is None:
            self.src = None
            return
        if self.src is None:
            self.src = DiskSource()
        if self.type == DiskType.FILE:
            self.src.file = path
        else:
            self.src.dev = path

    @property
    def target_dev(self) -> str:
        return self.target.dev

    @property
    def bus(self) -> DiskBus:
        assert self.target.bus is not None  # filled in by DiskTarget.check
        return self.target.bus

    @property
    def driver_type(self) -> DiskFormat | None:
        return self.driver.type if self.driver is not None else None

    @driver_type.setter
    def driver_type(self, value: str | None) -> None:
        if self.driver is None:
            self.driver = DiskDriver(name=DriverName.QEMU)
        self.driver.type = DiskFormat(value) if value is not None else None

    @property
    def index(self) -> int:
        """Position encoded in the target name: hda=0, hdb=1, ..., sdaa=26."""
        n = 0
        for ch in self.target.dev[2:]:
            n = n * 26 + (ord(ch) - ord("a") + 1)
        return n - 1


def assign_drive_addresses(dom) -> None:
    """libvirt's virDomainDiskDefAssignAddress: a disk without an address sits where its
    target name's index says (hdc: IDE bus 1 unit 0; sdh: SATA controller 1 unit 1)."""
    from qemuwrap.conf.devices.address import DriveAddress

    for disk in dom.devices.disks:
        if disk.address is not None:
            continue
        idx = disk.index
        if disk.bus == DiskBus.IDE:
            disk.address = DriveAddress(controller=idx // 4, bus=(idx % 4) // 2, unit=idx % 2)
        elif disk.bus == DiskBus.SATA:
            disk.address = DriveAddress(controller=idx // 6, bus=0, unit=idx % 6)
