"""The memory balloon (libvirt's qemuBuildMemballoonCommandLine)."""

from __future__ import annotations

from qemuwrap.conf.devices.memballoon import BalloonModel
from qemuwrap.conf.xmlmodel import table
from qemuwrap.qemu.build import BuildContext
from qemuwrap.qemu.build.props import acpi_props, exact_opts, on_off, virtio_props

BALLOON_DEVICES = table(BalloonModel, {
    BalloonModel.VIRTIO: "virtio-balloon-pci",
    BalloonModel.VIRTIO_TRANSITIONAL: "virtio-balloon-pci-transitional",
    BalloonModel.VIRTIO_NON_TRANSITIONAL: "virtio-balloon-pci-non-transitional"},
    not_mapped={BalloonModel.NONE: "no balloon", BalloonModel.XEN: "Xen only: refused"})



def build_memballoon(ctx: BuildContext) -> None:
    balloon = ctx.dom.devices.memballoon
    device = BALLOON_DEVICES.get(balloon.model)
    if device is None:
        return
    why = None if balloon.node is not None else "libvirt's default memballoon (virtio)"
    ctx.cmd.add("-device", exact_opts(device, [
        *virtio_props(balloon.driver).items(), ("id", balloon.alias_name),
        ("deflate-on-oom", on_off(balloon.autodeflate)),
        ("free-page-reporting", on_off(balloon.freePageReporting)),
        *ctx.pci_props(balloon).items(), *acpi_props(balloon)]), balloon.node, why)


def balloon_qmp_after_start(dom) -> list[tuple[str, dict]]:
    """``<stats period>`` is the balloon's ``guest-stats-polling-interval``, set over QMP
    once QEMU runs (libvirt's qemuProcessSetupBalloon)."""
    balloon = dom.devices.memballoon
    if balloon.stats is None or not balloon.is_virtio:
        return []
    return [("qom-set", {"path": f"/machine/peripheral/{balloon.alias_name}",
                         "property": "guest-stats-polling-interval",
                         "value": balloon.stats.period})]
