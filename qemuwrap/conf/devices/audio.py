"""``<audio>``: the host side of the guest's sound (QEMU's ``-audiodev``).

Sound cards, VNC and D-Bus displays name a backend by its ``id``.  Each backend type
has its own attributes (libvirt's virDomainAudioDefParseXML reads only the ones of its
type); one given to another type is refused here rather than dropped.
"""

from __future__ import annotations

from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import (
    YES_NO,
    Element,
    Int,
    ParseContext,
    Str,
    attr,
    child,
)

UINT = Int(1, 2**32 - 1)  # libvirt's unsigned, VIR_XML_PROP_NONZERO
COUNT = Int(0, 2**32 - 1)  # unsigned, zero allowed


class AudioType(ValueSet):
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


class AudioFormat(ValueSet):
    U8 = "u8"
    S8 = "s8"
    U16 = "u16"
    S16 = "s16"
    U32 = "u32"
    S32 = "s32"
    F32 = "f32"


class SDLAudioDriver(ValueSet):
    """SDL's own driver (exported to QEMU as ``SDL_AUDIODRIVER``)."""

    ESD = "esd"
    ALSA = "alsa"
    ARTS = "arts"
    PULSEAUDIO = "pulseaudio"


class AudioSettings(Element):
    """``<settings>``: the fixed stream format (only with ``fixedSettings='yes'``)."""

    TAG = "settings"
    frequency: int | None = attr(UINT)
    channels: int | None = attr(UINT)
    sample_format: AudioFormat | None = attr(AudioFormat, xml="format")


#: Attributes of ``<input>``/``<output>`` that only some backend types have, by type.
IO_ATTRS_BY_TYPE: dict[str, frozenset[AudioType]] = {
    "dev": frozenset({AudioType.ALSA, AudioType.OSS}),
    "bufferCount": frozenset({AudioType.COREAUDIO, AudioType.OSS, AudioType.SDL}),
    "tryPoll": frozenset({AudioType.OSS}),
    "serverName": frozenset({AudioType.JACK}),
    "clientName": frozenset({AudioType.JACK}),
    "connectPorts": frozenset({AudioType.JACK}),
    "exactName": frozenset({AudioType.JACK}),
    "name": frozenset({AudioType.PULSEAUDIO}),
    "streamName": frozenset({AudioType.PULSEAUDIO}),
    "latency": frozenset({AudioType.PULSEAUDIO}),
}
#: The same for attributes of ``<audio>`` itself.
AUDIO_ATTRS_BY_TYPE: dict[str, frozenset[AudioType]] = {
    "tryMMap": frozenset({AudioType.OSS}),
    "exclusive": frozenset({AudioType.OSS}),
    "dspPolicy": frozenset({AudioType.OSS}),
    "serverName": frozenset({AudioType.PULSEAUDIO}),
    "driver": frozenset({AudioType.SDL}),
    "path": frozenset({AudioType.FILE}),
}


class AudioIO(Element):
    """``<input>`` or ``<output>``: one direction's settings."""

    mixing_engine: bool | None = attr(YES_NO, xml="mixingEngine")
    fixed_settings: bool | None = attr(YES_NO, xml="fixedSettings")
    voices: int | None = attr(UINT)
    buffer_length: int | None = attr(UINT, xml="bufferLength")
    dev: str | None = attr(Str(what="device name"))
    buffer_count: int | None = attr(COUNT, xml="bufferCount")
    try_poll: bool | None = attr(YES_NO, xml="tryPoll")
    server_name: str | None = attr(Str(what="server name"), xml="serverName")
    client_name: str | None = attr(Str(what="client name"), xml="clientName")
    connect_ports: str | None = attr(Str(what="port pattern"), xml="connectPorts")
    exact_name: bool | None = attr(YES_NO, xml="exactName")
    name: str | None = attr(Str(what="name"))
    stream_name: str | None = attr(Str(what="stream name"), xml="streamName")
    latency: int | None = attr(COUNT)
    settings: AudioSettings | None = child(AudioSettings)

    def check(self, ctx: ParseContext) -> None:
        if self.fixed_settings and not self.mixing_engine:
            raise self.error("fixed audio settings requires mixing engine")
        if self.settings is not None and not self.fixed_settings:
            raise self.error("audio settings specified without fixed settings flag")


