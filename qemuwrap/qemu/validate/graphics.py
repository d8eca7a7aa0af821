"""Checks of graphics (libvirt's qemuValidateDomainDeviceDefGraphics and the refusals
its builder makes), and the network a listen names.  What the host must have for them
(TLS certificates, a named render node, socket directories, a D-Bus bus) is a host
check: ``validate/uihost.py``."""

from __future__ import annotations

import glob
import os

from qemuwrap.conf.devices.audio import AudioType, find_audio
from qemuwrap.conf.devices.graphics import (
    GL,
    Graphics,
    GraphicsDBus,
    GraphicsSDL,
    GraphicsSpice,
    GraphicsType,
    GraphicsVNC,
    ListenType,
    SpiceChannelMode,
    _Listening,
)
from qemuwrap.errors import QemuwrapError
from qemuwrap.hints import TYPE_CHECKING
from qemuwrap.qemu.build.graphics import VNC_PORT_MIN, network_address
from qemuwrap.qemu.validate.audio import check_audio_ref, displays

if TYPE_CHECKING:
    from qemuwrap.qemu.validate import Validation

#: What a SPICE server with a TLS port reads from its x509 directory.
SPICE_TLS_FILES = ("ca-cert.pem", "server-cert.pem", "server-key.pem")
#: A UNIX socket path longer than this does not fit sockaddr_un.sun_path.
MAX_SOCKET_PATH = 107
VNC_MAX_PASSWORD = 8
#: The -display types (one at most: QEMU has one display).
DISPLAY_TYPES = (GraphicsType.SDL, GraphicsType.EGL_HEADLESS, GraphicsType.DBUS)


def render_nodes() -> list[str]:
    """This host's DRM render nodes (what libvirt's virHostGetDRMRenderNode looks for)."""
    return sorted(glob.glob("/dev/dri/renderD*"))


def check_render_node(v: Validation, gl: GL) -> None:
    if gl.rendernode is None and not render_nodes():  # the builder picks one
        v.refuse(gl, "OpenGL needs a DRM render node, and this host has none (/dev/dri)")


def check_socket(v: Validation, where, path: str | None) -> None:
    """A server socket QEMU creates must fit a UNIX socket address (that its directory
    exists is a host check: ``validate/uihost.py``)."""
    if path is not None and len(os.fsencode(path)) > MAX_SOCKET_PATH:
        v.refuse(where, f"socket path '{path}' is longer than {MAX_SOCKET_PATH} bytes, "
                        "too long for a UNIX socket")


def check_listen(v: Validation, gfx: _Listening) -> None:
    listen = gfx.listen
    if listen is None:
        return
    where = listen if listen.node is not None else gfx  # made from listen=/socket=
    if listen.type == ListenType.SOCKET:
        check_socket(v, where, listen.socket)
    elif listen.type == ListenType.NETWORK and listen.network and not listen.address:
        try:
            network_address(listen.network)
        except QemuwrapError as exc:
            v.refuse(where, str(exc))


def check_vnc(v: Validation, gfx: GraphicsVNC) -> None:
    listen = gfx.listen
    if (listen is not None and listen.type in (ListenType.ADDRESS, ListenType.NETWORK)
            and not gfx.autoport and gfx.port is not None
            and not VNC_PORT_MIN <= gfx.port <= 65535):
        v.refuse(gfx, "vnc port must be in range [5900,65535]")
    if gfx.websocket is not None and not (gfx.websocket == -1 or 0 < gfx.websocket < 65536):
        v.refuse(gfx, f"vnc websocket port {gfx.websocket} is not a TCP port (or -1)")
    if gfx.passwd is not None and len(gfx.passwd) > VNC_MAX_PASSWORD:
        v.refuse(gfx, f"VNC password is {len(gfx.passwd)} characters long, only "
                      f"{VNC_MAX_PASSWORD} permitted")
    check_audio_ref(v, gfx, gfx.audio.id if gfx.audio else 0, "a VNC server")


def check_spice(v: Validation, gfx: GraphicsSpice) -> None:
    listen = gfx.listen
    tcp = listen is not None and listen.type in (ListenType.ADDRESS, ListenType.NETWORK)
    secure = tcp and bool(gfx.tls_port and gfx.tls_port > 0)
    insecure = not tcp or bool(gfx.autoport or (gfx.port and gfx.port > 0))
    for port in (gfx.port, gfx.tls_port):
        if tcp and port is not None and port > 65535:
            v.refuse(gfx, f"spice port {port} is not a TCP port")
    wanted = [gfx.default_mode, *gfx.channel_modes().values()]
    if SpiceChannelMode.SECURE in wanted and not secure:
        v.refuse(gfx, "spice secure channels set in XML configuration, but TLS connection "
                      "is not available")
    if SpiceChannelMode.INSECURE in wanted and not insecure:
        v.refuse(gfx, "spice insecure channels set in XML configuration, but plaintext "
                      "connection is not available")
    if gfx.gl is not None and gfx.gl.enable:
        check_render_node(v, gfx.gl)


