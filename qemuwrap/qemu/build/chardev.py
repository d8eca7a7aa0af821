"""Character devices (libvirt's qemuBuildChardevCommand and the serial, parallel, channel
and console command lines): the host end (``-chardev``) and the guest's port
(``-device``), in libvirt's order: serials, parallels, channels, consoles.

:func:`chardev` builds the host end of any device that has one (also rng's egd
backend, vhost-user NICs, smartcards and redirected USB devices).
"""

from __future__ import annotations

import os

from qemuwrap.conf.devices.address import ISAAddress, VirtioSerialAddress
from qemuwrap.conf.devices.chardev import (
    Channel,
    ChannelTargetType,
    CharType,
    ChrSpec,
    ConsoleTargetType,
    Serial,
    SerialModelName,
    chr_spec,
)
from qemuwrap.conf.devices.controller import ControllerType
from qemuwrap.conf.xmlmodel import table
from qemuwrap.conf.xmlreader import Node
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext
from qemuwrap.qemu.build.props import exact_opts, on_off

#: QEMU's chardev backend of each type (dev: serial, or parallel for a parallel port).
BACKENDS = table(CharType, {
    CharType.NULL: "null", CharType.VC: "vc", CharType.PTY: "pty", CharType.DEV: "serial",
    CharType.FILE: "file", CharType.PIPE: "pipe", CharType.STDIO: "stdio",
    CharType.UDP: "udp", CharType.TCP: "socket", CharType.UNIX: "socket",
    CharType.SPICEVMC: "spicevmc", CharType.SPICEPORT: "spiceport",
    CharType.QEMU_VDAGENT: "qemu-vdagent", CharType.DBUS: "dbus"},
    not_mapped={CharType.NMDM: "FreeBSD's null modem: refused (qemu/validate/chardev.py)"})
#: The -device of each serial port model QEMU x86 has.
SERIAL_DEVICES = table(SerialModelName, {
    SerialModelName.ISA_SERIAL: "isa-serial", SerialModelName.USB_SERIAL: "usb-serial",
    SerialModelName.PCI_SERIAL: "pci-serial", SerialModelName.ISA_DEBUGCON: "isa-debugcon"},
    not_mapped={m: "not an x86 device: refused (qemu/validate/chardev.py)" for m in (
        SerialModelName.SPAPR_VTY, SerialModelName.PL011, SerialModelName.UART_16550A,
        SerialModelName.SCLPCONSOLE, SerialModelName.SCLPLMCONSOLE)})
#: Where libvirt's TLS certificates for chardevs are (qemu.conf's chardev_tls_x509_cert_dir
#: default: the first that exists).
TLS_DIRS = ("/etc/pki/libvirt-chardev", "/etc/pki/qemu")
#: The name QEMU's spicevmc chardev gets for a channel (spice's vdagent).
SPICEVMC_VDAGENT = "vdagent"



def tls_dir() -> str:
    """The certificate directory a chardev's TLS uses (libvirt's default)."""
    return next((d for d in TLS_DIRS if os.path.isdir(d)), TLS_DIRS[-1])


