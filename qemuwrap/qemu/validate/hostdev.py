"""Checks of host devices (libvirt's qemuValidateDomainDeviceDefHostdev), and whether
each one exists on this host: a definition that passes through a device this host
lacks is refused with the device's name, before QEMU runs."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from qemuwrap.conf.devices.address import UnassignedAddress
from qemuwrap.conf.devices.hostdev import Hostdev, HostdevMode, HostdevType
from qemuwrap.conf.devices.net import InterfaceType
from qemuwrap.qemu import hostdevices
from qemuwrap.qemu.build.hostdev import MODEL_DEVICES, model_device, usb_host

if TYPE_CHECKING:
    from qemuwrap.qemu.validate import Validation

#: The block driver module Debian's QEMU needs for iSCSI (package qemu-block-extra).
ISCSI_MODULE = "/usr/lib/x86_64-linux-gnu/qemu/block-iscsi.so"


def check_pci(v: Validation, dev, addr: str) -> bool:
    """Refuse a PCI device this host cannot pass through; True if it can."""
    if v.require_device("vfio-pci", dev):
        problem = hostdevices.pci_problem(addr)
        if problem is None:
            return True
        v.refuse(dev, problem)
    return False


def check_usb(v: Validation, dev, src) -> None:
    if not v.require_device("usb-host", dev):
        return
    if getattr(src, "missing", None):
        return  # libvirt starts without it (a device plugged in later)
    where = usb_host(src)
    if where is None:
        if src.vendor is not None:
            v.refuse(dev, f"host USB device {src.vendor.id:04x}:{src.product.id:04x} is not "
                          "present")
        return
    node = hostdevices.usb_node(*where)
    if not os.path.exists(node):
        v.refuse(dev, f"host USB device {node} does not exist")


def check_scsi(v: Validation, dev: Hostdev) -> None:
    src = dev.source
    assert src is not None
    v.require_device("scsi-generic", dev)
    if src.protocol == "iscsi":
        if src.auth is not None:
            v.refuse(src.auth, "iSCSI <auth> needs libvirt's secret store, which qemuwrap "
                               "does not have")
        if not os.path.exists(ISCSI_MODULE):
            v.refuse(dev, "this QEMU has no iSCSI block driver (Debian package "
                          "qemu-block-extra)")
        return
    addr = src.address
    assert src.adapter is not None and addr is not None
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
        if not isinstance(dev.address, UnassignedAddress) and src.address is not None:
            check_pci(v, dev, src.address.pci)
    elif kind == HostdevType.USB:
        check_usb(v, dev, src)
    elif kind == HostdevType.SCSI:
        check_scsi(v, dev)
    elif kind == HostdevType.SCSI_HOST:
        if v.require_device(model_device(dev), dev) and \
                not os.path.exists(os.path.join(hostdevices.DEV, "vhost-scsi")):
            v.refuse(dev, f"{hostdevices.DEV}/vhost-scsi does not exist on this host "
                          "(modprobe vhost_scsi)")
    elif kind == HostdevType.MDEV:
        if dev.model not in MODEL_DEVICES:
            v.refuse(dev, f"mediated device model '{dev.model}' is not supported for x86 "
                          "guests")
            return
        if dev.display and not v.dom.devices.graphics:
            v.refuse(dev, "display='on' needs a <graphics> device")
        if v.require_device("vfio-pci", dev):
            assert src.address is not None and src.address.uuid is not None
            path = hostdevices.mdev_path(src.address.uuid)
            if not os.path.exists(path):
                v.refuse(dev, f"mediated device {src.address.uuid} does not exist "
                              f"({path})")


def check_hostdevs(v: Validation) -> None:
    for nic in v.dom.devices.interfaces:
        if nic.type != InterfaceType.HOSTDEV:
            continue
        src = nic.source
        if nic.hostdev_type == HostdevType.USB:
            check_usb(v, nic, src)
        elif src is not None and src.host_address is not None and \
                check_pci(v, nic, src.host_address.pci):
            # libvirt sets the VF's MAC (and VLAN, port profile) through its PF first.
            v.refuse(nic, f"interface type 'hostdev' is not supported: qemuwrap does not set "
                          f"the MAC address {nic.mac} of host network device "
                          f"{src.host_address.pci} (libvirt does it through its PF)")
    for dev in v.dom.devices.hostdevs:
        check_hostdev(v, dev)


CHECKS = [check_hostdevs]
