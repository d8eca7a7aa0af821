"""Network cards (libvirt's qemuBuildInterfaceCommandLine): the host side (``-netdev``)
and the guest's NIC (``-device``), one pair per ``<interface>`` in document order.

A tap interface (network, bridge, ethernet) is opened by QEMU by name; the network
companion (``qemuwrap/companions/network.py``) makes the tap before QEMU starts and gives
the ``-netdev`` options.  The tap's name is decided from the definition alone
(:func:`tap_names`: ``<target dev>``, else a name from the uuid and the NIC's place), so
a dry run shows the very argv a start runs.  An ``<interface type='hostdev'>`` is a host
device: it is built with the ``<hostdev>``s (``build/hostdev.py``), as libvirt does.
"""

from __future__ import annotations

from qemuwrap.conf.devices.address import PCIDevice
from qemuwrap.conf.devices.net import (
    TAP_TYPES,
    VIRTIO_MODELS,
    Interface,
    InterfaceType,
    NICModel,
    TxMode,
)
from qemuwrap.conf.domain import Domain
from qemuwrap.conf.xmlmodel import table
from qemuwrap.hints import TYPE_CHECKING
from qemuwrap.qemu.build import BuildContext
from qemuwrap.qemu.build.chardev import chardev, usb_address_props
from qemuwrap.qemu.build.props import exact_opts, on_off, virtio_props

if TYPE_CHECKING:
    from typing import Any

#: QEMU's NIC device for each model qemuwrap knows (another model name is passed to
#: QEMU as a device name, as libvirt does).
NIC_DEVICES = table(NICModel, {
    NICModel.VIRTIO: "virtio-net-pci",
    NICModel.VIRTIO_TRANSITIONAL: "virtio-net-pci-transitional",
    NICModel.VIRTIO_NON_TRANSITIONAL: "virtio-net-pci-non-transitional",
    NICModel.E1000: "e1000", NICModel.E1000E: "e1000e", NICModel.IGB: "igb",
    NICModel.RTL8139: "rtl8139", NICModel.VMXNET3: "vmxnet3", NICModel.NE2K_PCI: "ne2k_pci",
    NICModel.PCNET: "pcnet", NICModel.I82551: "i82551", NICModel.I82557B: "i82557b",
    NICModel.I82559ER: "i82559er", NICModel.USB_NET: "usb-net"},
    not_mapped={m: "not an x86 NIC: refused (qemu/validate/net.py)"
                for m in (NICModel.SPAPR_VLAN, NICModel.LAN9118, NICModel.SMC91C111)})
#: virtio-net's transmit timer (libvirt's txmode).
TX_MODES = table(TxMode, {TxMode.IOTHREAD: "bh", TxMode.TIMER: "timer"})



def nic_device(nic: Interface) -> str | None:
    """The QEMU device of a NIC (None for a hostdev interface)."""
    model = nic.model
    if model is not None:
        return NIC_DEVICES.get(model)
    return nic.model_name


def netdev_id(nic: Interface) -> str:
    return f"host{nic.alias_name}"


def tap_names(dom: Domain) -> dict[str, str]:
    """NIC alias -> the tap QEMU opens, for every tap interface of a completed
    definition: the one function every path takes its names from (the command's
    ``-netdev``, the tap companions the supervisor starts, dry-run, restore, adopt).

    ``<target dev>`` names the tap when the definition gives one (``managed='no'``: an
    existing tap); else the name comes from the uuid and the NIC's position among the
    ``<interface>``s (:func:`qemuwrap.companions.network.guest_tap_name`).  As in libvirt,
    a ``<target dev>`` starting with ``vnet``, ``macvtap`` or ``macvlan`` is a name
    libvirt generated and is chosen again (the model drops it, ``conf/devices/net.py``),
    so a ``virsh dumpxml`` of a running guest does not pin the tap it had."""
    from qemuwrap.companions.network import guest_tap_name

    names = {}
    for index, nic in enumerate(dom.devices.interfaces):
        if nic.type not in TAP_TYPES:
            continue
        assert nic.alias_name is not None  # a completed definition: ids assigned
        names[nic.alias_name] = nic.target.dev if nic.target is not None \
            else guest_tap_name(dom.uuid_str, index)
    return names


def tap_name(ctx: BuildContext, nic: Interface) -> str:
    """The tap QEMU opens for ``nic`` (see :func:`tap_names`)."""
    assert nic.alias_name is not None
    return tap_names(ctx.dom)[nic.alias_name]