def chardev_value(chr_id: str, spec: ChrSpec, *, parallel: bool = False, wait: bool = False,
                  tls_creds: str | None = None, spicevmc_name: str = SPICEVMC_VDAGENT,
                  default_log: str | None = None) -> str:
    """One ``-chardev`` value (qemuBuildChardevStr); ``wait``: a listening socket waits
    for its peer before QEMU runs (vhost-user); ``default_log``: where output goes when
    the XML names no ``<log>`` (qemuwrap keeps a pty serial console's)."""
    kind = spec.type
    props: list[tuple[str, object]] = [("id", chr_id)]
    backend = BACKENDS[kind]
    if kind == CharType.DEV:
        backend = "parallel" if parallel else "serial"
        props.append(("path", spec.path))
    elif kind == CharType.FILE:
        props += [("path", spec.path), ("append", on_off(spec.append))]
    elif kind == CharType.PIPE:
        props.append(("path", spec.path))
    elif kind == CharType.UDP:
        props += [("host", spec.host or ""), ("port", spec.service),
                  ("localaddr", spec.bind_host or ""), ("localport", spec.bind_service or "0")]
    elif kind in (CharType.TCP, CharType.UNIX):
        if kind == CharType.TCP:
            props += [("host", spec.host), ("port", spec.service),
                      ("telnet", "on" if spec.telnet else None)]
        else:
            props.append(("path", spec.path))
        if spec.listen:
            props += [("server", "on"), ("wait", None if wait else "off")]
        if spec.reconnect is not None:
            props.append(("reconnect", spec.reconnect_timeout if spec.reconnect else 0))
        props.append(("tls-creds", tls_creds))
    elif kind == CharType.SPICEVMC:
        props.append(("name", spicevmc_name))
    elif kind in (CharType.SPICEPORT, CharType.DBUS):
        props.append(("name", spec.channel))
    elif kind == CharType.QEMU_VDAGENT:
        mouse = None if spec.mouse is None else ("on" if spec.mouse == "client" else "off")
        props += [("name", "vdagent"), ("clipboard", on_off(spec.clipboard)),
                  ("mouse", mouse)]
    log, append = spec.log_file, spec.log_append
    if log is None and default_log is not None:  # kept across starts, marked by the supervisor
        log, append = default_log, True
    if log is not None:
        props += [("logfile", log), ("logappend", on_off(append))]
    return exact_opts(backend, props)


def chardev(ctx: BuildContext, chr_id: str, dev, node: Node | None,
            log: str | None = None, *, parallel: bool = False, wait: bool = False,
            spicevmc_name: str = SPICEVMC_VDAGENT, path: str | None = None) -> None:
    """``-chardev`` for ``dev``'s host end (``type``, ``<source>``, ``<protocol>``,
    ``<log>``), after its TLS credentials object when it has one; ``log``: the default
    log file (see :func:`chardev_value`); ``path``: the socket path qemuwrap chose for
    a unix source that names none."""
    spec = chr_spec(dev)
    if path is not None and spec.path is None:
        spec.path = path
    tls_creds = None
    if spec.type == CharType.TCP and spec.tls:
        tls_creds = f"obj{chr_id}_tls0"  # qemuAliasTLSObjFromSrcAlias
        ctx.cmd.add("-object", optstr("tls-creds-x509", id=tls_creds, dir=tls_dir(),
                                      endpoint="server" if spec.listen else "client",
                                      verify_peer="on"), node)
    why = None
    if spec.seclabels:
        why = "<seclabel> read, not enforced: qemuwrap runs no security driver"
    ctx.cmd.add("-chardev", chardev_value(chr_id, spec, parallel=parallel, wait=wait,
                                          tls_creds=tls_creds, spicevmc_name=spicevmc_name,
                                          default_log=log), node, why)


# --------------------------------------------------------------------------- the ports
def isa_props(dev) -> list[tuple[str, object]]:
    addr = dev.address
    if not isinstance(addr, ISAAddress):
        return []
    return [("iobase", f"{addr.iobase:#x}" if addr.iobase is not None else None),
            ("irq", f"{addr.irq:#x}" if addr.irq is not None else None)]


def usb_bus(ctx: BuildContext, bus: int) -> str:
    """``ALIAS.0`` of the USB controller with index ``bus``."""
    for ctrl in ctx.dom.devices.controllers:
        if ctrl.type == ControllerType.USB and ctrl.index == bus and ctrl.alias_name:
            return f"{ctrl.alias_name}.0"
    return "usb.0" if bus == 0 else f"usb{bus}.0"


def usb_address_props(ctx: BuildContext, dev) -> list[tuple[str, object]]:
    """``bus=,port=`` of a device on a USB port (none: QEMU picks a free port)."""
    from qemuwrap.conf.devices.address import USBAddress

    addr = dev.address
    if not isinstance(addr, USBAddress):
        return []
    return [("bus", usb_bus(ctx, addr.bus)), ("port", addr.port)]


def virtio_serial_props(ctx: BuildContext, dev) -> list[tuple[str, object]]:
    """``bus=virtio-serialN.B,nr=PORT`` of a port with a virtio-serial address."""
    addr = dev.address
    if not isinstance(addr, VirtioSerialAddress):
        return []
    alias = f"virtio-serial{addr.controller}"
    for ctrl in ctx.dom.devices.controllers:
        if ctrl.type == ControllerType.VIRTIO_SERIAL and ctrl.index == addr.controller:
            alias = ctrl.alias_name or alias
    return [("bus", f"{alias}.{addr.bus}"), ("nr", addr.port)]


