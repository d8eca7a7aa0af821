"""Checks of host devices (libvirt's qemuValidateDomainDeviceDefHostdev), and whether
each one exists on this host (a host check, :func:`host_hostdevs`, run by
``validate/host.py`` beside translation, not in it): a definition that passes through a
device this host lacks is refused with the device's name, before QEMU runs."""

from __future__ import annotations

import os

from qemuwrap.conf.devices.address import UnassignedAddress
from qemuwrap.conf.devices.hostdev import Hostdev, HostdevMode, HostdevType
from qemuwrap.conf.devices.net import InterfaceType
from qemuwrap.hints import TYPE_CHECKING
from qemuwrap.qemu import hostdevices
from qemuwrap.qemu.build.hostdev import MODEL_DEVICES, model_device, usb_host

if TYPE_CHECKING:
    from qemuwrap.qemu.validate import Validation

#: The block driver module Debian's QEMU needs for iSCSI (package qemu-block-extra).
ISCSI_MODULE = "/usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so"


def check_scsi(v: Validation, dev: Hostdev) -> None:
    src = dev.source
    assert src is not None
    v.require_device("scsi-generic", dev)
    if src.protocol == "iscsi":
        if src.auth is not None:
            v.refuse(src.auth, "iSCSI <auth> needs libvirt's secret store, which qemuwrap "
                               "does not have")
        return
    addr = src.address
    assert src.adapter is not None and addr is not None
    # The /dev/sg node is part of the command (libvirt too looks it up when it builds
    # one): without it there is nothing to translate to.
    if hostdevices.scsi_generic(src.adapter.name, addr.bus or 0, addr.target or 0,
                                addr.unit or 0) is None:
        v.refuse(dev, f"host SCSI device {src.adapter.name} {addr.bus}:{addr.target}:"
                      f"{addr.unit} does not exist (or has no /dev/sg node)")


def check_hostdev(v: Validation, dev: Hostdev) -> None:
    if dev.mode == HostdevMode.CAPABILITIES:
        v.refuse(dev, "hostdev mode 'capabilities' is not supported by QEMU (LXC only)")
        return
    src = dev.source
    assert src is not None
    kind = dev.type
    if dev.boot is not None and kind in (HostdevType.SCSI_HOST, HostdevType.MDEV):
        v.refuse(dev.boot, f"booting from a '{kind}' host device is not supported")
    if kind == HostdevType.PCI:
        if dev.driver is not None and dev.driver.name not in (None, "vfio"):
            v.refuse(dev.driver, f"PCI passthrough backend '{dev.driver.name}' is not "
                                 "supported (QEMU: vfio only)")
        if src.writeFiltering is not None:
            v.refuse(src, "write filtering of PCI configuration space is not supported by "
                          "QEMU")
        if not isinstance(dev.address, UnassignedAddress):
            v.require_device("vfio-pci", dev)
    elif kind == HostdevType.USB:
        v.require_device("usb-host", dev)
    elif kind == HostdevType.SCSI:
        check_scsi(v, dev)
    elif kind == HostdevType.SCSI_HOST:
        v.require_device(model_device(dev), dev)
    elif kind == HostdevType.MDEV:
        if dev.model not in MODEL_DEVICES:
            v.refuse(dev, f"mediated device model '{dev.model}' is not supported for x86 "
                          "guests")
            return
        if dev.display and not v.dom.devices.graphics:
            v.refuse(dev, "display='on' needs a <graphics> device")
        v.require_device("vfio-pci", dev)


def check_hostdevs(v: Validation) -> None:
    for nic in v.dom.devices.interfaces:
        if nic.type != InterfaceType.HOSTDEV:
            continue
        if nic.hostdev_type == HostdevType.USB:
            v.require_device("usb-host", nic)
        elif v.require_device("vfio-pci", nic):
            # libvirt sets the VF's MAC (and VLAN, port profile) through its PF first.
            src = nic.source
            where = f" {src.host_address.pci}" if src is not None and \
                src.host_address is not None else ""
            v.refuse(nic, f"interface type 'hostdev' is not supported: qemuwrap does not set "
                          f"the MAC address {nic.mac} of host network device{where} "
                          "(libvirt does it through its PF)")
    for dev in v.dom.devices.hostdevs:
        check_hostdev(v, dev)


CHECKS = [check_hostdevs]


# --------------------------------------------------------------------------- this host
def usb_problem(src) -> str | None:
    """Why the host USB device of ``src`` is not there (None: it is, or it may be
    missing: ``<source missing='yes'>``, which libvirt starts without)."""
    if getattr(src, "missing", None):
        return None
    where = usb_host(src)
    if where is None:
        if src.vendor is not None and src.product is not None:
            return f"host USB device {src.vendor.id:04x}:{src.product.id:04x} is not present"
        return None
    node = hostdevices.usb_node(*where)
    return None if os.path.exists(node) else f"host USB device {node} does not exist"


def host_problem(dev: Hostdev) -> str | None:
    """Why this host cannot give ``dev`` to a guest (None: it can)."""
    src = dev.source
    if src is None or dev.mode == HostdevMode.CAPABILITIES:
        return None
    kind = dev.type
    if kind == HostdevType.PCI:
        if isinstance(dev.address, UnassignedAddress) or src.address is None:
            return None
        return hostdevices.pci_problem(src.address.pci)
    if kind == HostdevType.USB:
        return usb_problem(src)
    if kind == HostdevType.SCSI and src.protocol == "iscsi":
        if not os.path.exists(ISCSI_MODULE):
            return "this QEMU has no iSCSI block driver (Debian package qemu-block-extra)"
    if kind == HostdevType.SCSI_HOST and \
            not os.path.exists(os.path.join(hostdevices.DEV, "vhost-scsi")):
        return f"{hostdevices.DEV}/vhost-scsi does not exist on this host (modprobe " \
               "vhost_scsi)"
    if kind == HostdevType.MDEV and src.address is not None and src.address.uuid:
        path = hostdevices.mdev_path(src.address.uuid)
        if not os.path.exists(path):
            return f"mediated device {src.address.uuid} does not exist ({path})"
    return None


def host_hostdevs(h) -> None:
    """What the host devices (and ``<interface type='hostdev'>``) lack on this host."""
    for nic in h.dom.devices.interfaces:
        if nic.type != InterfaceType.HOSTDEV or nic.source is None:
            continue
        if nic.hostdev_type == HostdevType.USB:
            problem = usb_problem(nic.source)
        elif nic.source.host_address is not None:
            problem = hostdevices.pci_problem(nic.source.host_address.pci)
        else:
            problem = None
        if problem:
            h.refuse(nic, problem)
    for dev in h.dom.devices.hostdevs:
        problem = host_problem(dev)
        if problem:
            h.refuse(dev, problem)
