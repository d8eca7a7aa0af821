"""Checks of display adapters (libvirt's qemuValidateDomainDeviceDefVideo)."""

from __future__ import annotations

import glob
import os

from qemuwrap.conf.devices.video import Video, VideoModel
from qemuwrap.hints import TYPE_CHECKING
from qemuwrap.qemu.build.video import GL_DEVICES, PRIMARY_DEVICES, video_device

if TYPE_CHECKING:
    from qemuwrap.qemu.validate import Validation

UINT_MAX_KIB = (2**32 - 1) // 1024
#: QEMU's description of a vhost-user GPU backend (libvirt looks it up the same way).
VHOST_USER_DIRS = ("/etc/qemu/vhost-user", "/usr/share/qemu/vhost-user")
#: The GL device each "-gl" adapter is made of (in QEMU's optional GUI module).
GL_CORE_DEVICE = "virtio-gpu-gl-device"


def vhost_user_gpu_backends() -> list[str]:
    """QEMU's vhost-user descriptors of type 'gpu' installed on this host."""
    import json

    found = []
    for directory in VHOST_USER_DIRS:
        for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
            try:
                with open(path, encoding="utf-8") as f:
                    if json.load(f).get("type") == "gpu":
                        found.append(path)
            except (OSError, ValueError):
                continue
    return found


def check_video(v: Validation, video: Video, first: bool) -> None:
    m = video.model
    vtype = video.type
    if vtype == VideoModel.NONE:
        return
    if vtype not in PRIMARY_DEVICES:
        v.refuse(video, f"video model '{vtype}' is not supported by QEMU")
        return
    if vtype not in (VideoModel.QXL, VideoModel.VIRTIO):
        if not first:
            v.refuse(video, f"video type '{vtype}' is only valid as primary video device")
            return
        if video.heads != 1:
            v.refuse(m, f"video type '{vtype}' doesn't support multiple 'heads'")
            return
    accel = m.acceleration
    if accel is not None and accel.accel2d:
        v.refuse(accel, "qemu does not support the accel2d setting")
        return
    if vtype == VideoModel.QXL:
        for name in ("vram", "ram"):
            if (getattr(m, name) or 0) > UINT_MAX_KIB:
                v.refuse(m, f"value for '{name}' must be less than '{UINT_MAX_KIB}'")
                return
        if m.vgamem is not None and m.vgamem < 1024:
            v.refuse(m, "value for 'vgamem' must be at least 1 MiB (1024 KiB)")
            return
        if m.vgamem and m.vgamem & (m.vgamem - 1):
            v.refuse(m, "value for 'vgamem' must be power of two")
            return
    if m.resolution is not None and vtype not in (VideoModel.VGA, VideoModel.QXL,
                                                  VideoModel.VIRTIO, VideoModel.BOCHS):
        v.refuse(m.resolution, "model resolution is not supported")
        return
    if vtype in (VideoModel.VGA, VideoModel.VMVGA) and video.vram < 1024:
        v.refuse(m, "value for 'vram' must be at least 1 MiB (1024 KiB)")
        return
    if video.accel3d and vtype != VideoModel.VIRTIO:
        v.refuse(accel, "3d acceleration is supported only with 'virtio' video device")
        return
    device = video_device(video, v.caps, first)
    if device is None or not v.require_device(device, video):
        return
    if device in GL_DEVICES.values():
        v.require_device(GL_CORE_DEVICE, video)
    elif video.accel3d and not video.vhost_user:
        v.refuse(accel, "3d acceleration is not supported by this QEMU binary "
                        f"({v.caps.emulator} has no '{GL_DEVICES['virtio-vga']}' device)")
    if video.vhost_user and not vhost_user_gpu_backends():
        v.refuse(video.driver, "a vhost-user GPU needs QEMU's vhost-user-gpu backend, and "
                               "no descriptor of type 'gpu' is installed in "
                               f"{' or '.join(VHOST_USER_DIRS)}")


def check_videos(v: Validation) -> None:
    for index, video in enumerate(v.dom.devices.videos):
        check_video(v, video, index == 0)


CHECKS = [check_videos]
