"""Devices whose host side is a companion process (issue 8): the TPM (swtpm) and
filesystems (virtiofsd; virtio-9p needs none). The companions themselves are planned in
``qemu/companions.py`` and run by the supervisor; this module builds QEMU's side."""

from __future__ import annotations

import os

from qemuwrap.conf.devices.filesystem import (
    AccessMode,
    CacheMode,
    Filesystem,
    FSDriverType,
    FSModel,
)
from qemuwrap.conf.devices.tpm import TPMBackendType
from qemuwrap.conf.xmlmodel import table
from qemuwrap.qemu.argv import escape, optstr
from qemuwrap.qemu.bootorder import boot_index
from qemuwrap.qemu.build import BuildContext
from qemuwrap.qemu.build.props import on_off

#: libvirt's 9p security models (qemuBuildFSStr).
SECURITY_MODELS = table(AccessMode, {AccessMode.PASSTHROUGH: "passthrough",
                                     AccessMode.MAPPED: "mapped", AccessMode.SQUASH: "none"})
#: The virtio-9p device of each model (transitional ones as libvirt 9.0 names them).
NINEP_DEVICES = table(FSModel, {FSModel.VIRTIO: "virtio-9p-pci",
                                FSModel.VIRTIO_TRANSITIONAL: "virtio-9p-pci-transitional",
                                FSModel.VIRTIO_NON_TRANSITIONAL: "virtio-9p-pci-non-transitional"})
#: libvirt's <cache mode> -> virtiofsd's -o cache= (libvirt's default is virtiofsd's).
VIRTIOFSD_CACHE = table(CacheMode, {CacheMode.NONE: "none", CacheMode.ALWAYS: "always"})
#: The socket of a virtiofsd qemuwrap starts, in the state directory (libvirt's name).
VIRTIOFS_SOCKET_NAME = "{alias}-fs.sock"
TPM_SOCKET_NAME = "swtpm.sock"


def tpm_socket(ctx: BuildContext) -> str:
    return os.path.join(ctx.paths.state_dir, TPM_SOCKET_NAME)


def virtiofs_socket(ctx: BuildContext, fs: Filesystem) -> str:
    """The socket of the virtiofsd qemuwrap starts, or the external daemon's."""
    if fs.source.socket is not None:
        return fs.source.socket
    return os.path.join(ctx.paths.state_dir, VIRTIOFS_SOCKET_NAME.format(alias=fs.alias_name))


def build_filesystems(ctx: BuildContext) -> None:
    for fs in ctx.dom.devices.filesystems:
        if fs.virtiofs:
            chardev = f"chr-vu-{fs.alias_name}"
            queue = fs.driver.queue if fs.driver else None  # else QEMU's own (128)
            ctx.cmd.add("-chardev", optstr("socket", id=chardev,
                                           path=virtiofs_socket(ctx, fs)), fs.node)
            ctx.cmd.add("-device", optstr("vhost-user-fs-pci", id=fs.alias_name,
                                          chardev=chardev, queue_size=queue,
                                          tag=fs.target.dir,
                                          bootindex=boot_index(ctx.dom, fs),
                                          **ctx.pci_props(fs)), fs.node)
            continue
        fsdev = f"fsdev-{fs.alias_name}"
        driver = fs.driver
        # -fsdev and virtio-9p spell their keys with '_' (optstr writes '-').
        props = [("security_model", SECURITY_MODELS[fs.accessmode or AccessMode.PASSTHROUGH]),
                 ("writeout", "immediate" if driver is not None and driver.wrpolicy else None),
                 ("id", fsdev), ("path", fs.source.dir),
                 ("fmode", f"{fs.fmode:04o}" if fs.fmode is not None else None),
                 ("dmode", f"{fs.dmode:04o}" if fs.dmode is not None else None),
                 ("multidevs", fs.multidevs if fs.multidevs not in (None, "default") else None),
                 ("readonly", "on" if fs.readonly else None)]
        ctx.cmd.add("-fsdev", _verbatim("local", props), fs.node)
        virtio = [] if driver is None else [  # qemuBuildVirtioDevProps, right after driver
            ("iommu_platform", on_off(driver.iommu)), ("ats", on_off(driver.ats)),
            ("packed", on_off(driver.packed))]
        device = [*virtio, ("id", fs.alias_name), ("fsdev", fsdev),
                  ("mount_tag", fs.target.dir), *ctx.pci_props(fs).items()]
        ctx.cmd.add("-device", _verbatim(NINEP_DEVICES[fs.model or FSModel.VIRTIO], device),
                    fs.node)


def _verbatim(first: str, props: list[tuple[str, str | None]]) -> str:
    """``first,key=value,...`` with the keys as given; values escaped as optstr does."""
    return ",".join([escape(first), *(f"{k}={escape(v)}" for k, v in props if v is not None)])

def build_tpms(ctx: BuildContext) -> None:
    for tpm in ctx.dom.devices.tpms:
        backend = tpm.backend
        tpmdev = f"tpm-{tpm.alias_name}"
        if backend.type == TPMBackendType.PASSTHROUGH:
            from qemuwrap.companions import swtpm

            device = backend.device.path if backend.device else "/dev/tpm0"
            ctx.cmd.add("-tpmdev", optstr("passthrough", id=tpmdev, path=device,
                                          cancel_path=swtpm.cancel_path(device)), tpm.node)
        else:
            path = tpm_socket(ctx) if backend.type == TPMBackendType.EMULATOR else \
                backend.source.path if backend.source else None
            ctx.cmd.add("-chardev", optstr("socket", id="chrtpm", path=path), tpm.node)
            ctx.cmd.add("-tpmdev", optstr("emulator", id=tpmdev, chardev="chrtpm"), tpm.node)
        ctx.cmd.add("-device", optstr(str(tpm.model), tpmdev=tpmdev, id=tpm.alias_name),
                    tpm.node)


#: Driver types QEMU 7.2 has no 9p backend for, and why.
UNBUILDABLE_9P = {FSDriverType.HANDLE: "the 'handle' 9p backend was removed in QEMU 6.0",
                  FSDriverType.LOOP: "'loop' filesystems are for containers, not QEMU",
                  FSDriverType.NBD: "'nbd' filesystems are for containers, not QEMU",
                  FSDriverType.PLOOP: "'ploop' filesystems are for containers, not QEMU"}