def use_vhost_net(ctx: BuildContext, nic: Interface) -> bool:
    """vhost-net for a virtio NIC under KVM where the host has it, unless
    ``<driver name='qemu'>`` (libvirt's qemuInterfaceOpenVhostNet: never under TCG)."""
    from qemuwrap.companions.network import use_vhost, vhost_available

    available = ctx.dom.type == "kvm" and vhost_available(vhost_device(nic))
    return use_vhost(nic.host(), "virtio" if nic.is_virtio else str(nic.model_name),
                     available)


def vhost_device(nic: Interface) -> str:
    if nic.backend is not None and nic.backend.vhost:
        return nic.backend.vhost
    return "/dev/vhost-net"


def netdev_options(ctx: BuildContext, nic: Interface) -> str | None:
    """``-netdev`` for ``nic`` (qemuBuildHostNetProps); None when it has none."""
    from qemuwrap.companions import network as companion

    kind, src, ident = nic.type, nic.source, netdev_id(nic)
    props: list[tuple[str, Any]] = []
    if kind in TAP_TYPES:
        vhost = use_vhost_net(ctx, nic)
        value = companion.netdev_options(ident, tap_name(ctx, nic), vhost=vhost,
                                         queues=nic.queues if nic.is_virtio else 1)
        extra: list[tuple[str, Any]] = []
        if vhost and nic.backend is not None and nic.backend.vhost:
            extra.append(("vhostdev", nic.backend.vhost))
        if nic.tune is not None and nic.tune.sndbuf is not None:
            extra.append(("sndbuf", nic.tune.sndbuf))
        return value + ("," + exact_opts(None, extra) if extra else "")
    if kind == InterfaceType.USER:
        # (<backend type='passt'> is refused: qemuwrap does not run passt.)
        for ip in nic.ips:
            if ip.is_v4:
                props.append(("net", f"{ip.address}/{ip.prefix}" if ip.prefix else ip.address))
            else:
                props += [("ipv6-prefix", ip.address), ("ipv6-prefixlen", ip.prefix or None)]
        return exact_opts("user", [*props, ("id", ident)])
    assert src is not None  # the model requires a source for every other type
    if kind == InterfaceType.CLIENT:
        props.append(("connect", f"{src.address}:{src.port}"))
    elif kind == InterfaceType.SERVER:
        props.append(("listen", f"{src.address or ''}:{src.port}"))
    elif kind == InterfaceType.MCAST:
        props.append(("mcast", f"{src.address}:{src.port}"))
    elif kind == InterfaceType.UDP:
        assert src.local is not None
        props += [("udp", f"{src.address}:{src.port}"),
                  ("localaddr", f"{src.local.address}:{src.local.port}")]
    elif kind == InterfaceType.VHOSTUSER:
        return exact_opts("vhost-user", [("chardev", f"char{nic.alias_name}"),
                                         ("queues", nic.queues if nic.queues > 1 else None),
                                         ("id", ident)])
    elif kind == InterfaceType.VDPA:
        return exact_opts("vhost-vdpa", [("vhostdev", src.dev),
                                         ("queues", nic.queues if nic.queues > 1 else None),
                                         ("id", ident)])
    else:
        return None  # direct, internal, vds, null: refused (qemu/validate/net.py)
    return exact_opts("socket", [*props, ("id", ident)])


def rom_props(dev: PCIDevice) -> list[tuple[str, Any]]:
    """``rombar``/``romfile`` for ``<rom>`` (qemuBuildRomProps): ``enabled='no'`` is an
    empty romfile."""
    rom = dev.rom
    if rom is None:
        return []
    if rom.enabled is False:
        return [("romfile", "")]
    bar = None if rom.bar is None else (1 if rom.bar else 0)
    return [("rombar", bar), ("romfile", rom.file)]


def virtio_net_props(nic: Interface) -> list[tuple[str, Any]]:
    """virtio-net's own properties, in libvirt's order (qemuBuildNicDevProps)."""
    drv = nic.driver
    props: list[tuple[str, Any]] = list(virtio_props(drv).items())
    if drv is not None:
        host, guest = drv.host, drv.guest
        props += [("tx", TX_MODES[drv.txmode] if drv.txmode else None),
                  ("ioeventfd", on_off(drv.ioeventfd)), ("event_idx", on_off(drv.event_idx))]
        if host is not None:
            props += [("csum", on_off(host.csum)), ("gso", on_off(host.gso)),
                      ("host_tso4", on_off(host.tso4)), ("host_tso6", on_off(host.tso6)),
                      ("host_ecn", on_off(host.ecn)), ("host_ufo", on_off(host.ufo)),
                      ("mrg_rxbuf", on_off(host.mrg_rxbuf))]
        if guest is not None:
            props += [("guest_csum", on_off(guest.csum)),
                      ("guest_tso4", on_off(guest.tso4)),
                      ("guest_tso6", on_off(guest.tso6)),
                      ("guest_ecn", on_off(guest.ecn)), ("guest_ufo", on_off(guest.ufo))]
    queues = nic.queues
    props += [("mq", "on" if queues > 1 else None),
              ("vectors", 2 * queues + 2 if queues > 1 else None)]
    if drv is not None:
        props += [("rx_queue_size", drv.rx_queue_size), ("tx_queue_size", drv.tx_queue_size),
                  ("rss", on_off(drv.rss)), ("hash", on_off(drv.rss_hash_report))]
    persistent = nic.teaming is not None and nic.teaming.type == "persistent"
    props += [("host_mtu", nic.mtu.size if nic.mtu is not None and nic.mtu.size else None),
              ("failover", "on" if persistent else None)]
    return props


