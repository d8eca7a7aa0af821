"""``<devices>``: every device of the guest, by kind, in the order libvirt writes them.

Each kind lives in a module of its own (disk, controller, net, chardev, input, graphics,
memballoon, ...); this container only lists them.
"""

from __future__ import annotations

import importlib

from qemuwrap.conf.devices.address import Device
from qemuwrap.conf.xmlmodel import Element, ParseContext, Path, child, children, text_child
from qemuwrap.hints import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

    from qemuwrap.conf.devices.audio import Audio
    from qemuwrap.conf.devices.chardev import Channel, Console, Parallel, Serial
    from qemuwrap.conf.devices.controller import Controller
    from qemuwrap.conf.devices.disk import Disk
    from qemuwrap.conf.devices.filesystem import Filesystem
    from qemuwrap.conf.devices.graphics import Graphics
    from qemuwrap.conf.devices.hostdev import Hostdev
    from qemuwrap.conf.devices.hub import Hub
    from qemuwrap.conf.devices.input import Input
    from qemuwrap.conf.devices.iommu import IOMMU
    from qemuwrap.conf.devices.memballoon import MemBalloon
    from qemuwrap.conf.devices.memory import MemoryDevice
    from qemuwrap.conf.devices.net import Interface
    from qemuwrap.conf.devices.panic import Panic
    from qemuwrap.conf.devices.redirdev import Redirdev, Redirfilter
    from qemuwrap.conf.devices.rng import RNG
    from qemuwrap.conf.devices.shmem import Shmem
    from qemuwrap.conf.devices.smartcard import Smartcard
    from qemuwrap.conf.devices.sound import Sound
    from qemuwrap.conf.devices.tpm import TPM
    from qemuwrap.conf.devices.video import Video
    from qemuwrap.conf.devices.vsock import Vsock
    from qemuwrap.conf.devices.watchdog import Watchdog


class Devices(Element):
    """Fields in the order libvirt writes them (virDomainDefFormatInternal)."""

    TAG = "devices"
    emulator: str | None = text_child("emulator", Path())
    disks: list[Disk] = children(".disk:Disk", tag="disk")
    controllers: list[Controller] = children(".controller:Controller", tag="controller")
    filesystems: list[Filesystem] = children(".filesystem:Filesystem", tag="filesystem")
    interfaces: list[Interface] = children(".net:Interface", tag="interface")
    smartcards: list[Smartcard] = children(".smartcard:Smartcard", tag="smartcard")
    serials: list[Serial] = children(".chardev:Serial", tag="serial")
    parallels: list[Parallel] = children(".chardev:Parallel", tag="parallel")
    consoles: list[Console] = children(".chardev:Console", tag="console")
    channels: list[Channel] = children(".chardev:Channel", tag="channel")
    inputs: list[Input] = children(".input:Input", tag="input")
    tpms: list[TPM] = children(".tpm:TPM", tag="tpm")
    graphics: list[Graphics] = children(".graphics:Graphics", tag="graphics")
    sounds: list[Sound] = children(".sound:Sound", tag="sound")
    audios: list[Audio] = children(".audio:Audio", tag="audio")
    videos: list[Video] = children(".video:Video", tag="video")
    hostdevs: list[Hostdev] = children(".hostdev:Hostdev", tag="hostdev")
    redirdevs: list[Redirdev] = children(".redirdev:Redirdev", tag="redirdev")
    redirfilter: Redirfilter | None = child(".redirdev:Redirfilter", tag="redirfilter")
    hubs: list[Hub] = children(".hub:Hub", tag="hub")
    watchdogs: list[Watchdog] = children(".watchdog:Watchdog", tag="watchdog")
    memballoon_el: MemBalloon | None = child(".memballoon:MemBalloon", tag="memballoon")
    rngs: list[RNG] = children(".rng:RNG", tag="rng")
    panics: list[Panic] = children(".panic:Panic", tag="panic")
    shmems: list[Shmem] = children(".shmem:Shmem", tag="shmem")
    memories: list[MemoryDevice] = children(".memory:MemoryDevice", tag="memory")
    iommu: IOMMU | None = child(".iommu:IOMMU", tag="iommu")
    vsock: Vsock | None = child(".vsock:Vsock", tag="vsock")

    def check(self, ctx: ParseContext) -> None:
        """Conflicts inside the device list itself (not QEMU-specific). Each kind's own
        post-parse comes from its module, loaded only when the guest has that kind."""
        if self.memballoon_el is None:
            self.memballoon_el = _default_balloon()
        for dev in self.all():
            if isinstance(dev, Device) and dev.address is not None:
                allowed = dev.address_types()
                kind = dev.address.VARIANT
                if allowed is not None and kind not in allowed:
                    what = f"'{allowed[0]}'" if allowed else "no"
                    ctx.record(dev.address.error(f"address type '{kind}' does not fit this "
                                                 f"{dev.TAG} (it takes {what} address)"))
        if self.disks:
            from qemuwrap.conf.devices.disk import in_libvirt_order

            self.disks = in_libvirt_order(self.disks)
        seen: set[str] = set()
        for disk in self.disks:
            if disk.target_dev in seen:
                ctx.record(disk.error(f"target dev '{disk.target_dev}' is used twice"))
            seen.add(disk.target_dev)
        if self.controllers:
            from qemuwrap.conf.devices.controller import complete_controllers

            for error in complete_controllers(self.controllers):
                ctx.record(error)
        if self.serials or self.parallels or self.consoles:
            from qemuwrap.conf.devices.chardev import chardev_post_parse

            for problem in chardev_post_parse(self.serials, self.parallels, self.consoles):
                ctx.record(problem)
        if self.videos:
            from qemuwrap.conf.devices.video import order_videos

            ctx.errors.extend(order_videos(self.videos))

    @property
    def memballoon(self) -> MemBalloon:
        """libvirt's default balloon is virtio."""
        if self.memballoon_el is None:
            self.memballoon_el = _default_balloon()
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


def _default_balloon() -> MemBalloon:
    """libvirt's default balloon: virtio."""
    from qemuwrap.conf.devices.memballoon import BalloonModel, MemBalloon

    return MemBalloon(model=BalloonModel.VIRTIO)


#: Names this package gave before each kind's module was loaded on demand.
_EXPORTS = {"Address": "address", "CharSource": "chardev", "Console": "chardev",
            "Controller": "controller", "Disk": "disk", "DriveAddress": "address",
            "Graphics": "graphics", "Input": "input", "Interface": "net",
            "MemBalloon": "memballoon", "PCIAddress": "address", "Serial": "chardev",
            "USBAddress": "address", "Video": "video"}


def __getattr__(name: str) -> Any:
    """``from qemuwrap.conf.devices import Disk`` still works: the kind's module is
    imported then (PEP 562), not with this package."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = ["Devices", *_EXPORTS]
