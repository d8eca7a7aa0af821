"""Sound cards and their HDA codecs (libvirt's qemuBuildSoundCommandLine)."""

from __future__ import annotations

from qemuwrap.conf.devices.address import USBAddress
from qemuwrap.conf.devices.sound import HDA_MODELS, CodecType, Sound, SoundModel
from qemuwrap.conf.xmlmodel import table
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext
from qemuwrap.qemu.build.audio import audio_id
from qemuwrap.qemu.build.usb import usb_props

SOUND_DEVICES = table(SoundModel, {
    SoundModel.SB16: "sb16", SoundModel.ES1370: "ES1370", SoundModel.AC97: "AC97",
    SoundModel.ICH6: "intel-hda", SoundModel.ICH9: "ich9-intel-hda",
    SoundModel.USB: "usb-audio"},
    not_mapped={SoundModel.PCSPK: "the PC speaker is built into pc and q35: "
                                  "-machine pcspk-audiodev",
                SoundModel.ICH7: "refused: QEMU has no ICH7 audio controller"})
CODEC_DEVICES = table(CodecType, {CodecType.DUPLEX: "hda-duplex", CodecType.MICRO: "hda-micro",
                                  CodecType.OUTPUT: "hda-output"})


def sound_bus_props(ctx: BuildContext, sound: Sound) -> dict[str, str]:
    if isinstance(sound.address, USBAddress):
        return usb_props(ctx, sound.address)
    return ctx.pci_props(sound)


def pcspk_machine_props(ctx: BuildContext) -> dict[str, str]:
    """``pcspk-audiodev=audioN`` for ``-machine`` when the guest has a PC speaker with a
    backend (the machine builder may take it from here; see :func:`add_pcspk_audiodev`)."""
    for sound in ctx.dom.devices.sounds:
        if sound.model == SoundModel.PCSPK:
            audiodev = audio_id(ctx, sound.audio_id)
            return {"pcspk-audiodev": audiodev} if audiodev else {}
    return {}


def build_sounds(ctx: BuildContext) -> None:
    for sound in ctx.dom.devices.sounds:
        audiodev = audio_id(ctx, sound.audio_id)
        if sound.model == SoundModel.PCSPK:
            add_pcspk_audiodev(ctx)
            continue
        hda = sound.model in HDA_MODELS
        ctx.cmd.add("-device", optstr(SOUND_DEVICES[sound.model], id=sound.alias_name,
                                      audiodev=None if hda else audiodev,
                                      **sound_bus_props(ctx, sound)), sound.node)
        if not hda:
            continue
        codecs = [(c.type, c.node) for c in sound.codecs] or [(CodecType.DUPLEX, None)]
        for cad, (codec, node) in enumerate(codecs):
            ctx.cmd.add("-device", optstr(CODEC_DEVICES[codec],
                                          id=f"{sound.alias_name}-codec{cad}",
                                          bus=f"{sound.alias_name}.0", cad=cad,
                                          audiodev=audiodev), node or sound.node)


def add_pcspk_audiodev(ctx: BuildContext) -> None:
    """The PC speaker is part of every pc and q35 machine; QEMU 7.2 connects it to a
    backend only through the machine property ``pcspk-audiodev`` (its ``-soundhw``,
    which libvirt 9.0 still writes, is gone).  Added to the ``-machine`` option the
    machine builder wrote (unless it already has it), so the speaker sounds through
    ``<audio>``."""
    props = pcspk_machine_props(ctx)
    for arg in ctx.cmd.args:
        if arg.option == "-machine" and arg.value is not None and props:
            if "pcspk-audiodev=" not in arg.value:
                arg.value = f"{arg.value},{optstr(**props)}"
            return
