"""``<graphics>``: how a user sees the guest's screen."""

from __future__ import annotations

import enum

from qemuwrap.conf.devices.address import Device
from qemuwrap.conf.xmlmodel import YES_NO, Element, Int, ParseContext, Str, attr, children


class GraphicsType(enum.StrEnum):
    SDL = "sdl"
    VNC = "vnc"
    RDP = "rdp"
    DESKTOP = "desktop"
    SPICE = "spice"
    EGL_HEADLESS = "egl-headless"
    DBUS = "dbus"


class ListenType(enum.StrEnum):
    ADDRESS = "address"
    NETWORK = "network"
    SOCKET = "socket"
    NONE = "none"


#: A host name or an IPv4/IPv6 address: what QEMU's VNC server can listen on.
LISTEN_ADDRESS = Str(r"[0-9A-Za-z.:_%\-\[\]]+", what="listen address")


class Listen(Element):
    TAG = "listen"
    type: ListenType | None = attr(ListenType)
    address: str | None = attr(LISTEN_ADDRESS)


class Graphics(Device):
    TAG = "graphics"
    type: GraphicsType = attr(GraphicsType, required=True)
    port: int | None = attr(Int(-1, 65535))
    autoport: bool | None = attr(YES_NO)
    listen: str | None = attr(LISTEN_ADDRESS)
    listens: list[Listen] = children(Listen)

    def check(self, ctx: ParseContext) -> None:
        if self.port == -1 or self.autoport:
            self.port = None
        if self.port is not None and self.port < 5900:
            raise self.error(f"VNC port {self.port} is below 5900")
        self.autoport = self.port is None
        for item in self.listens:
            if item.address is not None:
                if self.listen is not None and item.address != self.listen:
                    raise item.error(f"listen address '{item.address}' differs from "
                                     f"'{self.listen}'")
                self.listen = item.address
        if self.listen is None:
            self.listen = "127.0.0.1"
        self.listens = [Listen(type=ListenType.ADDRESS, address=self.listen)]
        if self.port is None:
            self.port = -1

    @property
    def vnc_port(self) -> int | None:
        """The fixed TCP port, or None for the first free one (autoport)."""
        return None if self.autoport else self.port
