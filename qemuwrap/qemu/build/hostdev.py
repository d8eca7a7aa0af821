"""Host devices (libvirt's qemuBuildHostdevCommandLine): VFIO PCI devices, host USB
devices, SCSI generic devices, vhost-scsi and mediated devices, in libvirt's order
(its hostdev list starts with the ``<interface type='hostdev'>`` NICs)."""

from __future__ import annotations

from qemuwrap.conf.devices.address import UnassignedAddress
from qemuwrap.conf.devices.hostdev import (
    Hostdev,
    HostdevModel,
    HostdevSource,
    HostdevType,
    Teaming,
)
from qemuwrap.conf.devices.net import Interface, InterfaceType
from qemuwrap.conf.xmlmodel import table
from qemuwrap.conf.xmlreader import Node
from qemuwrap.hints import TYPE_CHECKING
from qemuwrap.qemu import hostdevices
from qemuwrap.qemu.build import BuildContext
from qemuwrap.qemu.build.chardev import usb_address_props
from qemuwrap.qemu.build.net import boot_index, rom_props
from qemuwrap.qemu.build.props import exact_opts, on_off

if TYPE_CHECKING:
    from typing import Any

#: usb-host's reset properties for each guestReset (qemuBuildUSBHostdevDevProps).
GUEST_RESET = {"off": ("off", None), "uninitialized": ("on", "off"), "on": ("on", "on")}
#: The QEMU device of each hostdev model (vhost-scsi's and a mediated device's).
MODEL_DEVICES = table(HostdevModel, {
    HostdevModel.VIRTIO: "vhost-scsi-pci",
    HostdevModel.VIRTIO_TRANSITIONAL: "vhost-scsi-pci-transitional",
    HostdevModel.VIRTIO_NON_TRANSITIONAL: "vhost-scsi-pci-non-transitional",
    HostdevModel.VFIO_PCI: "vfio-pci"},
    not_mapped={HostdevModel.VFIO_CCW: "s390 only: refused",
                HostdevModel.VFIO_AP: "s390 only: refused"})


def model_device(dev: Hostdev) -> str:
    """The -device of a scsi_host or mdev hostdev (vhost-scsi-pci without a model)."""
    return MODEL_DEVICES[dev.model or HostdevModel.VIRTIO]


def _boot(ctx: BuildContext, dev: Hostdev | Interface) -> int | None:
    if isinstance(dev, Interface):
        return boot_index(ctx.dom, dev)  # the first NIC's place in <os><boot dev>
    return dev.boot.order if dev.boot is not None else None


def pci_device(ctx: BuildContext, dev: Hostdev | Interface, src: Any,
               teaming: Teaming | None) -> str:
    addr = src.host_address if isinstance(dev, Interface) else src.address
    assert addr is not None  # the model requires the host address
    failover = teaming.persistent if teaming is not None and \
        teaming.type == "transient" else None
    return exact_opts("vfio-pci", [
        ("host", addr.pci), ("id", dev.alias_name), ("bootindex", _boot(ctx, dev)),
        ("failover_pair_id", failover), *ctx.pci_props(dev).items(),
        *rom_props(dev)])


def usb_host(src: HostdevSource | Any) -> tuple[int, int] | None:
    """(bus, device) of a host USB device: its address, else found by its ids."""
    addr = src.host_address if hasattr(src, "host_address") else src.address
    if addr is not None and addr.bus is not None and addr.device is not None:
        return addr.bus, addr.device
    if src.vendor is not None and src.product is not None:
        found = hostdevices.usb_find(src.vendor.id, src.product.id)
        return found[0] if found else None
    return None


def usb_device(ctx: BuildContext, dev: Hostdev | Interface, src: HostdevSource | Any) -> str:
    where = usb_host(src)
    reset = GUEST_RESET.get(getattr(src, "guestReset", None) or "", (None, None))
    ids: list[tuple[str, Any]] = []
    if where is None and not getattr(src, "missing", None) and src.vendor is not None \
            and src.product is not None:
        # Not on this host (the host check refuses that; without it, translated as for
        # another host): QEMU's own filter takes the device when it appears.
        ids = [("vendorid", f"{src.vendor.id:#06x}"), ("productid", f"{src.product.id:#06x}")]
    return exact_opts("usb-host", [
        ("hostdevice", hostdevices.usb_node(*where) if where else None), *ids,
        ("id", dev.alias_name), ("bootindex", _boot(ctx, dev)),
        ("guest-reset", reset[0]), ("guest-resets-all", reset[1]),
        *usb_address_props(ctx, dev)])


