"""Audio backends: one ``-audiodev`` per ``<audio>`` (libvirt's qemuBuildAudioCommandLine),
and the ``audiodev=`` a sound card or display names."""

from __future__ import annotations

from qemuwrap.conf.devices.audio import Audio, AudioIO, AudioType, find_audio
from qemuwrap.conf.xmlmodel import table
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext
from qemuwrap.qemu.build.props import on_off

#: QEMU's audiodev driver for each backend type (libvirt's qemuAudioDriver).
AUDIO_DRIVERS = table(AudioType, {
    AudioType.NONE: "none", AudioType.ALSA: "alsa", AudioType.COREAUDIO: "coreaudio",
    AudioType.JACK: "jack", AudioType.OSS: "oss", AudioType.PULSEAUDIO: "pa",
    AudioType.SDL: "sdl", AudioType.SPICE: "spice", AudioType.FILE: "wav",
    AudioType.DBUS: "dbus"})



def io_props(prefix: str, io: AudioIO | None, audio_type: AudioType) -> dict[str, object]:
    """``in.*``/``out.*``: the common settings, then the backend's own (libvirt's order)."""
    if io is None:
        return {}
    settings = io.settings if io.fixed_settings else None
    props: dict[str, object] = {
        "mixing-engine": on_off(io.mixing_engine),
        "fixed-settings": on_off(io.fixed_settings),
        "voices": io.voices,
        "buffer-length": io.buffer_length,
        "frequency": settings.frequency if settings else None,
        "channels": settings.channels if settings else None,
        "format": settings.sample_format if settings else None,
    }
    if audio_type == AudioType.ALSA:
        props["dev"] = io.dev
    elif audio_type in (AudioType.COREAUDIO, AudioType.SDL):
        props["buffer-count"] = io.buffer_count
    elif audio_type == AudioType.JACK:
        props.update({"server-name": io.server_name, "client-name": io.client_name,
                      "connect-ports": io.connect_ports,
                      "exact-name": on_off(io.exact_name)})
    elif audio_type == AudioType.OSS:
        props.update({"dev": io.dev, "buffer-count": io.buffer_count,
                      "try-poll": on_off(io.try_poll)})
    elif audio_type == AudioType.PULSEAUDIO:
        props.update({"name": io.name, "stream-name": io.stream_name,
                      "latency": io.latency})
    return {f"{prefix}.{key}": value for key, value in props.items() if value is not None}


def audiodev(audio: Audio) -> str:
    """The ``-audiodev`` value of one backend (qemuBuildAudioCommandLineArg)."""
    props: dict[str, object] = {"id": audio.alias, "timer-period": audio.timer_period}
    if audio.type == AudioType.OSS:
        props.update({"try-mmap": on_off(audio.try_mmap),
                      "exclusive": on_off(audio.exclusive),
                      "dsp-policy": audio.dsp_policy})
    elif audio.type == AudioType.PULSEAUDIO:
        props["server"] = audio.server_name
    elif audio.type == AudioType.FILE:
        props["path"] = audio.path
    props.update(io_props("in", audio.input, audio.type))
    props.update(io_props("out", audio.output, audio.type))
    return optstr(AUDIO_DRIVERS[audio.type], **props)


def build_audios(ctx: BuildContext) -> None:
    for audio in ctx.dom.devices.audios:
        ctx.cmd.add("-audiodev", audiodev(audio), audio.node)
        if audio.type == AudioType.SDL and audio.driver is not None:
            ctx.cmd.env["SDL_AUDIODRIVER"] = str(audio.driver)


def audio_id(ctx: BuildContext, wanted: int) -> str | None:
    """``audioN`` of the backend with id ``wanted`` (0: the first one), as libvirt's
    qemuGetAudioIDString; None when there is none (validation refused that)."""
    audios = ctx.dom.devices.audios
    if wanted == 0:
        return audios[0].alias if audios else None
    found = find_audio(audios, wanted)
    return found.alias if found is not None else None
