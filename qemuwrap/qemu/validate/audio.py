"""Checks of audio backends (libvirt's qemuValidateDomainDeviceDefAudio,
virDomainAudioDefValidate, virDomainEnsureAudioID); sound cards are ``sound.py``."""

from __future__ import annotations

from qemuwrap.conf.devices.audio import AudioType, find_audio
from qemuwrap.hints import TYPE_CHECKING
from qemuwrap.qemu.build.audio import AUDIO_DRIVERS

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
        elif audio.type == AudioType.SPICE and "spice" not in gtypes:
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


CHECKS = [check_audios]
