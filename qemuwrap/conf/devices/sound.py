"""``<sound>``: the guest's sound card, its HDA codecs and the ``<audio>`` backend it
plays through."""

from __future__ import annotations

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.devices.audio import AudioRef
from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import Element, ParseContext, attr, child, children


class SoundModel(ValueSet):
    SB16 = "sb16"
    ES1370 = "es1370"
    PCSPK = "pcspk"
    AC97 = "ac97"
    ICH6 = "ich6"
    ICH7 = "ich7"
    ICH9 = "ich9"
    USB = "usb"


class CodecType(ValueSet):
    DUPLEX = "duplex"
    MICRO = "micro"
    OUTPUT = "output"


#: The Intel HDA controllers, the only cards with codecs (virDomainSoundModelSupportsCodecs).
HDA_MODELS = frozenset({SoundModel.ICH6, SoundModel.ICH9})


class Codec(Element):
    TAG = "codec"
    type: CodecType = attr(CodecType, required=True)


class Sound(PCIDevice):
    TAG = "sound"
    model: SoundModel = attr(SoundModel, required=True)
    codecs: list[Codec] = children(Codec)
    audio: AudioRef | None = child(AudioRef)

    def address_types(self) -> tuple[str, ...]:
        if self.model == SoundModel.USB:
            return ("usb",)
        if self.model in (SoundModel.SB16, SoundModel.PCSPK):
            return ()  # ISA devices at fixed ports
        return ("pci",)

    def check(self, ctx: ParseContext) -> None:
        if self.codecs and self.model not in HDA_MODELS:
            raise self.codecs[0].error(f"sound model '{self.model}' has no codecs (only "
                                       "'ich6' and 'ich9' do)")

    @property
    def audio_id(self) -> int:
        """The ``<audio>`` it names; 0: the first one (libvirt's rule)."""
        return self.audio.id if self.audio is not None else 0
