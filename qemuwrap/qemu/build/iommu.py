"""The IOMMU (libvirt's qemuBuildIOMMUCommandLine): intel-iommu or virtio-iommu (QEMU's
alias of virtio-iommu-pci, the name libvirt writes), right after the boot options."""

from __future__ import annotations

from qemuwrap.conf.devices.iommu import IOMMUModel
from qemuwrap.qemu.build import BuildContext
from qemuwrap.qemu.build.props import acpi_props, exact_opts, on_off


def build_iommu(ctx: BuildContext) -> None:
    iommu = ctx.dom.devices.iommu
    if iommu is None:
        return
    if iommu.model == IOMMUModel.INTEL:
        drv = iommu.driver
        props: list[tuple[str, object]] = [("id", iommu.alias_name)]
        if drv is not None:
            props += [("intremap", on_off(drv.intremap)),
                      ("caching-mode", on_off(drv.caching_mode)),
                      ("eim", on_off(drv.eim)), ("device-iotlb", on_off(drv.iotlb)),
                      ("aw-bits", drv.aw_bits or None)]
        ctx.cmd.add("-device", exact_opts("intel-iommu", props), iommu.node)
    elif iommu.model == IOMMUModel.VIRTIO:
        ctx.cmd.add("-device", exact_opts("virtio-iommu", [
            ("id", iommu.alias_name), *ctx.pci_props(iommu).items(), *acpi_props(iommu)]),
            iommu.node)
