"""How a user sees the guest (libvirt's qemuBuildGraphicsCommandLine): VNC and SPICE
servers, SDL, EGL headless and D-Bus displays.

Two things differ from libvirt on purpose, both invisible to the guest:

- a password is never in the command line nor set later over QMP: it is in a file of
  the state directory that only the owner reads (:func:`graphics_secrets`, written by
  the launcher before QEMU starts), given to QEMU as ``-object secret`` and the
  server's ``password-secret``;
- a VNC server with autoport takes QEMU's first free display (``to=99``) instead of a
  port libvirt reserves.  A SPICE server has no such option: its autoport is the first
  TCP port from 5900 up that is free when the command is built (libvirt's allocator).
"""

from __future__ import annotations

import os

from qemuwrap.conf.devices.graphics import (
    Graphics,
    GraphicsDBus,
    GraphicsEGLHeadless,
    GraphicsSDL,
    GraphicsSpice,
    GraphicsVNC,
    ListenType,
    SpiceChannelMode,
    SpiceChannelName,
    _Listening,
)
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext
from qemuwrap.qemu.build.audio import audio_id
from qemuwrap.qemu.build.props import exact_opts, on_off

#: qemu.conf's defaults, which libvirt uses when the XML names no address.
DEFAULT_LISTEN = "127.0.0.1"
#: qemu.conf's spice_tls_x509_cert_dir (default_tls_x509_cert_dir).
SPICE_TLS_DIR = "/etc/pki/qemu"
VNC_PORT_MIN = 5900
#: The last display QEMU tries for a VNC autoport (``to=``): ports 5900-5999.
VNC_AUTOPORT_TO = 99


def secret_id(gfx: Graphics, index: int) -> str:
    return f"{gfx.type}{index}-secret"


def secret_path(ctx_state_dir: str, gfx: Graphics, index: int) -> str:
    return os.path.join(ctx_state_dir, f"{gfx.type}{index}.secret")


def graphics_secrets(dom_graphics: list[Graphics], state_dir: str) -> dict[str, str]:
    """The password files QEMU reads (path -> password): the launcher writes each,
    mode 0600, before it starts QEMU (the command names them in ``-object secret``)."""
    out = {}
    for index, gfx in enumerate(dom_graphics):
        if isinstance(gfx, _Listening) and gfx.passwd is not None:
            out[secret_path(state_dir, gfx, index)] = gfx.passwd
    return out


def password_expiry_commands(dom_graphics: list[Graphics]) -> list[tuple[str, dict]]:
    """The QMP commands that make passwords expire at ``passwdValidTo`` (QEMU has no
    command-line option for it; libvirt sends ``expire_password`` after start).  For the
    supervisor to send before it resumes the guest; until it does, validation refuses
    ``passwdValidTo``."""
    import datetime

    out = []
    for gfx in dom_graphics:
        if isinstance(gfx, _Listening) and gfx.passwd is not None and gfx.passwd_valid_to:
            when = datetime.datetime.strptime(gfx.passwd_valid_to, "%Y-%m-%dT%H:%M:%S")
            epoch = int(when.replace(tzinfo=datetime.UTC).timestamp())
            out.append(("expire_password", {"protocol": str(gfx.type), "time": str(epoch)}))
    return out


def add_secret(ctx: BuildContext, gfx: _Listening, index: int) -> str:
    sid = secret_id(gfx, index)
    ctx.cmd.add("-object", optstr("secret", id=sid, format="raw",
                                  file=secret_path(ctx.paths.state_dir, gfx, index)),
                gfx.node, why="the password, in an owner-only file of the state directory")
    return sid


def network_address(name: str) -> str:
    """The IPv4 address of a qemuwrap network's own bridge (libvirt's
    networkGetNetworkAddress); raises a one-line QemuwrapError when there is none."""
    from qemuwrap import networks
    from qemuwrap.errors import QemuwrapError

    net = networks.load(name)
    if not net.has_own_bridge or not net.ips:
        raise QemuwrapError(f"network '{name}' has no IPv4 address of its own to listen on")
    return str(net.ips[0].address)