def dbus_socket(address: str | None) -> str | None:
    """The socket file of a ``unix:path=...`` D-Bus address (None for other kinds)."""
    if address is None or not address.startswith("unix:"):
        return None
    for part in address[len("unix:"):].split(","):
        key, _, value = part.partition("=")
        if key == "path":
            return value
    return None


def check_dbus(v: Validation, gfx: GraphicsDBus) -> None:
    if not gfx.p2p and gfx.address is None:
        v.refuse(gfx, "a D-Bus display without address='...' or p2p='yes' needs a private "
                      "bus: libvirt starts a dbus-daemon for it, qemuwrap does not")
    if gfx.audio is not None:
        audio = find_audio(v.dom.devices.audios, gfx.audio.id)
        if audio is None:
            v.refuse(gfx.audio, f"no audio device with ID {gfx.audio.id}")
        elif audio.type != AudioType.DBUS:
            v.refuse(gfx.audio, "The associated audio is not of 'dbus' kind.")
    if gfx.gl is not None and gfx.gl.enable:
        check_render_node(v, gfx.gl)


def check_sdl(v: Validation, gfx: GraphicsSDL) -> None:
    if gfx.display is None:
        v.refuse(gfx, "SDL needs an X display: name it with display=':0' (and xauth=...); "
                      "QEMU gets no DISPLAY from qemuwrap's environment")


def check_one(v: Validation, gfx: Graphics, egl: bool) -> None:
    gtype = gfx.type
    if gtype in (GraphicsType.RDP, GraphicsType.DESKTOP):
        v.refuse(gfx, f"graphics type '{gtype}' is VirtualBox's, not QEMU's (QEMU has "
                      "vnc, spice, sdl, egl-headless and dbus)")
        return
    known = displays(v)
    if gtype in DISPLAY_TYPES and known is not None and str(gtype) not in known:
        v.refuse(gfx, f"{v.caps.emulator} has no '-display {gtype}' (QEMU's ui-{gtype} "
                      "module is not installed)")
        return
    if egl and gtype not in (GraphicsType.EGL_HEADLESS, GraphicsType.VNC,
                             GraphicsType.SPICE):
        v.refuse(gfx, "graphics type 'egl-headless' is only supported with one of: "
                      "'vnc', 'spice' graphics types")
        return
    if isinstance(gfx, _Listening):
        if gfx.passwd is not None and gfx.passwd_valid_to is not None:
            v.refuse(gfx, "passwdValidTo: QEMU takes a password's expiry only over QMP "
                          "once it runs (expire_password), which qemuwrap does not send")
        if len(gfx.listens) > 1:
            v.refuse(gfx.listens[1], "QEMU does not support multiple listens for one "
                                     "graphics device")
            return
        check_listen(v, gfx)
    if isinstance(gfx, GraphicsVNC):
        check_vnc(v, gfx)
    elif isinstance(gfx, GraphicsSpice):
        if egl and gfx.gl is not None and gfx.gl.enable:
            v.refuse(gfx.gl, "multiple OpenGL displays are not supported by QEMU")
        else:
            check_spice(v, gfx)
    elif isinstance(gfx, GraphicsDBus):
        check_dbus(v, gfx)
    elif isinstance(gfx, GraphicsSDL):
        check_sdl(v, gfx)
    elif gtype == GraphicsType.EGL_HEADLESS:
        gl = gfx.__dict__.get("gl")
        check_render_node(v, gl if gl is not None else GL(node=gfx.node))


def check_graphics(v: Validation) -> None:
    graphics = v.dom.devices.graphics
    egl = any(g.type == GraphicsType.EGL_HEADLESS for g in graphics)
    seen: set[GraphicsType] = set()
    display: GraphicsType | None = None
    for gfx in graphics:
        if gfx.type in seen:
            v.refuse(gfx, f"only one <graphics type='{gfx.type}'> is supported (QEMU has "
                          "one of each)")
            continue
        seen.add(gfx.type)
        if gfx.type in DISPLAY_TYPES:
            if display is not None:
                v.refuse(gfx, f"graphics types '{display}' and '{gfx.type}' are both a "
                              "QEMU -display: only one is possible")
                continue
            display = gfx.type
        check_one(v, gfx, egl)


CHECKS = [check_graphics]