def serial_device(ctx: BuildContext, serial: Serial) -> str:
    model = serial.model or SerialModelName.ISA_SERIAL
    props: list[tuple[str, object]] = [("chardev", f"char{serial.alias_name}"),
                                       ("id", serial.alias_name)]
    if model == SerialModelName.ISA_SERIAL:
        props.append(("index", serial.port))
    if model in (SerialModelName.ISA_SERIAL, SerialModelName.ISA_DEBUGCON):
        props += isa_props(serial)
    elif model == SerialModelName.USB_SERIAL:
        props += usb_address_props(ctx, serial)
    elif model == SerialModelName.PCI_SERIAL:
        props += list(ctx.pci_props(serial).items())
    return exact_opts(SERIAL_DEVICES[model], props)


def channel_socket(state_dir: str, chan: Channel) -> str:
    """Where a virtio channel's unix socket goes when the XML names none: the guest's
    state directory (libvirt: its channel directory), ``channel.NAME`` for a named one
    (the guest agent's is ``channel.org.qemu.guest_agent.0``), else
    ``vioser-CC-BB-PP.sock`` by its virtio-serial address (qemuDomainPrepareChannel).
    Also how ``ops/agent.py`` finds the agent's socket: one rule for both."""
    if chan.target.name:
        return os.path.join(state_dir, f"channel.{chan.target.name}")
    addr = chan.virtio_address
    c, b, p = (addr.controller, addr.bus, addr.port or 0) if addr else (0, 0, 0)
    return os.path.join(state_dir, f"vioser-{c:02d}-{b:02d}-{p:02d}.sock")


def build_serials(ctx: BuildContext) -> None:
    for serial in ctx.dom.devices.serials:
        chr_id = f"char{serial.alias_name}"
        log = ctx.paths.serial_log(serial.port) if serial.type == CharType.PTY else None
        chardev(ctx, chr_id, serial, serial.node, log)
        ctx.cmd.add("-device", serial_device(ctx, serial), serial.node)


def build_parallels(ctx: BuildContext) -> None:
    for par in ctx.dom.devices.parallels:
        chr_id = f"char{par.alias_name}"
        chardev(ctx, chr_id, par, par.node, parallel=True)
        ctx.cmd.add("-device", optstr("isa-parallel", chardev=chr_id, id=par.alias_name),
                    par.node)


def build_channels(ctx: BuildContext) -> None:
    for chan in ctx.dom.devices.channels:
        chr_id = f"char{chan.alias_name}"
        path = channel_socket(ctx.paths.state_dir, chan) if chan.type == CharType.UNIX \
            else None
        chardev(ctx, chr_id, chan, chan.node, path=path)
        if chan.target_type == ChannelTargetType.GUESTFWD:
            target = chan.target
            rule = f"tcp:{target.address}:{target.port}-chardev:{chr_id}"
            ctx.cmd.add("-netdev", exact_opts("user", [("guestfwd", rule),
                                                       ("id", chan.alias_name)]), chan.node)
            continue
        name = chan.target.name
        if name is None and chan.type == CharType.SPICEVMC:
            name = "com.redhat.spice.0"
        ctx.cmd.add("-device", exact_opts("virtserialport", [
            *virtio_serial_props(ctx, chan), ("chardev", chr_id), ("id", chan.alias_name),
            ("name", name)]), chan.node)


def build_consoles(ctx: BuildContext) -> None:
    """Virtio consoles (a serial console is its serial port, built with the serials)."""
    for console in ctx.dom.devices.consoles:
        if console.target_type != ConsoleTargetType.VIRTIO:
            continue
        chr_id = f"char{console.alias_name}"
        chardev(ctx, chr_id, console, console.node)
        ctx.cmd.add("-device", exact_opts("virtconsole", [
            *virtio_serial_props(ctx, console), ("chardev", chr_id),
            ("id", console.alias_name)]), console.node)


def build_chardevs(ctx: BuildContext) -> None:
    build_serials(ctx)
    build_parallels(ctx)
    build_channels(ctx)
    build_consoles(ctx)