def boot_index(dom, nic: Interface) -> int | None:
    """A NIC's bootindex: its ``<boot order>``, or for the first NIC where ``<os><boot
    dev='network'>`` stands in the boot list (libvirt's qemuProcessPrepareDeviceBootorder;
    a first NIC of type hostdev passes it to its host device)."""
    if nic.boot is not None:
        return nic.boot.order
    nets = dom.devices.interfaces
    if nets and nets[0] is nic:
        order = list(dom.os.boot)
        if "network" in order:
            return order.index("network") + 1
    return None


def nic_device_options(ctx: BuildContext, nic: Interface) -> str:
    """``-device`` of a NIC (qemuBuildNicDevProps)."""
    device = nic_device(nic)
    assert device is not None
    props = virtio_net_props(nic) if nic.model in VIRTIO_MODELS else []
    props += [("netdev", netdev_id(nic)), ("id", nic.alias_name), ("mac", nic.mac),
              ("bootindex", boot_index(ctx.dom, nic))]
    if nic.model == NICModel.USB_NET:
        props += usb_address_props(ctx, nic)
    else:
        props += [*ctx.pci_props(nic).items(), *rom_props(nic)]
    return exact_opts(device, props)


def build_interfaces(ctx: BuildContext) -> None:
    for nic in ctx.dom.devices.interfaces:
        if nic.type == InterfaceType.HOSTDEV:
            continue  # a host device: with the <hostdev>s
        if nic.type == InterfaceType.VHOSTUSER:
            assert nic.source is not None
            chardev(ctx, f"char{nic.alias_name}", _VhostUserSocket(nic), nic.node, wait=True)
        value = netdev_options(ctx, nic)
        if value is not None:
            ctx.cmd.add("-netdev", value, nic.node, "; ".join(host_notes(ctx, nic)) or None)
        ctx.cmd.add("-device", nic_device_options(ctx, nic), nic.node)


def host_notes(ctx: BuildContext, nic: Interface) -> list[str]:
    """What ``--explain`` says about the host side of ``nic`` beyond its options."""
    notes = []
    if nic.type in TAP_TYPES:
        if nic.target is not None and nic.target.managed is False:
            notes.append(f"the existing tap '{nic.target.dev}' (managed='no'), used as it is")
        else:
            named = "named in <target dev>" if nic.target is not None else \
                "named from the uuid and the NIC's position"
            notes.append(f"a tap qemuwrap makes before QEMU starts ({named}) and deletes "
                         "after QEMU ends")
    if nic.coalesce is not None:
        notes.append("<coalesce> not applied: libvirt sets it on the tap with ethtool")
    if nic.bandwidth is not None and nic.type not in TAP_TYPES:
        notes.append(f"<bandwidth> not applied: libvirt does not shape type '{nic.type}' "
                     "either")
    if not nic.link_up:
        notes.append("<link state='down'>: QMP set_link after start")
    return notes


class _VhostUserSocket:
    """A vhost-user interface's socket, in the shape of a character device's host end."""

    def __init__(self, nic: Interface):
        from qemuwrap.conf.devices.chardev import CharSource, CharType, SourceMode

        src = nic.source
        assert src is not None
        self.type = CharType.UNIX
        self.sources = [CharSource(path=src.path, reconnect=src.reconnect,
                                   mode=SourceMode.BIND if src.mode == "server"
                                   else SourceMode.CONNECT)]
        self.protocol = None
        self.log = None


def qmp_after_start(ctx_or_dom) -> list[tuple[str, dict]]:
    """QMP commands libvirt runs once QEMU is up (qemuProcessSetLinkStates): a NIC with
    ``<link state='down'/>`` is QEMU's ``set_link`` ``up: false``.  The supervisor runs
    these before it lets the guest run."""
    dom = getattr(ctx_or_dom, "dom", ctx_or_dom)
    return [("set_link", {"name": nic.alias_name, "up": False})
            for nic in dom.devices.interfaces
            if not nic.link_up and nic.type != InterfaceType.HOSTDEV]
