"""Display adapters (libvirt's qemuBuildVideoCommandLine and qemuDeviceVideoGetModel).

The primary adapter is the VGA-compatible model (``qxl-vga``, ``virtio-vga``); the
others are the plain PCI ones (``qxl``, ``virtio-gpu-pci``).  Memory sizes go to QEMU in
its own units (bytes or MiB) from libvirt's KiB.
"""

from __future__ import annotations

from qemuwrap.conf.devices.video import (
    QXL_DEFAULT_RAM,
    QXL_DEFAULT_VGAMEM,
    Video,
    VideoModel,
)
from qemuwrap.conf.xmlmodel import EnumTable, table
from qemuwrap.qemu.build import BuildContext
from qemuwrap.qemu.build.props import exact_opts, virtio_props
from qemuwrap.qemu.capabilities import Capabilities

_REFUSED = "refused: not a QEMU display adapter"
#: The device of the primary (VGA-compatible) adapter of each model.
PRIMARY_DEVICES = table(VideoModel, {
    VideoModel.VGA: "VGA", VideoModel.CIRRUS: "cirrus-vga", VideoModel.VMVGA: "vmware-svga",
    VideoModel.QXL: "qxl-vga", VideoModel.VIRTIO: "virtio-vga",
    VideoModel.BOCHS: "bochs-display", VideoModel.RAMFB: "ramfb"},
    not_mapped={VideoModel.NONE: "no adapter at all", VideoModel.XEN: _REFUSED,
                VideoModel.VBOX: _REFUSED, VideoModel.PARALLELS: _REFUSED,
                VideoModel.GOP: _REFUSED})
#: The device of a secondary adapter: only qxl and virtio have one.
SECONDARY_DEVICES: EnumTable[VideoModel, str] = table(VideoModel, {VideoModel.QXL: "qxl",
                                       VideoModel.VIRTIO: "virtio-gpu-pci"},
                          not_mapped={m: "only valid as the primary adapter (refused)"
                                      for m in VideoModel
                                      if m not in (VideoModel.QXL, VideoModel.VIRTIO)})
#: With 3D acceleration QEMU 6.1 and later have separate virgl devices.
GL_DEVICES = {"virtio-vga": "virtio-vga-gl", "virtio-gpu-pci": "virtio-gpu-gl-pci"}
VHOST_USER_DEVICES = {True: "vhost-user-vga", False: "vhost-user-gpu-pci"}


def vga_capable(video: Video, caps: Capabilities) -> bool:
    """qemuDomainSupportsVideoVga: can this adapter be the VGA one on this QEMU?"""
    if video.type == VideoModel.VIRTIO:
        return caps.has_device("vhost-user-vga" if video.vhost_user else "virtio-vga")
    return True


def video_device(video: Video, caps: Capabilities, first: bool) -> str | None:
    """QEMU's device for an adapter (None: not one QEMU has, refused by validation);
    ``first``: it is the guest's first adapter, the primary one."""
    primary = first and vga_capable(video, caps)
    if video.vhost_user:
        return VHOST_USER_DEVICES[primary]
    device = (PRIMARY_DEVICES if primary else SECONDARY_DEVICES).get(video.type)
    if device in GL_DEVICES and video.accel3d and caps.has_device(GL_DEVICES[device]):
        return GL_DEVICES[device]
    return device


def vhost_user_chardev_id(video: Video) -> str:
    return f"chr-vu-{video.alias_name}"


def vhost_user_socket(ctx: BuildContext, video: Video) -> str:
    """Where the vhost-user-gpu backend listens (libvirt passes it an fd instead)."""
    return f"{ctx.paths.state_dir}/{video.alias_name}-vhost-user-gpu.sock"


def video_props(ctx: BuildContext, video: Video) -> list[tuple[str, object]]:
    m = video.model
    virtio = video.type == VideoModel.VIRTIO
    props: list[tuple[str, object]] = []
    if virtio:
        props.extend(virtio_props(video.driver).items())
    props.append(("id", video.alias_name))
    if video.type in (VideoModel.QXL, VideoModel.VIRTIO):
        props.append(("max_outputs", video.heads))
    if video.type == VideoModel.QXL:
        props += [("ram_size", (m.ram or QXL_DEFAULT_RAM) * 1024),
                  ("vram_size", video.vram * 1024),
                  ("vram64_size_mb", (m.vram64 or 0) // 1024),
                  ("vgamem_mb", (m.vgamem or QXL_DEFAULT_VGAMEM) // 1024)]
    elif video.vhost_user:
        props.append(("chardev", vhost_user_chardev_id(video)))
    elif video.type in (VideoModel.VGA, VideoModel.VMVGA) and video.vram:
        props.append(("vgamem_mb", video.vram // 1024))
    elif video.type == VideoModel.BOCHS and video.vram:
        props.append(("vgamem", video.vram * 1024))
    if m.resolution is not None:
        props += [("xres", m.resolution.x), ("yres", m.resolution.y)]
    if video.type != VideoModel.RAMFB:
        props.extend(ctx.pci_props(video).items())
    return props


def build_video(ctx: BuildContext) -> None:
    for index, video in enumerate(ctx.dom.devices.videos):
        device = video_device(video, ctx.caps, index == 0)
        if video.type == VideoModel.NONE or device is None:
            continue
        if video.vhost_user:
            ctx.cmd.add("-chardev", exact_opts("socket", [
                ("id", vhost_user_chardev_id(video)),
                ("path", vhost_user_socket(ctx, video))]), video.node)
        ctx.cmd.add("-device", exact_opts(device, video_props(ctx, video)), video.node)
