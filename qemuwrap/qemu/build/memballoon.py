"""The memory balloon."""

from __future__ import annotations

from qemuwrap.conf.devices.memballoon import BalloonModel
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext


def build_memballoon(ctx: BuildContext) -> None:
    balloon = ctx.dom.devices.memballoon
    if balloon.model == BalloonModel.VIRTIO:
        ctx.cmd.add("-device", optstr("virtio-balloon-pci", id="balloon0",
                                      **ctx.pci_props(balloon)), balloon.node,
                    why="libvirt's default memballoon (virtio)")
