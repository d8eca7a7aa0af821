"""libvirt's virtio ``<driver>`` options (virDomainVirtioOptions): the transport knobs
every virtio device shares (``iommu``, ``ats``, ``packed``, ``page_per_vq``).

A device's own ``<driver>`` class derives from :class:`VirtioDriver` and adds its
attributes; ``qemu/build/props.virtio_props`` gives the QEMU properties.
"""

from __future__ import annotations

from qemuwrap.conf.xmlmodel import ON_OFF, Element, attr


class VirtioDriver(Element):
    TAG = "driver"
    iommu: bool | None = attr(ON_OFF)
    ats: bool | None = attr(ON_OFF)
    packed: bool | None = attr(ON_OFF)
    page_per_vq: bool | None = attr(ON_OFF)

    @property
    def virtio_set(self) -> list[str]:
        """The virtio options given (for "only for virtio devices" refusals)."""
        return [name for name in ("iommu", "ats", "packed", "page_per_vq")
                if self.__dict__[name] is not None]

