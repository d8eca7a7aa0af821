"""``<memballoon>``: the virtio balloon (libvirt adds one unless told ``model='none'``)."""

from __future__ import annotations

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.devices.virtio import VirtioDriver
from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import ON_OFF, Element, Int, ParseContext, attr, child


class BalloonModel(ValueSet):
    VIRTIO = "virtio"
    VIRTIO_TRANSITIONAL = "virtio-transitional"
    VIRTIO_NON_TRANSITIONAL = "virtio-non-transitional"
    XEN = "xen"
    NONE = "none"


VIRTIO_BALLOONS = (BalloonModel.VIRTIO, BalloonModel.VIRTIO_TRANSITIONAL,
                   BalloonModel.VIRTIO_NON_TRANSITIONAL)


class BalloonStats(Element):
    """``<stats period>``: seconds between the guest's memory statistics (QMP, after
    start: the balloon's ``guest-stats-polling-interval``)."""

    TAG = "stats"
    period: int = attr(Int(0, 2**31 - 1), required=True)


class BalloonDriver(VirtioDriver):
    TAG = "driver"


class MemBalloon(PCIDevice):
    TAG = "memballoon"
    model: BalloonModel = attr(BalloonModel, required=True)
    autodeflate: bool | None = attr(ON_OFF)
    freePageReporting: bool | None = attr(ON_OFF)  # noqa: N815
    stats: BalloonStats | None = child(BalloonStats)
    driver: BalloonDriver | None = child(BalloonDriver)

    def check(self, ctx: ParseContext) -> None:
        if self.model == BalloonModel.NONE and (
                self.autodeflate is not None or self.freePageReporting is not None
                or self.stats is not None or self.driver is not None
                or self.address is not None):
            raise self.error("a memballoon of model 'none' takes no settings")

    @property
    def is_virtio(self) -> bool:
        return self.model in VIRTIO_BALLOONS

    def address_types(self) -> tuple[str, ...]:
        return ("pci",)
