"""Option strings whose keys are QEMU's property names exactly as written, and the
property values several builders share (switches, virtio transport options).

``argv.optstr`` turns a Python ``_`` into QEMU's ``-`` (``debug_threads`` ->
``debug-threads``), which leaves no way to write the many QEMU properties that do have
an underscore: qxl's ``max_outputs``, ``ram_size``, ``vgamem_mb``, virtio's
``iommu_platform``, usb-redir's ``filter``...  This keeps keys as given; every value
still goes through ``argv.escape`` (commas doubled), so it stays one value.  The first
item is always one of qemuwrap's constant device or backend names, never XML text.
"""

from __future__ import annotations

from collections.abc import Iterable

from qemuwrap.conf.devices.virtio import VirtioDriver
from qemuwrap.qemu.argv import escape


def exact_opts(first: str | None, props: Iterable[tuple[str, object]]) -> str:
    """``first,key=value,...`` with keys verbatim; None values are left out."""
    parts = [first] if first is not None else []
    parts.extend(f"{key}={escape(value)}" for key, value in props if value is not None)
    return ",".join(parts)


def on_off(value: bool | None) -> str | None:
    """A QEMU switch from libvirt's tristate (None: not given, left to QEMU)."""
    return None if value is None else ("on" if value else "off")


def virtio_props(driver: VirtioDriver | None) -> dict[str, str | None]:
    """``iommu_platform``, ``ats``, ``packed``, ``page-per-vq`` of a virtio device's
    ``<driver>`` (qemuBuildVirtioDevProps); keys to pass through :func:`exact_opts`."""
    if driver is None:
        return {}
    return {"iommu_platform": on_off(driver.iommu), "ats": on_off(driver.ats),
            "packed": on_off(driver.packed), "page-per-vq": on_off(driver.page_per_vq)}

