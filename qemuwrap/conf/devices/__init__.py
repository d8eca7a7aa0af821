"""``<devices>``: every device of the guest, by kind, in the order libvirt writes them.

Each kind lives in a module of its own (disk, controller, net, chardev, input, graphics,
memballoon, ...); this container only lists them.
"""

from __future__ import annotations

from qemuwrap.conf.devices.address import (
    Address,
    Device,
    DriveAddress,
    PCIAddress,
    USBAddress,
)
from qemuwrap.conf.devices.audio import Audio
from qemuwrap.conf.devices.chardev import (
    Channel,
    CharSource,
    Console,
    Parallel,
    Serial,
    chardev_post_parse,
)
from qemuwrap.conf.devices.controller import Controller, complete_controllers
from qemuwrap.conf.devices.disk import Disk, in_libvirt_order
from qemuwrap.conf.devices.filesystem import Filesystem
from qemuwrap.conf.devices.graphics import Graphics
from qemuwrap.conf.devices.hostdev import Hostdev
from qemuwrap.conf.devices.hub import Hub
from qemuwrap.conf.devices.input import Input
from qemuwrap.conf.devices.iommu import IOMMU
from qemuwrap.conf.devices.memballoon import BalloonModel, MemBalloon
from qemuwrap.conf.devices.memory import MemoryDevice
from qemuwrap.conf.devices.net import Interface
from qemuwrap.conf.devices.panic import Panic
from qemuwrap.conf.devices.redirdev import Redirdev, Redirfilter
from qemuwrap.conf.devices.rng import RNG
from qemuwrap.conf.devices.shmem import Shmem
from qemuwrap.conf.devices.smartcard import Smartcard
from qemuwrap.conf.devices.sound import Sound
from qemuwrap.conf.devices.tpm import TPM
from qemuwrap.conf.devices.video import Video, order_videos
from qemuwrap.conf.devices.vsock import Vsock
from qemuwrap.conf.devices.watchdog import Watchdog
from qemuwrap.conf.xmlmodel import Element, ParseContext, Path, child, children, text_child


class Devices(Element):
    """Fields in the order libvirt writes them (virDomainDefFormatInternal)."""

    TAG = "devices"
    emulator: str | None = text_child("emulator", Path())
    disks: list[Disk] = children(Disk)
    controllers: list[Controller] = children(Controller)
    filesystems: list[Filesystem] = children(Filesystem)
    interfaces: list[Interface] = children(Interface)
    smartcards: list[Smartcard] = children(Smartcard)
    serials: list[Serial] = children(Serial)
    parallels: list[Parallel] = children(Parallel)
    consoles: list[Console] = children(Console)
    channels: list[Channel] = children(Channel)
    inputs: list[Input] = children(Input)
    tpms: list[TPM] = children(TPM)
    graphics: list[Graphics] = children(Graphics)
    sounds: list[Sound] = children(Sound)
    audios: list[Audio] = children(Audio)
    videos: list[Video] = children(Video)
    hostdevs: list[Hostdev] = children(Hostdev)
    redirdevs: list[Redirdev] = children(Redirdev)
    redirfilter: Redirfilter | None = child(Redirfilter)
    hubs: list[Hub] = children(Hub)
    watchdogs: list[Watchdog] = children(Watchdog)
    memballoon_el: MemBalloon | None = child(MemBalloon)
    rngs: list[RNG] = children(RNG)
    panics: list[Panic] = children(Panic)
    shmems: list[Shmem] = children(Shmem)
    memories: list[MemoryDevice] = children(MemoryDevice)
    iommu: IOMMU | None = child(IOMMU)
    vsock: Vsock | None = child(Vsock)

    def check(self, ctx: ParseContext) -> None:
        """Conflicts inside the device list itself (not QEMU-specific)."""
        if self.memballoon_el is None:
            self.memballoon_el = MemBalloon(model=BalloonModel.VIRTIO)
        for dev in self.all():
            if isinstance(dev, Device) and dev.address is not None:
                allowed = dev.address_types()
                kind = dev.address.VARIANT
                if allowed is not None and kind not in allowed:
                    what = f"'{allowed[0]}'" if allowed else "no"
                    ctx.record(dev.address.error(f"address type '{kind}' does not fit this "
                                                 f"{dev.TAG} (it takes {what} address)"))
        self.disks = in_libvirt_order(self.disks)
        seen: set[str] = set()
        for disk in self.disks:
            if disk.target_dev in seen:
                ctx.record(disk.error(f"target dev '{disk.target_dev}' is used twice"))
            seen.add(disk.target_dev)
        for error in complete_controllers(self.controllers):
            ctx.record(error)
        for problem in chardev_post_parse(self.serials, self.parallels, self.consoles):
            ctx.record(problem)
        ctx.errors.extend(order_videos(self.videos))

    @property
    def memballoon(self) -> MemBalloon:
        """libvirt's default balloon is virtio."""
        if self.memballoon_el is None:
            self.memballoon_el = MemBalloon(model=BalloonModel.VIRTIO)
        return self.memballoon_el

    def all(self) -> list[Element]:
        """Every device, in the order libvirt writes them."""
        out: list[Element] = []
        for f in self._body:
            value = self.__dict__[f.name]
            if isinstance(value, list):
                out.extend(value)
            elif isinstance(value, Element):
                out.append(value)
        return out


__all__ = ["Address", "CharSource", "Console", "Controller", "Devices", "Disk",
           "DriveAddress", "Graphics", "Input", "Interface", "MemBalloon", "PCIAddress",
           "Serial", "USBAddress", "Video"]
