"""``<graphics>``: how a user sees and drives the guest's screen.

One class per ``type`` (a variant of :class:`Graphics`): VNC and SPICE servers, SDL and
D-Bus displays, EGL headless rendering; RDP and desktop are read so they can be
refused by name (QEMU has neither).  libvirt's post-parse is done in ``check``: the
legacy ``listen``/``socket`` attributes and the first ``<listen>`` are one thing,
port ``-1`` means autoport, SPICE without any port listens nowhere (``type='none'``).
"""

from __future__ import annotations

from qemuwrap.conf.devices.audio import AudioRef
from qemuwrap.conf.valueset import ValueSet
from qemuwrap.conf.xmlmodel import (
    ON_OFF,
    YES_NO,
    Element,
    Int,
    KindError,
    ParseContext,
    Path,
    Str,
    attr,
    child,
    children,
)


class GraphicsType(ValueSet):
    SDL = "sdl"
    VNC = "vnc"
    RDP = "rdp"
    DESKTOP = "desktop"
    SPICE = "spice"
    EGL_HEADLESS = "egl-headless"
    DBUS = "dbus"


class ListenType(ValueSet):
    ADDRESS = "address"
    NETWORK = "network"
    SOCKET = "socket"
    NONE = "none"


class SharePolicy(ValueSet):
    ALLOW_EXCLUSIVE = "allow-exclusive"
    FORCE_SHARED = "force-shared"
    IGNORE = "ignore"


class Connected(ValueSet):
    """What happens to connected clients when the password changes."""

    FAIL = "fail"
    DISCONNECT = "disconnect"
    KEEP = "keep"


class SpiceChannelName(ValueSet):
    MAIN = "main"
    DISPLAY = "display"
    INPUTS = "inputs"
    CURSOR = "cursor"
    PLAYBACK = "playback"
    RECORD = "record"
    SMARTCARD = "smartcard"
    USBREDIR = "usbredir"


class SpiceChannelMode(ValueSet):
    ANY = "any"
    SECURE = "secure"
    INSECURE = "insecure"


class ImageCompression(ValueSet):
    AUTO_GLZ = "auto_glz"
    AUTO_LZ = "auto_lz"
    QUIC = "quic"
    GLZ = "glz"
    LZ = "lz"
    OFF = "off"


class WanCompression(ValueSet):
    """``<jpeg>`` and ``<zlib>`` compression over a WAN."""

    AUTO = "auto"
    NEVER = "never"
    ALWAYS = "always"


class StreamingMode(ValueSet):
    FILTER = "filter"
    ALL = "all"
    OFF = "off"


class MouseMode(ValueSet):
    SERVER = "server"
    CLIENT = "client"


#: A host name or an IPv4/IPv6 address: what a VNC or SPICE server can listen on.
LISTEN_ADDRESS = Str(r"[0-9A-Za-z.:_%\-\[\]]+", what="listen address")
#: libvirt's "cannot parse vnc port": a C int.
PORT = Int(-(2**31), 2**31 - 1)
NETWORK_NAME = Str(r"[^/\s]+", what="network name")
KEYMAP = Str(r"[A-Za-z0-9_\-]+", what="keymap")


class ValidTo(Str):
    """``passwdValidTo``: ``YYYY-MM-DDTHH:MM:SS`` in UTC."""

    def __init__(self) -> None:
        super().__init__(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}",
                         what="time (expect YYYY-MM-DDTHH:MM:SS)")

    def parse(self, raw: str, name: str) -> str:
        import datetime  # only for this rare attribute: not on every dry run's path

        value = super().parse(raw, name)
        try:
            datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S")
        except ValueError:
            raise KindError(f"cannot parse password validity time '{value}', expect "
                            "YYYY-MM-DDTHH:MM:SS", declared=False) from None
        return value


class Listen(Element):
    TAG = "listen"
    type: ListenType = attr(ListenType, required=True)
    address: str | None = attr(LISTEN_ADDRESS)
    network: str | None = attr(NETWORK_NAME)
    socket: str | None = attr(Path())


class GL(Element):
    """``<gl>``: OpenGL for the display (SPICE, SDL, D-Bus, EGL headless)."""

    TAG = "gl"
    enable: bool | None = attr(YES_NO)
    rendernode: str | None = attr(Path())


class SpiceChannel(Element):
    TAG = "channel"
    name: SpiceChannelName = attr(SpiceChannelName, required=True)
    mode: SpiceChannelMode = attr(SpiceChannelMode, required=True)


class SpiceImage(Element):
    TAG = "image"
    compression: ImageCompression = attr(ImageCompression, required=True)


class SpiceJpeg(Element):
    TAG = "jpeg"
    compression: WanCompression = attr(WanCompression, required=True)


class SpiceZlib(Element):
    TAG = "zlib"
    compression: WanCompression = attr(WanCompression, required=True)


class SpicePlayback(Element):
    TAG = "playback"
    compression: bool = attr(ON_OFF, required=True)


class SpiceStreaming(Element):
    TAG = "streaming"
    mode: StreamingMode = attr(StreamingMode, required=True)


