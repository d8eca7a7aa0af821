"""What the displays, inputs, sound and smartcards of a definition need from this host:
files and devices that exist (a named DRM render node, the directory of a VNC/SPICE
socket, SPICE's TLS certificates, a D-Bus bus, an evdev input, an OSS sound device, the
NSS database of a host smartcard).  A host check (``validate/host.py`` runs it in
dry-run, validate and start; ``--no-host-check`` skips it), not part of translation: a
golden command is the same on every machine, and libvirt 9.0 translates these too.
Every guest has inputs and an audio backend; the display and smartcard models are loaded
only for a guest that has them."""

from __future__ import annotations

import os

from qemuwrap.conf.devices.audio import AudioType
from qemuwrap.conf.devices.input import InputType
from qemuwrap.qemu.validate.audio import OSS_DEFAULT_DEVICE


def _graphics(h) -> None:
    if not h.dom.devices.graphics:
        return
    from qemuwrap.conf.devices.graphics import (
        GraphicsDBus,
        GraphicsSpice,
        GraphicsType,
        ListenType,
        _Listening,
    )
    from qemuwrap.qemu.build.graphics import SPICE_TLS_DIR
    from qemuwrap.qemu.validate.graphics import SPICE_TLS_FILES, dbus_socket

    for gfx in h.dom.devices.graphics:
        gl = gfx.__dict__.get("gl")
        if gl is not None and gl.rendernode is not None and (
                gfx.type == GraphicsType.EGL_HEADLESS or gl.enable) \
                and not os.path.exists(gl.rendernode):
            h.refuse(gl, f"render node {gl.rendernode} does not exist")
        if isinstance(gfx, _Listening) and gfx.listen is not None:
            listen = gfx.listen
            path = listen.socket if listen.type == ListenType.SOCKET else None
            if path is not None and not os.path.isdir(os.path.dirname(path) or "/"):
                where = listen if listen.node is not None else gfx
                h.refuse(where, f"the directory of socket {path} does not exist")
        if isinstance(gfx, GraphicsSpice) and gfx.tls_port and gfx.tls_port > 0 \
                and gfx.listen is not None \
                and gfx.listen.type in (ListenType.ADDRESS, ListenType.NETWORK):
            missing = [f for f in SPICE_TLS_FILES
                       if not os.path.exists(os.path.join(SPICE_TLS_DIR, f))]
            if missing:
                h.refuse(gfx, "spice TLS port set in XML configuration, but TLS is not set "
                              f"up on this host ({SPICE_TLS_DIR}/{missing[0]} does not "
                              "exist)")
        if isinstance(gfx, GraphicsDBus):
            bus = dbus_socket(gfx.address)
            if bus is not None and not os.path.exists(bus):
                h.refuse(gfx, f"no D-Bus bus listens at {bus} (address '{gfx.address}')")


def _inputs(h) -> None:
    for inp in h.dom.devices.inputs:
        if inp.type in (InputType.EVDEV, InputType.PASSTHROUGH) and inp.evdev is not None \
                and not os.path.exists(inp.evdev):
            h.refuse(inp, f"host input device {inp.evdev} does not exist")


def _audio(h) -> None:
    for audio in h.dom.devices.audios:
        if audio.type != AudioType.OSS:
            continue
        for io in (audio.input, audio.output):
            dev = (io.dev if io is not None else None) or OSS_DEFAULT_DEVICE
            if not os.path.exists(dev):
                h.refuse(io or audio, f"audio type 'oss' needs the host's sound device "
                                      f"{dev}, which does not exist")
                break


def _smartcards(h) -> None:
    if not h.dom.devices.smartcards:
        return
    from qemuwrap.conf.devices.smartcard import DEFAULT_DATABASE, SmartcardMode

    for card in h.dom.devices.smartcards:
        if card.mode == SmartcardMode.PASSTHROUGH:
            continue
        database = card.database or DEFAULT_DATABASE
        if not os.path.isdir(database):
            h.refuse(card, f"smartcard mode '{card.mode}' needs the host's NSS database "
                           f"{database}, which does not exist")


def host_ui(h) -> None:
    for check in (_graphics, _inputs, _audio, _smartcards):
        check(h)
