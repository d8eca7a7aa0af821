"""The vsock device (libvirt's qemuBuildVsockCommandLine): vhost-vsock-pci.  libvirt
hands QEMU an open /dev/vhost-vsock (``vhostfd``); QEMU opens it itself here."""

from __future__ import annotations

from qemuwrap.conf.devices.vsock import VsockModel
from qemuwrap.conf.xmlmodel import table
from qemuwrap.qemu.build import BuildContext
from qemuwrap.qemu.build.props import acpi_props, exact_opts, virtio_props

VSOCK_DEVICES = table(VsockModel, {
    VsockModel.VIRTIO: "vhost-vsock-pci",
    VsockModel.VIRTIO_TRANSITIONAL: "vhost-vsock-pci-transitional",
    VsockModel.VIRTIO_NON_TRANSITIONAL: "vhost-vsock-pci-non-transitional"})


def build_vsock(ctx: BuildContext) -> None:
    vsock = ctx.dom.devices.vsock
    if vsock is None:
        return
    assert vsock.model is not None
    ctx.cmd.add("-device", exact_opts(VSOCK_DEVICES[vsock.model], [
        *virtio_props(vsock.driver).items(), ("id", vsock.alias_name),
        ("guest-cid", vsock.guest_cid), *ctx.pci_props(vsock).items(), *acpi_props(vsock)]),
        vsock.node)
