"""Serial ports and consoles: the host side (-chardev) and the guest's port (-device)."""

from __future__ import annotations

from qemuwrap.conf.devices.chardev import CharDevice, CharType, ConsoleTargetType, SourceMode
from qemuwrap.conf.xmlreader import Node
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext


def chardev(ctx: BuildContext, chr_id: str, dev: CharDevice, node: Node | None,
            log: str | None = None) -> None:
    if dev.type == CharType.PTY:
        # A pty drops output nobody reads: keep the console in the state directory too.
        value = optstr("pty", id=chr_id, logfile=log, logappend="off" if log else None)
    elif dev.type == CharType.FILE:
        value = optstr("file", id=chr_id, path=dev.path)
    else:
        server = dev.source is not None and dev.source.mode == SourceMode.BIND
        value = optstr("socket", id=chr_id, path=dev.path, server="on" if server else "off",
                       wait="off" if server else None)
    ctx.cmd.add("-chardev", value, node)


def serial_ports(ctx: BuildContext) -> list[tuple[int, CharDevice]]:
    """(port, device) of every ISA serial port: <serial>s, and <console>s with target
    'serial' that name a port no <serial> has (libvirt's alias of serial port N)."""
    devs = ctx.dom.devices
    ports: dict[int, CharDevice] = {s.port: s for s in devs.serials}
    for console in devs.consoles:
        if console.target_type == ConsoleTargetType.SERIAL and console.port not in ports:
            ports[console.port] = console
    return sorted(ports.items())


def virtio_consoles(ctx: BuildContext) -> list:
    return [c for c in ctx.dom.devices.consoles if c.target_type == ConsoleTargetType.VIRTIO]


def build_chardevs(ctx: BuildContext) -> None:
    for port, dev in serial_ports(ctx):
        chardev(ctx, f"charserial{port}", dev, dev.node, ctx.paths.serial_log(port))
        ctx.cmd.add("-device", optstr("isa-serial", chardev=f"charserial{port}",
                                      id=f"serial{port}", index=port), dev.node)
    for console in virtio_consoles(ctx):
        chr_id = f"charconsole{console.port}"
        chardev(ctx, chr_id, console, console.node)
        ctx.cmd.add("-device", optstr("virtconsole", chardev=chr_id,
                                      id=f"console{console.port}", nr=console.port),
                    console.node)
