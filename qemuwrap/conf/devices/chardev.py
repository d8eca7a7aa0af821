"""Character devices: ``<serial>``, ``<console>`` and what they connect to (``<source>``)."""

from __future__ import annotations

import enum

from qemuwrap.conf.devices.address import Device
from qemuwrap.conf.xmlmodel import ON_OFF, Element, Int, ParseContext, Str, attr, child


class CharType(enum.StrEnum):
    NULL = "null"
    VC = "vc"
    PTY = "pty"
    DEV = "dev"
    FILE = "file"
    PIPE = "pipe"
    STDIO = "stdio"
    UDP = "udp"
    TCP = "tcp"
    UNIX = "unix"
    SPICEVMC = "spicevmc"
    SPICEPORT = "spiceport"
    NMDM = "nmdm"
    QEMU_VDAGENT = "qemu-vdagent"
    DBUS = "dbus"


class SourceMode(enum.StrEnum):
    BIND = "bind"
    CONNECT = "connect"


class SerialTargetType(enum.StrEnum):
    ISA_SERIAL = "isa-serial"


class SerialModelName(enum.StrEnum):
    ISA_SERIAL = "isa-serial"


class ConsoleTargetType(enum.StrEnum):
    SERIAL = "serial"
    VIRTIO = "virtio"


class CharSource(Element):
    TAG = "source"
    mode: SourceMode | None = attr(SourceMode)
    path: str | None = attr(Str())  # a pty's is what libvirt reports, not a path to use
    append: bool | None = attr(ON_OFF)


class CharDevice(Device):
    """What serial ports and consoles share: a type and its source."""

    type: CharType = attr(CharType, required=True)
    source: CharSource | None = child(CharSource)

    def check(self, ctx: ParseContext) -> None:
        if self.type == CharType.PTY:
            if self.source is not None:  # libvirt reports the allocated pty here
                if self.source.mode is not None or self.source.append is not None:
                    raise self.source.error("a pty's <source> has only a path")
                self.source = None
            return
        if self.source is None or self.source.path is None:
            raise self.error(f"a '{self.type}' {self.TAG} needs a <source path=.../>")
        if not self.source.path.startswith("/"):
            raise self.source.error(f"path '{self.source.path}' must be absolute")
        if self.type == CharType.UNIX:
            if self.source.mode is None:
                self.source.mode = SourceMode.BIND
        elif self.source.mode is not None:
            raise self.source.error("attribute 'mode' is only for type='unix'")
        if self.type != CharType.FILE and self.source.append is not None:
            raise self.source.error("attribute 'append' is only for type='file'")
        if self.source.append:
            raise self.source.error("unsupported append='on'")

    @property
    def path(self) -> str | None:
        return self.source.path if self.source is not None else None


class SerialModel(Element):
    TAG = "model"
    name: SerialModelName | None = attr(SerialModelName)


class SerialTarget(Element):
    TAG = "target"
    type: SerialTargetType | None = attr(SerialTargetType)
    port: int | None = attr(Int(0, 3))
    model: SerialModel | None = child(SerialModel)


class Serial(CharDevice):
    """``<serial>``: an ISA serial port (COM1 = port 0)."""

    TAG = "serial"
    target: SerialTarget | None = child(SerialTarget)

    def check(self, ctx: ParseContext) -> None:
        super().check(ctx)
        if self.target is None:
            self.target = SerialTarget()
        self.target.type = SerialTargetType.ISA_SERIAL
        if self.target.port is None:
            self.target.port = 0

    @property
    def port(self) -> int:
        return self.target.port if self.target is not None and self.target.port else 0


class ConsoleTarget(Element):
    TAG = "target"
    type: ConsoleTargetType | None = attr(ConsoleTargetType)
    port: int | None = attr(Int(0, 30))


class Console(CharDevice):
    """``<console>``: target 'serial' is the serial port of that number (libvirt's
    alias), target 'virtio' is a virtio console (hvc0)."""

    TAG = "console"
    target: ConsoleTarget | None = child(ConsoleTarget)

    def check(self, ctx: ParseContext) -> None:
        super().check(ctx)
        if self.target is None:
            self.target = ConsoleTarget()
        if self.target.type is None:
            self.target.type = ConsoleTargetType.SERIAL
        if self.target.port is None:
            self.target.port = 0
        if self.target.type == ConsoleTargetType.SERIAL and self.target.port > 3:
            raise self.target.error(f"attribute 'port' {self.target.port} is out of range "
                                    "(0 to 3)")

    @property
    def target_type(self) -> ConsoleTargetType:
        return self.target.type if self.target and self.target.type else \
            ConsoleTargetType.SERIAL

    @property
    def port(self) -> int:
        return self.target.port if self.target is not None and self.target.port else 0


class ParallelTarget(Element):
    TAG = "target"
    port: int | None = attr(Int(0, 2))


class Parallel(CharDevice):
    """``<parallel>``: an ISA parallel port."""

    TAG = "parallel"
    target: ParallelTarget | None = child(ParallelTarget)


class ChannelTargetType(enum.StrEnum):
    VIRTIO = "virtio"
    GUESTFWD = "guestfwd"


class ChannelTarget(Element):
    TAG = "target"
    type: ChannelTargetType = attr(ChannelTargetType, required=True)
    name: str | None = attr(Str(r"[A-Za-z0-9_.\-]+", what="channel name"))


class Channel(CharDevice):
    """``<channel>``: a named virtio-serial port (the guest agent's) or a guestfwd."""

    TAG = "channel"
    target: ChannelTarget = child(ChannelTarget, required=True)