def listen_socket(ctx: BuildContext, gfx: _Listening) -> str:
    """A socket listen's path; without one, ``vnc.sock``/``spice.sock`` in the state
    directory (libvirt's in the domain's directory)."""
    listen = gfx.listen
    if listen is not None and listen.socket:
        return listen.socket
    return os.path.join(ctx.paths.state_dir, f"{gfx.type}.sock")


def listen_address(gfx: _Listening) -> str:
    listen = gfx.listen
    if listen is not None and listen.type == ListenType.NETWORK and listen.network:
        return listen.address or network_address(listen.network)
    if listen is not None and listen.address:
        return listen.address
    return DEFAULT_LISTEN


def build_vnc(ctx: BuildContext, gfx: GraphicsVNC, index: int) -> None:
    listen = gfx.listen
    assert listen is not None
    props: list[tuple[str, object]] = []
    if listen.type == ListenType.SOCKET:
        first = None
        props.append(("vnc", f"unix:{listen_socket(ctx, gfx)}"))
    elif listen.type == ListenType.NONE:
        first = "none"
    else:
        host = listen_address(gfx)
        host = f"[{host}]" if ":" in host else host
        display = 0 if gfx.autoport else (gfx.port or VNC_PORT_MIN) - VNC_PORT_MIN
        first = f"{host}:{display}"
        if gfx.autoport:
            props.append(("to", VNC_AUTOPORT_TO))
        if gfx.websocket:
            props.append(("websocket", "on" if gfx.websocket == -1 else gfx.websocket))
    if gfx.share_policy is not None:
        props.append(("share", gfx.share_policy))
    if gfx.passwd is not None:
        props.append(("password-secret", add_secret(ctx, gfx, index)))
    if gfx.power_control is not None:
        props.append(("power-control", on_off(gfx.power_control)))
    props.append(("audiodev", audio_id(ctx, gfx.audio.id if gfx.audio else 0)))
    value = optstr(first, **dict(props)) if first is not None else optstr(**dict(props))
    ctx.cmd.add("-vnc", value, gfx.node)
    if gfx.keymap:
        ctx.cmd.add("-k", gfx.keymap, gfx.node)


def free_port(host: str, start: int = VNC_PORT_MIN) -> int:
    """The first TCP port from ``start`` that nothing listens on at ``host`` now."""
    import socket  # only a SPICE autoport needs it

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for port in range(start, 65536):
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    return 0


def spice_autoport(host: str) -> int:
    """Indirection so tests can fix the port a SPICE autoport takes."""
    return free_port(host)


