"""Checks of network interfaces (libvirt's qemuValidateDomainDeviceDefNetwork and
qemuDomainValidateActualNetDef), and of what their host ends need from this host."""

from __future__ import annotations

import os

from qemuwrap.conf.devices.net import (
    TAP_TYPES,
    VIRTIO_MODELS,
    Interface,
    InterfaceType,
    NICModel,
)
from qemuwrap.hints import TYPE_CHECKING
from qemuwrap.qemu.build.net import NIC_DEVICES, nic_device, vhost_device
from qemuwrap.qemu.validate.misc import check_virtio_iommu

if TYPE_CHECKING:
    from qemuwrap.qemu.validate import Validation

#: Types libvirt gives multiqueue (one tap/vhost fd per queue pair).
_MULTIQUEUE = (*TAP_TYPES, InterfaceType.DIRECT, InterfaceType.VHOSTUSER, InterfaceType.VDPA)
#: Types whose MTU libvirt sets (qemuDomainNetSupportsMTU).
_MTU = (*TAP_TYPES, InterfaceType.VHOSTUSER)


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def check_model(v: Validation, nic: Interface) -> None:
    model = nic.model
    if model is not None and model not in NIC_DEVICES:
        v.refuse(nic, f"NIC model '{model}' is not supported for x86 QEMU guests")
        return
    device = nic_device(nic)
    if device is not None:
        v.require_device(device, nic)


def check_driver(v: Validation, nic: Interface) -> None:
    drv = nic.driver
    if drv is None:
        return
    if nic.model in VIRTIO_MODELS:
        check_virtio_iommu(v, nic, nic.model)
        for name in ("rx_queue_size", "tx_queue_size"):
            size = getattr(drv, name)
            if size is not None and not _pow2(size):
                v.refuse(drv, f"{name} has to be a power of two")
    elif drv.virtio_set:
        v.refuse(drv, f"<driver {' '.join(drv.virtio_set)}> is only for virtio NICs")
    if drv.name in ("kvm", "vfio", "xen") and nic.type != InterfaceType.HOSTDEV:
        v.refuse(drv, f"<driver name='{drv.name}'> is only for type='hostdev'")
    if nic.queues > 1 and nic.type not in _MULTIQUEUE:
        v.refuse(drv, f"multiqueue is not supported for interfaces of type '{nic.type}'")


def check_tap(v: Validation, nic: Interface) -> None:
    """A tap interface: the network companion's rules, the network or bridge it joins."""
    from qemuwrap.companions import network as companion

    host = nic.host()
    model = "virtio" if nic.model in VIRTIO_MODELS else str(nic.model_name)
    vhost = os.path.exists(vhost_device(nic))
    for line in companion.refusals(host, model, vhost=vhost):
        if line.startswith("<mtu>") or line.startswith("<driver"):
            continue  # libvirt sets a tap's MTU for any model, ignores driver elsewhere
        v.refuse(nic, line)
    src = nic.source
    if nic.type == InterfaceType.NETWORK and src is not None and src.network:
        if src.portgroup is not None:
            v.refuse(src, "<source portgroup> is not supported: qemuwrap's networks have no "
                          "port groups")
    if src is not None and (src.ips or src.routes):
        v.refuse(src, "host-side <ip>/<route> are not supported: qemuwrap sets no address "
                      "or route on the tap")
    if nic.backend is not None and nic.backend.tap is not None:
        v.refuse(nic.backend, "<backend tap> is not supported: QEMU opens qemuwrap's taps by "
                              "name through /dev/net/tun")


def check_types(v: Validation, nic: Interface) -> None:
    kind, src = nic.type, nic.source
    if kind in (InterfaceType.INTERNAL, InterfaceType.VDS, InterfaceType.NULL):
        v.refuse(nic, f"interface type '{kind}' is not supported by QEMU")
    elif kind == InterfaceType.DIRECT:
        v.refuse(nic, "interface type 'direct' (macvtap) is not supported: QEMU needs the "
                      "macvtap's file descriptor, which qemuwrap does not pass")
    elif kind == InterfaceType.VDPA:
        if nic.model != NICModel.VIRTIO:
            v.refuse(nic, f"a vdpa interface needs model 'virtio', not '{nic.model_name}'")
    elif kind == InterfaceType.VHOSTUSER:
        if nic.model not in VIRTIO_MODELS:
            v.refuse(nic, "a vhostuser interface needs a virtio model")
        if src is not None and src.path and len(src.path.encode()) > 107:
            v.refuse(src, f"socket path {src.path} is longer than a UNIX socket allows")
    elif kind == InterfaceType.USER:
        check_user(v, nic)
    elif kind in (InterfaceType.MCAST, InterfaceType.SERVER, InterfaceType.UDP) and \
            src is not None:
        check_socket_addresses(v, nic)
    if kind != InterfaceType.USER and (nic.ips or nic.routes):
        v.refuse(nic, "guest-side <ip> and <route> are only for type='user'")
    if nic.port_forwards and not (nic.backend is not None and nic.backend.type == "passt"):
        v.refuse(nic.port_forwards[0], "<portForward> needs <backend type='passt'>")


