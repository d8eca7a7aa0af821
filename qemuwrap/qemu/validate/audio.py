"""Checks of audio backends and sound cards (libvirt's qemuValidateDomainDeviceDefAudio
and ...Sound, virDomainAudioDefValidate, virDomainEnsureAudioID)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qemuwrap.conf.devices.audio import AudioType, find_audio
from qemuwrap.conf.devices.graphics import GraphicsType
from qemuwrap.conf.devices.sound import HDA_MODELS, CodecType, SoundModel
from qemuwrap.qemu.build.audio import AUDIO_DRIVERS
from qemuwrap.qemu.build.sound import CODEC_DEVICES, SOUND_DEVICES
from qemuwrap.qemu.validate.usb import has_usb

if TYPE_CHECKING:
    from qemuwrap.qemu.validate import Validation


#: QEMU's OSS device when <input>/<output> names none.
OSS_DEFAULT_DEVICE = "/dev/dsp"


def audio_drivers(v: Validation) -> frozenset[str] | None:
    """The -audiodev drivers this QEMU has (its modules installed), when probed."""
    return getattr(v.caps, "audio_drivers", None)


def displays(v: Validation) -> frozenset[str] | None:
    """The -display types this QEMU has (its modules installed), when probed."""
    return getattr(v.caps, "displays", None)


def check_audios(v: Validation) -> None:
    devs = v.dom.devices
    seen: set[int] = set()
    gtypes = {g.type for g in devs.graphics}
    available = audio_drivers(v)
    for audio in devs.audios:
        if audio.id in seen:
            v.refuse(audio, f"audio ID {audio.id} is used multiple times")
            continue
        seen.add(audio.id)
        driver = AUDIO_DRIVERS[audio.type]
        if audio.type == AudioType.COREAUDIO:
            v.refuse(audio, "audio type 'coreaudio' is macOS's sound system: QEMU on "
                            "Linux has no coreaudio backend")
        elif available is not None and driver not in available:
            v.refuse(audio, f"{v.caps.emulator} has no '{driver}' audio backend (QEMU's "
                            f"audio-{driver} module is not installed)")
        elif audio.type == AudioType.SPICE and GraphicsType.SPICE not in gtypes:
            v.refuse(audio, "Spice audio is not supported without spice graphics")
        elif audio.type == AudioType.DBUS and not _has_display(v, "dbus"):
            v.refuse(audio, "D-Bus audio is not supported with this QEMU "
                            f"({v.caps.emulator} has no '-display dbus')")


def _has_display(v: Validation, name: str) -> bool:
    known = displays(v)
    return known is None or name in known


def check_audio_ref(v: Validation, where, audio_id: int, what: str) -> None:
    """A sound card's or display's ``<audio id>`` must name a backend; with none named,
    the first backend is used, and there must be one."""
    audios = v.dom.devices.audios
    if audio_id and find_audio(audios, audio_id) is None:
        v.refuse(where, f"no audio device with ID {audio_id}")
    elif not audio_id and not audios:
        v.refuse(where, f"{what} needs an <audio> backend, and the definition has none "
                        "(SDL graphics get no default one)")


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


CHECKS = [check_audios, check_sounds]
