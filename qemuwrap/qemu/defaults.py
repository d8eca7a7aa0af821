"""The devices libvirt adds to a definition that does not name them (its post-parse):
written into the model, so the live definition shows the whole machine."""

from __future__ import annotations

from qemuwrap.conf.devices.chardev import ConsoleTargetType
from qemuwrap.conf.devices.controller import Controller, ControllerType
from qemuwrap.conf.devices.video import Video, VideoModel, VideoModelEl
from qemuwrap.conf.domain import Domain
from qemuwrap.qemu.validate import MachineType


def add_implicit_devices(dom: Domain, machine: MachineType) -> None:
    devs = dom.devices
    if devs.graphics and not devs.videos:
        devs.videos.append(Video(model=VideoModelEl(type=VideoModel.VGA)))
    if any(c.target_type == ConsoleTargetType.VIRTIO for c in devs.consoles) and not any(
            c.type == ControllerType.VIRTIO_SERIAL for c in devs.controllers):
        devs.controllers.append(Controller(type=ControllerType.VIRTIO_SERIAL, index=0))
