"""``<audio>``: the host side of the guest's sound (QEMU's -audiodev)."""

from __future__ import annotations

import enum

from qemuwrap.conf.xmlmodel import Element, Int, attr


class AudioType(enum.StrEnum):
    NONE = "none"
    ALSA = "alsa"
    COREAUDIO = "coreaudio"
    JACK = "jack"
    OSS = "oss"
    PULSEAUDIO = "pulseaudio"
    SDL = "sdl"
    SPICE = "spice"
    FILE = "file"
    DBUS = "dbus"


class Audio(Element):
    TAG = "audio"
    id: int = attr(Int(1, 2**31 - 1), required=True)
    type: AudioType = attr(AudioType, required=True)
