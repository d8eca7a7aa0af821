"""Shared memory devices (libvirt's qemuBuildShmemCommandLine): ivshmem-plain on a
file in /dev/shm (``-object memory-backend-file``), ivshmem-doorbell on an ivshmem
server's socket (its ``-chardev`` after the device, as libvirt writes it)."""

from __future__ import annotations

from qemuwrap.conf.devices.shmem import Shmem, ShmemModel, ShmemRole
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext
from qemuwrap.qemu.build.props import acpi_props, exact_opts, on_off


def shmem_device(ctx: BuildContext, shmem: Shmem) -> str:
    server = shmem.server is not None
    master = None
    if not server and shmem.role is not None:
        master = "on" if shmem.role == ShmemRole.MASTER else "off"
    msi = shmem.msi
    return exact_opts(str(shmem.model), [
        ("id", shmem.alias_name), ("chardev", f"char{shmem.alias_name}" if server else None),
        ("memdev", None if server else f"shmmem-{shmem.alias_name}"), ("master", master),
        ("vectors", msi.vectors if msi else None),
        ("ioeventfd", on_off(msi.ioeventfd) if msi else None),
        *ctx.pci_props(shmem).items(), *acpi_props(shmem)])


def build_shmems(ctx: BuildContext) -> None:
    for shmem in ctx.dom.devices.shmems:
        if shmem.model == ShmemModel.IVSHMEM_PLAIN:
            ctx.cmd.add("-object", optstr("memory-backend-file", id=f"shmmem-{shmem.alias_name}",
                                          mem_path=f"/dev/shm/{shmem.name}",
                                          size=shmem.size_bytes, share="on"), shmem.node)
        ctx.cmd.add("-device", shmem_device(ctx, shmem), shmem.node)
        if shmem.server is not None:
            ctx.cmd.add("-chardev", optstr("socket", id=f"char{shmem.alias_name}",
                                           path=shmem.server_path), shmem.node)
