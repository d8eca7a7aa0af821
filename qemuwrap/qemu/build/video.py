"""The guest's display adapter."""

from __future__ import annotations

from qemuwrap.conf.devices.video import VideoModel
from qemuwrap.conf.xmlmodel import table
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext

VIDEO_DEVICES = table(VideoModel, {VideoModel.VGA: "VGA"},
                      not_mapped={VideoModel.NONE: "no video device"})


def build_video(ctx: BuildContext) -> None:
    for video in ctx.dom.devices.videos:
        if video.model.type == VideoModel.NONE:
            continue
        ctx.cmd.add("-device", optstr(VIDEO_DEVICES[video.model.type], id=video.alias_name,
                                      **ctx.pci_props(video)), video.node)