class SpiceClipboard(Element):
    TAG = "clipboard"
    copypaste: bool = attr(YES_NO, required=True)


class SpiceFiletransfer(Element):
    TAG = "filetransfer"
    enable: bool = attr(YES_NO, required=True)


class SpiceMouse(Element):
    TAG = "mouse"
    mode: MouseMode = attr(MouseMode, required=True)


class Graphics(Element):
    """``<graphics type=...>``: one variant class per type."""

    TAG = "graphics"
    VARIANT_ATTR = "type"
    #: The TCP port of a VNC or SPICE server (-1: any free one); None for the others.
    port: int | None = None

    @property
    def type(self) -> GraphicsType:
        return GraphicsType(self.VARIANT or "")

    @property
    def fixed_ports(self) -> list[int]:
        """TCP ports this server always takes (two guests cannot share them)."""
        return []

    @property
    def listen(self) -> Listen | None:
        """The listen QEMU uses: the first one (libvirt's virDomainGraphicsGetListen)."""
        listens = self.__dict__.get("listens")
        return listens[0] if listens else None


class _Listening(Graphics):
    """What VNC and SPICE share: where they listen, a keymap, a password."""

    _variants = Graphics._variants  # an intermediate class: its variants are Graphics'

    # Declared by each subclass, in libvirt's order of attributes.
    listen_compat: str | None
    keymap: str | None
    passwd: str | None
    passwd_valid_to: str | None
    connected: Connected | None
    listens: list[Listen]

    def merge_listens(self, socket_compat: str | None = None) -> None:
        """libvirt's virDomainGraphicsListensParseXML: the legacy attributes and the
        first ``<listen>`` are the same listen; without any, one from the attributes."""
        if not self.listens:
            if socket_compat is not None:
                self.listens = [Listen(type=ListenType.SOCKET, socket=socket_compat)]
            else:
                self.listens = [Listen(type=ListenType.ADDRESS, address=self.listen_compat)]
        else:
            first = self.listens[0]
            if first.type == ListenType.ADDRESS:
                if (first.address and self.listen_compat
                        and first.address != self.listen_compat):
                    raise first.error(f"graphics 'listen' attribute '{self.listen_compat}' "
                                      "must match 'address' attribute of first listen "
                                      f"element (found '{first.address}')")
                first.address = first.address or self.listen_compat
            elif socket_compat is not None and first.type == ListenType.NETWORK:
                self.listens[0] = Listen(type=ListenType.SOCKET, socket=socket_compat)
            elif first.type == ListenType.SOCKET and socket_compat is not None:
                if first.socket and first.socket != socket_compat:
                    raise first.error(f"graphics 'socket' attribute '{socket_compat}' must "
                                      "match 'socket' attribute of first listen element "
                                      f"(found '{first.socket}')")
                first.socket = first.socket or socket_compat
        for item in self.listens:
            if item.network is not None and item.type != ListenType.NETWORK:
                raise item.error("'network' attribute is valid only for listen type "
                                 "'network'")
            if item.socket is not None and item.type != ListenType.SOCKET:
                raise item.error("'socket' attribute is valid only for listen type "
                                 "'socket'")
            if item.address is not None and item.type not in (ListenType.ADDRESS,
                                                              ListenType.NETWORK):
                raise item.error("'address' attribute is valid only for listen type "
                                 "'address' or 'network'")
            if item.type == ListenType.NETWORK and item.network is None:
                raise item.error("'network' attribute is required for listen type "
                                 "'network'")
        first = self.listens[0]
        self.listen_compat = first.address if first.type == ListenType.ADDRESS else None


class GraphicsVNC(_Listening):
    VARIANT = "vnc"
    socket: str | None = attr(Path())
    port: int | None = attr(PORT)
    autoport: bool | None = attr(YES_NO)
    websocket: int | None = attr(PORT)
    listen_compat: str | None = attr(LISTEN_ADDRESS, xml="listen")
    keymap: str | None = attr(KEYMAP)
    share_policy: SharePolicy | None = attr(SharePolicy, xml="sharePolicy")
    power_control: bool | None = attr(YES_NO, xml="powerControl")
    passwd: str | None = attr(Str(strip=False))
    passwd_valid_to: str | None = attr(ValidTo(), xml="passwdValidTo")
    connected: Connected | None = attr(Connected)
    listens: list[Listen] = children(Listen)
    audio: AudioRef | None = child(AudioRef)

    def check(self, ctx: ParseContext) -> None:
        if self.connected is not None and self.connected != Connected.KEEP:
            raise self.error("VNC supports connected='keep' only")
        self.merge_listens(self.socket)
        self.socket = None
        # libvirt: no port or port -1 is autoport, unless autoport= says otherwise.
        auto = self.port is None or self.port == -1
        self.autoport = auto if self.autoport is None else self.autoport
        if self.autoport:
            self.port = -1
        elif self.port is None:
            self.port = 0  # refused by validation: not a VNC port
        if self.listen is not None and self.listen.type == ListenType.SOCKET:
            self.port = self.autoport = None  # libvirt writes neither for a socket

    @property
    def fixed_ports(self) -> list[int]:
        ports = [self.port] if self.port is not None and self.port > 0 else []
        return ports + ([self.websocket] if self.websocket and self.websocket > 0 else [])


