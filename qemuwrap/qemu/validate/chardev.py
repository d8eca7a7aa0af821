"""Checks of character devices (libvirt's qemuValidateDomainChrDef and friends), and of
what their host ends need from this host: a host device that exists, a socket path
that fits, TLS certificates."""

from __future__ import annotations

import os

from qemuwrap.conf.devices.chardev import (
    ChannelTargetType,
    CharType,
    ConsoleTargetType,
    SerialTargetType,
    chr_spec,
)
from qemuwrap.conf.devices.graphics import GraphicsType
from qemuwrap.hints import TYPE_CHECKING
from qemuwrap.qemu.build.chardev import SERIAL_DEVICES, TLS_DIRS

if TYPE_CHECKING:
    from qemuwrap.qemu.validate import Validation

#: sizeof(sockaddr_un.sun_path) less the terminating NUL.
MAX_SOCKET_PATH = 107


def check_host_end(v: Validation, dev, what: str) -> None:
    """What a host end needs (any device with ``type`` and ``<source>``: serials,
    channels, rng's egd backend, ...)."""
    spec = chr_spec(dev)
    kind = spec.type
    if kind == CharType.NMDM:
        v.refuse(dev, f"{what} type 'nmdm' (a FreeBSD null modem) is not supported by "
                      "QEMU")
        return
    if kind in (CharType.SPICEVMC, CharType.SPICEPORT) and not any(
            g.type == GraphicsType.SPICE for g in v.dom.devices.graphics):
        v.refuse(dev, f"{what} type '{kind}' needs <graphics type='spice'>")
    if kind == CharType.UNIX and spec.path and len(spec.path.encode()) > MAX_SOCKET_PATH:
        v.refuse(dev, f"socket path {spec.path} is longer than a UNIX socket allows "
                      f"({MAX_SOCKET_PATH} bytes)")
    if kind in (CharType.TCP, CharType.UNIX) and spec.reconnect and not \
            spec.reconnect_timeout:
        v.refuse(dev, "<reconnect enabled='yes'> needs a timeout above 0")


def host_end_problems(dev) -> list[str]:
    """What a host end lacks on this host (a host check: ``validate/host.py``, not
    translation): the device, the pipe, the socket to connect to, TLS certificates."""
    spec = chr_spec(dev)
    kind, path = spec.type, spec.path
    out = []
    if kind == CharType.DEV and path and not os.path.exists(path):
        out.append(f"host device {path} does not exist")
    if kind == CharType.PIPE and path and not (
            os.path.exists(path) or (os.path.exists(path + ".in")
                                     and os.path.exists(path + ".out"))):
        out.append(f"pipe {path} does not exist (QEMU opens {path} or {path}.in and "
                   f"{path}.out; make them with mkfifo)")
    if kind == CharType.UNIX and path and not spec.listen and spec.reconnect is None \
            and not os.path.exists(path):
        out.append(f"socket {path} does not exist (mode='connect' needs a listening peer, "
                   "or <reconnect>)")
    if kind == CharType.TCP and spec.tls and not any(os.path.isdir(d) for d in TLS_DIRS):
        out.append(f"TLS for a chardev needs certificates in {' or '.join(TLS_DIRS)}, which "
                   "do not exist on this host")
    return out


def host_ends(dom) -> list[tuple[object, str]]:
    """(device, what) of every host end of this area's devices: serials, parallels,
    channels, virtio consoles, rng egd backends."""
    devs = dom.devices
    out: list[tuple[object, str]] = [(s, "serial") for s in devs.serials]
    out += [(p, "parallel") for p in devs.parallels]
    out += [(c, "channel") for c in devs.channels]
    out += [(c, "console") for c in devs.consoles
            if c.target_type == ConsoleTargetType.VIRTIO]
    out += [(r.backend, "rng backend") for r in devs.rngs if r.backend.model == "egd"]
    return out


def host_chardevs(h) -> None:
    for dev, _what in host_ends(h.dom):
        for message in host_end_problems(dev):
            h.refuse(dev, message)


def _serial(v: Validation, serial) -> None:
    model = serial.model
    if model is None or model not in SERIAL_DEVICES:
        v.refuse(serial, f"serial target type '{serial.target_type}' with model "
                         f"'{model}' is not supported for x86 QEMU guests")
        return
    if serial.target_type == SerialTargetType.ISA_SERIAL and serial.port > 3:
        v.refuse(serial, f"ISA serial port {serial.port} is not supported (QEMU has 4: 0 to "
                         "3)")
    v.require_device(SERIAL_DEVICES[model], serial)


def check_chardevs(v: Validation) -> None:
    devs = v.dom.devices
    for serial in devs.serials:
        check_host_end(v, serial, "serial")
        _serial(v, serial)
    for par in devs.parallels:
        check_host_end(v, par, "parallel")
        v.require_device("isa-parallel", par)
    for chan in devs.channels:
        check_host_end(v, chan, "channel")
        chan_target = chan.target_type
        if chan_target == ChannelTargetType.XEN:
            v.refuse(chan, "channel target type 'xen' is not supported (Xen guests only)")
        elif chan_target == ChannelTargetType.VIRTIO:
            v.require_device("virtserialport", chan)
        elif chan_target == ChannelTargetType.GUESTFWD and chan.type == CharType.QEMU_VDAGENT:
            v.refuse(chan, "a guestfwd channel cannot be a qemu-vdagent")
    ports: set[int] = set()
    for console in devs.consoles:
        target = console.target_type
        if target == ConsoleTargetType.SERIAL:
            continue  # serial port 0's other name: built (and checked) as the serial
        if target != ConsoleTargetType.VIRTIO:
            v.refuse(console, f"console target type '{target}' is not supported for x86 QEMU "
                              "guests")
            continue
        check_host_end(v, console, "console")
        v.require_device("virtconsole", console)
        addr = console.address
        port = getattr(addr, "port", None)
        if port is not None:
            if port in ports:
                v.refuse(console, f"virtio-serial port {port} is used twice")
            ports.add(port)


CHECKS = [check_chardevs]
