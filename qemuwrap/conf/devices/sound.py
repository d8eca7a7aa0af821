"""``<sound>``: the guest's sound card (and its codecs)."""

from __future__ import annotations

import enum

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.xmlmodel import attr


class SoundModel(enum.StrEnum):
    SB16 = "sb16"
    ES1370 = "es1370"
    PCSPK = "pcspk"
    AC97 = "ac97"
    ICH6 = "ich6"
    ICH7 = "ich7"
    ICH9 = "ich9"
    USB = "usb"


class Sound(PCIDevice):
    TAG = "sound"
    model: SoundModel = attr(SoundModel, required=True)
