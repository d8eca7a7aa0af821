"""Checks of sound cards (libvirt's qemuValidateDomainDeviceDefSound)."""

from __future__ import annotations

from qemuwrap.conf.devices.sound import HDA_MODELS, CodecType, SoundModel
from qemuwrap.hints import TYPE_CHECKING
from qemuwrap.qemu.build.sound import CODEC_DEVICES, SOUND_DEVICES
from qemuwrap.qemu.validate import has_usb
from qemuwrap.qemu.validate.audio import check_audio_ref

if TYPE_CHECKING:
    from qemuwrap.qemu.validate import Validation


def check_sounds(v: Validation) -> None:
    for sound in v.dom.devices.sounds:
        if sound.model == SoundModel.ICH7:
            v.refuse(sound, "sound card model 'ich7' is not supported by qemu")
            continue
        if sound.model == SoundModel.USB and not has_usb(v):
            v.refuse(sound, "a USB sound card needs a USB controller (not model 'none')")
            continue
        device = SOUND_DEVICES.get(sound.model)
        if device is not None and not v.require_device(device, sound):
            continue
        if sound.model in HDA_MODELS:
            for codec in sound.codecs:
                v.require_device(CODEC_DEVICES[codec.type], codec)
            if not sound.codecs:
                v.require_device(CODEC_DEVICES[CodecType.DUPLEX], sound)
        if sound.model != SoundModel.PCSPK:  # the speaker just stays silent without one
            check_audio_ref(v, sound, sound.audio_id, f"sound card '{sound.model}'")


CHECKS = [check_sounds]
