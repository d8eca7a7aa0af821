"""How a user sees the guest: the VNC server."""

from __future__ import annotations

from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext


def build_graphics(ctx: BuildContext) -> None:
    for gfx in ctx.dom.devices.graphics:
        listen = gfx.listen or "127.0.0.1"
        host = f"[{listen}]" if ":" in listen else listen
        port = gfx.vnc_port
        display = 0 if port is None else port - 5900
        ctx.cmd.add("-vnc", optstr(f"{host}:{display}", to=99 if port is None else None),
                    gfx.node)