def scsi_options(ctx: BuildContext, dev: Hostdev) -> tuple[str, str]:
    """``-blockdev`` and ``-device scsi-generic`` of a SCSI host device."""
    src = dev.source
    assert src is not None
    node = f"libvirt-{dev.alias_name}-backend"
    readonly = "on" if dev.readonly else "off"
    if src.protocol == "iscsi":
        host = src.hosts[0]
        target, _, lun = (src.name or "").partition("/")
        initiator = src.initiator.iqn if src.initiator is not None else None
        blockdev = exact_opts("iscsi", [
            ("portal", f"{host.name}:{host.port or 3260}"), ("target", target),
            ("lun", lun or "0"), ("transport", "tcp"), ("initiator-name", initiator),
            ("node-name", node), ("read-only", readonly)])
    else:
        addr = src.address
        assert src.adapter is not None and addr is not None
        sg = hostdevices.scsi_generic(src.adapter.name, addr.bus or 0, addr.target or 0,
                                      addr.unit or 0)
        blockdev = exact_opts("host_device", [("filename", sg), ("node-name", node),
                                              ("read-only", readonly)])
    props: list[tuple[str, Any]] = [("drive", node), ("id", dev.alias_name),
                                    ("bootindex", _boot(ctx, dev))]
    daddr = dev.address
    if daddr is not None and daddr.VARIANT == "drive":
        props += [("bus", f"scsi{daddr.controller}.0"),  # type: ignore[attr-defined]
                  ("channel", daddr.bus), ("scsi-id", daddr.target),  # type: ignore[attr-defined]
                  ("lun", daddr.unit)]  # type: ignore[attr-defined]
    return blockdev, exact_opts("scsi-generic", props)


def mdev_device(ctx: BuildContext, dev: Hostdev) -> str:
    src = dev.source
    assert src is not None and src.address is not None and src.address.uuid is not None
    # ramfb needs the variant QEMU cannot hot-unplug (qemuBuildHostdevMdevModelTypeString).
    driver = "vfio-pci-nohotplug" if dev.ramfb else model_device(dev)
    return exact_opts(driver, [
        ("id", dev.alias_name), ("sysfsdev", hostdevices.mdev_path(src.address.uuid)),
        ("display", on_off(dev.display)), ("ramfb", "on" if dev.ramfb else None),
        ("bootindex", _boot(ctx, dev)), *ctx.pci_props(dev).items()])


def vhost_scsi_device(ctx: BuildContext, dev: Hostdev) -> str:
    src = dev.source
    assert src is not None
    return exact_opts(model_device(dev), [
        ("wwpn", src.wwpn), ("id", dev.alias_name), *ctx.pci_props(dev).items()])


def _add(ctx: BuildContext, option: str, value: str, node: Node | None) -> None:
    ctx.cmd.add(option, value, node)


def build_hostdevs(ctx: BuildContext) -> None:
    devs = ctx.dom.devices
    for nic in devs.interfaces:
        if nic.type != InterfaceType.HOSTDEV:
            continue
        why = f"the host sets MAC {nic.mac} on the device (not a QEMU option)"
        if nic.hostdev_type == HostdevType.USB:
            ctx.cmd.add("-device", usb_device(ctx, nic, nic.source), nic.node, why)
        else:
            ctx.cmd.add("-device", pci_device(ctx, nic, nic.source, nic.teaming), nic.node,
                        why)
    for dev in devs.hostdevs:
        kind = dev.type
        if kind == HostdevType.PCI:
            if isinstance(dev.address, UnassignedAddress):
                continue  # reserved for the guest, not given to it (libvirt's 'unassigned')
            _add(ctx, "-device", pci_device(ctx, dev, dev.source, dev.teaming), dev.node)
        elif kind == HostdevType.USB:
            _add(ctx, "-device", usb_device(ctx, dev, dev.source), dev.node)
        elif kind == HostdevType.SCSI:
            blockdev, device = scsi_options(ctx, dev)
            _add(ctx, "-blockdev", blockdev, dev.node)
            _add(ctx, "-device", device, dev.node)
        elif kind == HostdevType.SCSI_HOST:
            _add(ctx, "-device", vhost_scsi_device(ctx, dev), dev.node)
        elif kind == HostdevType.MDEV:
            _add(ctx, "-device", mdev_device(ctx, dev), dev.node)
