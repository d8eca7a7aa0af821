"""``<video>``: the guest's display adapters.

libvirt's post-parse is done here: a model without ``type`` is cirrus (x86 QEMU with
cirrus-vga), video memory gets its per-model default rounded up to a power of two, qxl
its ``ram``/``vgamem``, every adapter one head.  :func:`order_videos` puts the primary
adapter first (libvirt's parser inserts it at index 0) and marks it, so ids and the
command follow libvirt's order.
"""

from __future__ import annotations

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.devices.virtio import VirtioDriver
from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import YES_NO, Element, Int, ParseContext, Path, attr, child
from qemuwrap.errors import XMLError

UINT = Int(0, 2**32 - 1)  # libvirt's virStrToLong_uip


class VideoModel(ValueSet):
    VGA = "vga"
    CIRRUS = "cirrus"
    VMVGA = "vmvga"
    XEN = "xen"
    VBOX = "vbox"
    QXL = "qxl"
    PARALLELS = "parallels"
    VIRTIO = "virtio"
    GOP = "gop"
    NONE = "none"
    BOCHS = "bochs"
    RAMFB = "ramfb"


class VideoBackend(ValueSet):
    QEMU = "qemu"
    VHOSTUSER = "vhostuser"


#: libvirt's default video memory in KiB (virDomainVideoDefaultRAM, for a QEMU guest).
DEFAULT_VRAM = {VideoModel.VGA: 16384, VideoModel.CIRRUS: 16384, VideoModel.VMVGA: 16384,
                VideoModel.BOCHS: 16384, VideoModel.XEN: 4096, VideoModel.QXL: 65536}
QXL_DEFAULT_RAM = 65536
QXL_DEFAULT_VGAMEM = 16384  # QEMU_QXL_VGAMEM_DEFAULT


def _power_of_two(value: int) -> int:
    """VIR_ROUND_UP_POWER_OF_TWO (0 stays 0)."""
    return 1 << (value - 1).bit_length() if value > 0 else 0


class Acceleration(Element):
    TAG = "acceleration"
    accel3d: bool | None = attr(YES_NO)
    accel2d: bool | None = attr(YES_NO)
    rendernode: str | None = attr(Path())

    def check(self, ctx: ParseContext) -> None:
        if self.accel3d is None and self.accel2d is None and self.rendernode is None:
            raise self.error("missing values for acceleration")


class Resolution(Element):
    TAG = "resolution"
    x: int = attr(UINT, required=True)
    y: int = attr(UINT, required=True)

    def check(self, ctx: ParseContext) -> None:
        if self.x == 0 or self.y == 0:
            raise self.error("video resolution values must be greater than 0")


class VideoModelEl(Element):
    TAG = "model"
    type: VideoModel | None = attr(VideoModel)
    ram: int | None = attr(UINT)
    vram: int | None = attr(UINT)
    vram64: int | None = attr(UINT)
    vgamem: int | None = attr(UINT)
    heads: int | None = attr(UINT)
    primary: bool | None = attr(YES_NO)
    acceleration: Acceleration | None = child(Acceleration)
    resolution: Resolution | None = child(Resolution)


class VideoDriver(VirtioDriver):
    name: VideoBackend | None = attr(VideoBackend)


class Video(PCIDevice):
    TAG = "video"
    driver: VideoDriver | None = child(VideoDriver)
    model: VideoModelEl = child(VideoModelEl, required=False)  # type: ignore[assignment]

    def address_types(self) -> tuple[str, ...]:
        return () if self.type == VideoModel.RAMFB else ("pci",)

    @classmethod
    def implicit(cls, model: VideoModel = VideoModel.CIRRUS) -> Video:
        """The adapter libvirt adds for graphics without ``<video>`` (default: cirrus,
        qemuDomainDefaultVideoDevice on x86), post-parse defaults filled in."""
        video = cls(model=VideoModelEl(type=model))
        video.fill_defaults()
        video.model.primary = True
        return video

    def check(self, ctx: ParseContext) -> None:
        m = self.model
        if m is None:
            m = self.model = VideoModelEl()
        if m.type is None:
            m.type = VideoModel.CIRRUS  # qemuDomainDefaultVideoDevice on x86
        self.check_model(m)
        self.fill_defaults()

    def check_model(self, m: VideoModelEl) -> None:
        if m.type == VideoModel.NONE:
            return
        for name in ("ram", "vram64", "vgamem"):
            if m.type != VideoModel.QXL and getattr(m, name):
                raise m.error(f"{name} attribute only supported for video type qxl")
        if self.driver is not None:
            if self.driver.name == VideoBackend.VHOSTUSER and m.type != VideoModel.VIRTIO:
                raise self.driver.error("'vhostuser' driver is only supported with "
                                        "'virtio' device")
            if m.type != VideoModel.VIRTIO and self.driver.virtio_set:
                raise self.driver.error(f"{self.driver.virtio_set[0]} driver option is only "
                                        "supported for virtio devices")
        if (m.acceleration is not None and m.acceleration.rendernode is not None
                and not self.vhost_user):
            raise m.acceleration.error("unsupported rendernode accel attribute without "
                                       "'vhostuser'")

    def fill_defaults(self) -> None:
        """libvirt's post-parse: default memory sizes (powers of two), one head."""
        m = self.model
        if m.type == VideoModel.NONE:  # nothing to build: libvirt keeps only the type
            self.model = VideoModelEl(type=VideoModel.NONE, node=m.node)
            self.driver = None
            return
        if m.type == VideoModel.QXL:
            m.ram = _power_of_two(m.ram or QXL_DEFAULT_RAM)
            m.vgamem = m.vgamem or QXL_DEFAULT_VGAMEM
        vram = m.vram or DEFAULT_VRAM.get(self.type, 0)
        m.vram = _power_of_two(vram) or None
        if m.heads is None:
            m.heads = 1

    @property
    def type(self) -> VideoModel:
        return self.model.type or VideoModel.CIRRUS

    @property
    def heads(self) -> int:
        return self.model.heads if self.model.heads is not None else 1

    @property
    def vram(self) -> int:
        """Video memory in KiB (the model's default when not filled in)."""
        return self.model.vram or DEFAULT_VRAM.get(self.type, 0)

    @property
    def vhost_user(self) -> bool:
        return self.driver is not None and self.driver.name == VideoBackend.VHOSTUSER

    @property
    def accel3d(self) -> bool:
        return self.model.acceleration is not None and bool(self.model.acceleration.accel3d)


def order_videos(videos: list[Video]) -> list[XMLError]:
    """libvirt's parser: an adapter marked primary goes first, and the first adapter is
    the primary one (unless it is 'none').  Returns the problems found (several primaries,
    'none' beside other adapters), the list is reordered in place."""
    problems: list[XMLError] = []
    primaries = [v for v in videos if v.model.primary]
    for extra in primaries[1:]:
        problems.append(extra.model.error("Only one primary video device is supported"))
    if primaries:
        videos.remove(primaries[0])
        videos.insert(0, primaries[0])
    if len(videos) > 1:
        for v in videos:
            if v.type == VideoModel.NONE:
                problems.append(v.error("a 'none' video type must be the only video device "
                                        "defined for the domain"))
    if videos and videos[0].type != VideoModel.NONE:
        videos[0].model.primary = True
    return problems