def build_spice(ctx: BuildContext, gfx: GraphicsSpice, index: int) -> None:
    listen = gfx.listen
    assert listen is not None
    opts: list[tuple[str, object]] = []
    first: str | None = None
    secure = False
    if listen.type == ListenType.SOCKET:
        # libvirt writes "unix,addr=": QEMU 7.2 warns that the short form is deprecated.
        opts += [("unix", "on"), ("addr", listen_socket(ctx, gfx))]
    elif listen.type == ListenType.NONE:
        opts.append(("port", 0))  # QEMU wants a port: 0 listens nowhere
    else:
        host = listen_address(gfx)
        port, tls_port = gfx.port, gfx.tls_port
        if gfx.autoport:
            port = spice_autoport(host)
        if port and port > 0:
            opts.append(("port", port))
        if tls_port and tls_port > 0:
            opts.append(("tls-port", tls_port))
            secure = True
        if (port and port > 0) or (tls_port and tls_port > 0):
            opts.append(("addr", host))
    if gfx.mouse is not None:
        opts.append(("agent-mouse", "on" if gfx.mouse.mode == "client" else "off"))
    if gfx.passwd is not None:
        opts.append(("password-secret", add_secret(ctx, gfx, index)))
    else:
        opts.append(("disable-ticketing", "on"))
    if secure:
        opts.append(("x509-dir", SPICE_TLS_DIR))
    if gfx.default_mode == SpiceChannelMode.SECURE:
        opts.append(("tls-channel", "default"))
    elif gfx.default_mode == SpiceChannelMode.INSECURE:
        opts.append(("plaintext-channel", "default"))
    modes = gfx.channel_modes()
    for name in SpiceChannelName:  # libvirt's order
        mode = modes.get(name)
        if mode == SpiceChannelMode.SECURE:
            opts.append(("tls-channel", name))
        elif mode == SpiceChannelMode.INSECURE:
            opts.append(("plaintext-channel", name))
    if gfx.image is not None:
        opts.append(("image-compression", gfx.image.compression))
    if gfx.jpeg is not None:
        opts.append(("jpeg-wan-compression", gfx.jpeg.compression))
    if gfx.zlib is not None:
        opts.append(("zlib-glz-wan-compression", gfx.zlib.compression))
    if gfx.playback is not None:
        opts.append(("playback-compression", on_off(gfx.playback.compression)))
    if gfx.streaming is not None:
        opts.append(("streaming-video", gfx.streaming.mode))
    if gfx.clipboard is not None and not gfx.clipboard.copypaste:
        opts.append(("disable-copy-paste", "on"))
    if gfx.filetransfer is not None and not gfx.filetransfer.enable:
        opts.append(("disable-agent-file-xfer", "on"))
    if gfx.gl is not None and gfx.gl.enable:
        opts.append(("gl", "on"))
        if gfx.gl.rendernode:
            opts.append(("rendernode", gfx.gl.rendernode))
    opts.append(("seamless-migration", "on"))
    ctx.cmd.add("-spice", exact_opts(first, opts), gfx.node)
    if gfx.keymap:
        ctx.cmd.add("-k", gfx.keymap, gfx.node)


def build_sdl(ctx: BuildContext, gfx: GraphicsSDL) -> None:
    if gfx.xauth:
        ctx.cmd.env["XAUTHORITY"] = gfx.xauth
    if gfx.display:
        ctx.cmd.env["DISPLAY"] = gfx.display
    if gfx.fullscreen:
        ctx.cmd.add("-full-screen", None, gfx.node)
    gl = on_off(gfx.gl.enable) if gfx.gl is not None else None
    ctx.cmd.add("-display", optstr("sdl", gl=gl), gfx.node)


def build_egl_headless(ctx: BuildContext, gfx: GraphicsEGLHeadless) -> None:
    rendernode = gfx.gl.rendernode if gfx.gl is not None else None
    ctx.cmd.add("-display", optstr("egl-headless", rendernode=rendernode), gfx.node)


def build_dbus(ctx: BuildContext, gfx: GraphicsDBus) -> None:
    gl = on_off(gfx.gl.enable) if gfx.gl is not None else None
    rendernode = gfx.gl.rendernode if gfx.gl is not None else None
    audiodev = audio_id(ctx, gfx.audio.id) if gfx.audio is not None else None
    ctx.cmd.add("-display", optstr("dbus", p2p="on" if gfx.p2p else None,
                                   addr=None if gfx.p2p else gfx.address, gl=gl,
                                   rendernode=rendernode, audiodev=audiodev), gfx.node)


def build_graphics(ctx: BuildContext) -> None:
    for index, gfx in enumerate(ctx.dom.devices.graphics):
        if isinstance(gfx, GraphicsVNC):
            build_vnc(ctx, gfx, index)
        elif isinstance(gfx, GraphicsSpice):
            build_spice(ctx, gfx, index)
        elif isinstance(gfx, GraphicsSDL):
            build_sdl(ctx, gfx)
        elif isinstance(gfx, GraphicsEGLHeadless):
            build_egl_headless(ctx, gfx)
        elif isinstance(gfx, GraphicsDBus):
            build_dbus(ctx, gfx)
        # rdp and desktop are refused by validation: QEMU has neither.