def _local(address: str) -> bool:
    """Whether this host has ``address`` (so QEMU can bind to it)."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((address, 0))
    except OSError:
        return False
    return True


def host_nics(h) -> None:
    """What the interfaces' host ends lack on this host (a host check:
    ``validate/host.py``, not translation)."""
    for nic in h.dom.devices.interfaces:
        src, kind = nic.source, nic.type
        if kind in TAP_TYPES and nic.target is not None and nic.target.managed is False \
                and not os.path.exists(f"/sys/class/net/{nic.target.dev}"):
            h.refuse(nic.target, f"tap '{nic.target.dev}' (managed='no') does not exist: "
                                 f"create it first (ip tuntap add {nic.target.dev} mode tap)")
        if src is None:
            continue
        if kind == InterfaceType.NETWORK and src.network:
            from qemuwrap import networks

            if not os.path.exists(networks.definition_path(src.network)):
                h.refuse(src, f"network '{src.network}' is not defined: define it with "
                              f"'qemuwrap net-define FILE.xml' and start it with "
                              f"'qemuwrap net-start {src.network}'")
        if kind == InterfaceType.BRIDGE and src.bridge and \
                not os.path.isdir(f"/sys/class/net/{src.bridge}/bridge"):
            h.refuse(src, f"bridge '{src.bridge}' does not exist on this host")
        if kind == InterfaceType.VDPA and src.dev and not os.path.exists(src.dev):
            h.refuse(src, f"vDPA device {src.dev} does not exist on this host")
        if kind == InterfaceType.VHOSTUSER and src.path and src.mode == "client" and \
                not os.path.exists(src.path):
            h.refuse(src, f"vhost-user socket {src.path} does not exist (mode='client' "
                          "connects to a running vhost-user backend)")
        bind = src.address if kind == InterfaceType.SERVER else \
            src.local.address if kind == InterfaceType.UDP and src.local else None
        if bind and bind != "0.0.0.0" and not _local(bind):
            h.refuse(src, f"QEMU cannot listen on {bind}: not an address of this host")


def check_socket_addresses(v: Validation, nic: Interface) -> None:
    """What QEMU's socket netdev needs: a multicast group, addresses it can bind."""
    import ipaddress

    src = nic.source
    assert src is not None
    try:
        addr = ipaddress.IPv4Address(src.address or "0.0.0.0")
    except ValueError:
        v.refuse(src, f"'{src.address}' is not an IPv4 address")
        return
    if nic.type == InterfaceType.MCAST and not addr.is_multicast:
        v.refuse(src, f"'{addr}' is not a multicast address (224.0.0.0/4)")


def check_user(v: Validation, nic: Interface) -> None:
    if nic.routes:
        v.refuse(nic.routes[0], "guest-side <route> is not supported by QEMU's user network")
    v4 = v6 = 0
    for ip in nic.ips:
        if ip.peer is not None:
            v.refuse(ip, "a peer address is not supported for a user network interface")
        if ip.is_v4:
            v4 += 1
            if ip.prefix and not 4 <= ip.prefix <= 27:
                v.refuse(ip, "invalid prefix, must be in range of 4-27")
        else:
            v6 += 1
            if ip.prefix and ip.prefix != 64:
                v.refuse(ip, f"unsupported IPv6 address prefix='{ip.prefix}' - must be 64")
    if v4 > 1 or v6 > 1:
        v.refuse(nic, "only one IPv4 and one IPv6 address per interface are allowed")
    if nic.backend is not None and nic.backend.type == "passt":
        v.refuse(nic.backend, "<backend type='passt'> is not supported: qemuwrap does not "
                              "start passt (libvirt runs it beside QEMU)")


def check_host_side(v: Validation, nic: Interface) -> None:
    """What libvirt does on the host for the interface, which qemuwrap does not do."""
    kind = nic.type
    if nic.mtu is not None and kind not in _MTU:
        v.refuse(nic.mtu, f"<mtu> is not supported on interface type '{kind}'")
    if nic.virtualport is not None:
        what = f" type='{nic.virtualport.type}'" if nic.virtualport.type else ""
        v.refuse(nic.virtualport, f"<virtualport{what}> is not supported: qemuwrap attaches "
                                  "taps to Linux bridges only")
    if nic.vlan is not None:
        v.refuse(nic.vlan, "<vlan> is not supported: qemuwrap tags no host port or VF")
    if nic.filterref is not None:
        v.refuse(nic.filterref, "<filterref> is not supported: qemuwrap has no network "
                                "filter driver")
    if nic.port is not None and nic.port.isolated:
        if kind not in (InterfaceType.NETWORK, InterfaceType.BRIDGE):
            v.refuse(nic.port, f"<port isolated='yes'> is not supported for interface type "
                               f"'{kind}'")
        else:
            v.refuse(nic.port, "<port isolated='yes'> is not supported: qemuwrap does not set "
                               "the bridge port's isolation flag")
    if nic.script is not None or nic.downscript is not None:
        v.refuse(nic.script or nic.downscript, "<script>/<downscript> are not supported: "
                 "qemuwrap runs no program a definition names")
    if nic.backenddomain is not None:
        v.refuse(nic.backenddomain, "<backenddomain> is for Xen guests only: not supported")
    if nic.coalesce is not None and kind not in (InterfaceType.NETWORK, InterfaceType.BRIDGE):
        v.refuse(nic.coalesce, f"<coalesce> is not supported on interface type '{kind}'")
    if nic.teaming is not None:
        if nic.teaming.type == "persistent" and nic.model not in VIRTIO_MODELS:
            v.refuse(nic.teaming, "a persistent teaming interface needs a virtio model")
        if nic.teaming.type == "transient" and kind not in (InterfaceType.HOSTDEV,
                                                            InterfaceType.NETWORK):
            v.refuse(nic.teaming, "a transient teaming interface must be type='hostdev'")


def check_interfaces(v: Validation) -> None:
    for nic in v.dom.devices.interfaces:
        if nic.type == InterfaceType.HOSTDEV:
            check_host_side(v, nic)
            continue  # the device itself: qemu/validate/hostdev.py
        check_model(v, nic)
        check_driver(v, nic)
        check_types(v, nic)
        check_host_side(v, nic)
        if nic.type in TAP_TYPES:
            check_tap(v, nic)


CHECKS = [check_interfaces]
