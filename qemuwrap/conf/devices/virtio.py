"""libvirt's virtio ``<driver>`` options (virDomainVirtioOptions): the transport knobs
every virtio device shares (``iommu``, ``ats``, ``packed``, ``page_per_vq``).

A device's own ``<driver>`` class derives from :class:`VirtioDriver` and adds its
attributes; :func:`virtio_props` gives the QEMU properties in libvirt's order.
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


def _on_off(value: bool | None) -> str | None:
    return None if value is None else ("on" if value else "off")


def virtio_props(driver: VirtioDriver | None) -> dict[str, str | None]:
    """``iommu_platform``, ``ats``, ``packed``, ``page-per-vq`` (qemuBuildVirtioDevProps)."""
    if driver is None:
        return {}
    return {"iommu_platform": _on_off(driver.iommu), "ats": _on_off(driver.ats),
            "packed": _on_off(driver.packed), "page-per-vq": _on_off(driver.page_per_vq)}