class AudioInput(AudioIO):
    TAG = "input"


class AudioOutput(AudioIO):
    TAG = "output"


class Audio(Element):
    TAG = "audio"
    id: int = attr(UINT, required=True)
    type: AudioType = attr(AudioType, required=True)
    timer_period: int | None = attr(UINT, xml="timerPeriod")
    try_mmap: bool | None = attr(YES_NO, xml="tryMMap")
    exclusive: bool | None = attr(YES_NO)
    dsp_policy: int | None = attr(Int(0, 2**31 - 1), xml="dspPolicy")
    server_name: str | None = attr(Str(what="server name"), xml="serverName")
    driver: SDLAudioDriver | None = attr(SDLAudioDriver)
    #: libvirt passes a relative path on as it is: QEMU's working directory decides.
    path: str | None = attr(Str(empty=False, what="path"))
    input: AudioInput | None = child(AudioInput)
    output: AudioOutput | None = child(AudioOutput)

    def check(self, ctx: ParseContext) -> None:
        for cls, table, owners in ((Audio, AUDIO_ATTRS_BY_TYPE, (self,)),
                                   (AudioIO, IO_ATTRS_BY_TYPE, (self.input, self.output))):
            for owner in owners:
                if owner is None:
                    continue
                for f in cls._attrs:
                    types = table.get(f.xml or "")
                    if types and self.type not in types and owner.__dict__[f.name] is not None:
                        names = ", ".join(f"'{t}'" for t in sorted(types))
                        raise owner.error(f"attribute '{f.xml}' is only for audio type "
                                          f"{names}, not '{self.type}'")

    @property
    def alias(self) -> str:
        """QEMU's id of this backend (libvirt's ``audioN``)."""
        return f"audio{self.id}"


def find_audio(audios: list[Audio], audio_id: int) -> Audio | None:
    return next((a for a in audios if a.id == audio_id), None)


class AudioRef(Element):
    """``<audio id='N'/>`` inside a sound card or a display: the backend it uses."""

    TAG = "audio"
    id: int = attr(UINT, required=True)


def default_audio_type(graphics_types: list[str]) -> AudioType | None:
    """The backend libvirt 9.0 adds when a definition has no ``<audio>``
    (qemuDomainDefSuggestDefaultAudioBackend with qemu.conf's defaults): 'none' for VNC
    and for no graphics at all, 'spice' for SPICE, the last graphics deciding.  SDL asks
    for the host's audio ("passthrough"), which libvirt takes from its own
    ``QEMU_AUDIO_DRV``: qemuwrap, like a libvirtd without that variable, adds none."""
    add, passthrough, backend = False, False, AudioType.NONE
    for gtype in graphics_types:
        if gtype == "vnc":
            add, passthrough, backend = True, False, AudioType.NONE
        elif gtype == "spice":
            add, passthrough, backend = True, False, AudioType.SPICE
        elif gtype == "sdl":
            add, passthrough = True, True
    if not graphics_types:
        add, passthrough, backend = True, False, AudioType.NONE
    return backend if add and not passthrough else None


def add_default_audio(audios: list[Audio], graphics_types: list[str]) -> None:
    """libvirt's qemuDomainDefAddDefaultAudioBackend: ``<audio id='1'>`` of the default
    type when the definition has none (idempotent)."""
    if audios:
        return
    audio_type = default_audio_type(graphics_types)
    if audio_type is not None:
        audios.append(Audio(id=1, type=audio_type))