class GraphicsSpice(_Listening):
    VARIANT = "spice"
    port: int | None = attr(PORT)
    tls_port: int | None = attr(PORT, xml="tlsPort")
    autoport: bool | None = attr(YES_NO)
    listen_compat: str | None = attr(LISTEN_ADDRESS, xml="listen")
    keymap: str | None = attr(KEYMAP)
    default_mode: SpiceChannelMode | None = attr(SpiceChannelMode, xml="defaultMode")
    passwd: str | None = attr(Str(strip=False))
    passwd_valid_to: str | None = attr(ValidTo(), xml="passwdValidTo")
    connected: Connected | None = attr(Connected)
    listens: list[Listen] = children(Listen)
    channels: list[SpiceChannel] = children(SpiceChannel)
    image: SpiceImage | None = child(SpiceImage)
    jpeg: SpiceJpeg | None = child(SpiceJpeg)
    zlib: SpiceZlib | None = child(SpiceZlib)
    playback: SpicePlayback | None = child(SpicePlayback)
    streaming: SpiceStreaming | None = child(SpiceStreaming)
    mouse: SpiceMouse | None = child(SpiceMouse)
    clipboard: SpiceClipboard | None = child(SpiceClipboard)
    filetransfer: SpiceFiletransfer | None = child(SpiceFiletransfer)
    gl: GL | None = child(GL)

    def check(self, ctx: ParseContext) -> None:
        if self.gl is not None and self.gl.enable is None:
            raise self.gl.error("missing attribute 'enable'")
        seen: set[SpiceChannelName] = set()
        for chan in self.channels:
            if chan.name in seen:
                raise chan.error(f"spice channel '{chan.name}' is listed twice")
            seen.add(chan.name)
        self.merge_listens()
        if self.port == -1 and self.tls_port == -1:
            self.autoport = True  # legacy spelling of autoport
        if self.autoport:
            self.port = self.tls_port = None
        first = self.listens[0]
        if (first.type == ListenType.ADDRESS and not self.port and not self.tls_port
                and not self.autoport):
            # libvirt's virDomainDefPostParseGraphics: no port anywhere is listen 'none'.
            first.type, first.address = ListenType.NONE, None
            self.listen_compat = None
        if first.type in (ListenType.SOCKET, ListenType.NONE):
            self.port = self.tls_port = None

    def channel_modes(self) -> dict[SpiceChannelName, SpiceChannelMode]:
        return {c.name: c.mode for c in self.channels if c.mode != SpiceChannelMode.ANY}

    @property
    def fixed_ports(self) -> list[int]:
        return [p for p in (self.port, self.tls_port) if p is not None and p > 0]


class GraphicsSDL(Graphics):
    VARIANT = "sdl"
    display: str | None = attr(Str(r"[A-Za-z0-9_.\-]*:[0-9]+(\.[0-9]+)?", what="X display"))
    xauth: str | None = attr(Path())
    fullscreen: bool | None = attr(YES_NO)
    gl: GL | None = child(GL)

    def check(self, ctx: ParseContext) -> None:
        if self.gl is not None:
            if self.gl.enable is None:
                raise self.gl.error("missing attribute 'enable'")
            if self.gl.rendernode is not None:
                raise self.gl.error("attribute 'rendernode' is not for SDL")


class GraphicsEGLHeadless(Graphics):
    VARIANT = "egl-headless"
    gl: GL | None = child(GL)

    def check(self, ctx: ParseContext) -> None:
        if self.gl is not None and self.gl.enable is not None:
            raise self.gl.error("attribute 'enable' is not for egl-headless")


class GraphicsDBus(Graphics):
    VARIANT = "dbus"
    address: str | None = attr(Str(empty=False, what="D-Bus address"))
    p2p: bool | None = attr(YES_NO)
    gl: GL | None = child(GL)
    audio: AudioRef | None = child(AudioRef)

    def check(self, ctx: ParseContext) -> None:
        if self.gl is not None and self.gl.enable is None:
            raise self.gl.error("missing attribute 'enable'")
        if self.p2p and self.address is not None:
            raise self.error("D-Bus p2p with an address is not supported")


class GraphicsRDP(Graphics):
    """Read to be refused by name: QEMU has no RDP server (VirtualBox's)."""

    VARIANT = "rdp"
    port: int | None = attr(PORT)
    autoport: bool | None = attr(YES_NO)
    replace_user: bool | None = attr(YES_NO, xml="replaceUser")
    multi_user: bool | None = attr(YES_NO, xml="multiUser")
    listen_compat: str | None = attr(LISTEN_ADDRESS, xml="listen")
    listens: list[Listen] = children(Listen)


class GraphicsDesktop(Graphics):
    """Read to be refused by name: a VirtualBox desktop window, not QEMU's."""

    VARIANT = "desktop"
    display: str | None = attr(Str(what="X display"))
    fullscreen: bool | None = attr(YES_NO)


def graphics_types(graphics: list[Graphics]) -> list[GraphicsType]:
    return [g.type for g in graphics]
