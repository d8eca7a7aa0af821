"""Checks of the TPM and shared filesystems (their host sides are companions, issue 8)."""

from __future__ import annotations

from qemuwrap.conf.devices.filesystem import AccessMode, FilesystemType
from qemuwrap.conf.devices.tpm import TPMBackendType, TPMModel, TPMVersion
from qemuwrap.errors import QemuwrapError
from qemuwrap.hints import TYPE_CHECKING
from qemuwrap.qemu.build.companion_devices import UNBUILDABLE_9P

if TYPE_CHECKING:
    from qemuwrap.qemu.validate import Validation
    from qemuwrap.qemu.validate.devhost import HostCheck

#: The one virtiofsd qemuwrap runs (QEMU 7.2's, from qemu-system-common): a <binary path>
#: in an untrusted definition must not choose what runs as root.
VIRTIOFSD = "/usr/lib/qemu/virtiofsd"


def check_tpms(v: Validation) -> None:
    tpms = v.dom.devices.tpms
    for extra in tpms[1:]:
        v.refuse(extra, "only one <tpm> is supported on x86")
    for tpm in tpms[:1]:
        backend = tpm.backend
        if tpm.model not in (TPMModel.TPM_TIS, TPMModel.TPM_CRB):
            v.refuse(tpm, f"TPM model '{tpm.model}' is not for x86 guests (use tpm-tis or "
                          "tpm-crb)")
            continue
        v.require_device(str(tpm.model), tpm)
        if backend.type == TPMBackendType.EMULATOR:
            if tpm.model == TPMModel.TPM_CRB and backend.version == TPMVersion.V1_2:
                v.refuse(backend, "TPM 1.2 is not supported with the CRB interface "
                                  "(use version='2.0' or model='tpm-tis')")
            if backend.encryption is not None:
                v.refuse(backend.encryption, "an encrypted TPM state needs libvirt's secret "
                                             "store, which qemuwrap does not have")


def host_tpms(h: HostCheck) -> None:
    """A passthrough TPM's host device must open: a host check (``validate/devhost.py``),
    not translation, so ``--no-host-check`` builds the command as for a host that has
    one."""
    from qemuwrap.companions import swtpm

    for tpm in h.dom.devices.tpms[:1]:
        backend = tpm.backend
        if backend.type != TPMBackendType.PASSTHROUGH:
            continue
        device = backend.device.path if backend.device else "/dev/tpm0"
        try:
            swtpm.check_passthrough(device)
        except QemuwrapError as exc:
            h.refuse(backend.device or backend, str(exc))


def check_filesystems(v: Validation) -> None:
    from qemuwrap.qemu.validate.misc import check_virtio_iommu

    for fs in v.dom.devices.filesystems:
        if fs.type != FilesystemType.MOUNT:
            v.refuse(fs, f"filesystem type '{fs.type}' is for containers; QEMU guests share "
                         "host directories with type='mount'")
            continue
        driver = fs.driver.type if fs.driver is not None else None
        if driver in UNBUILDABLE_9P:
            v.refuse(fs.driver, UNBUILDABLE_9P[driver])
            continue
        if fs.virtiofs:
            if fs.readonly:
                v.refuse(fs, "virtiofs does not support read-only mode (QEMU 7.2's virtiofsd)")
            if fs.accessmode not in (None, AccessMode.PASSTHROUGH):
                v.refuse(fs, f"virtiofs supports only accessmode='passthrough', not "
                             f"'{fs.accessmode}'")
            if fs.binary is not None and fs.binary.path not in (None, VIRTIOFSD):
                v.refuse(fs.binary, f"qemuwrap runs only {VIRTIOFSD} (QEMU 7.2's virtiofsd), "
                                    f"not {fs.binary.path}; remove <binary path>")
            if not _shared_memory(v):
                v.refuse(fs, "virtiofs needs the guest's memory shared with virtiofsd: add "
                             "<memoryBacking><source type='memfd'/><access mode='shared'/>"
                             "</memoryBacking>")
            v.require_device("vhost-user-fs-pci", fs)
        else:
            if fs.source.dir is None:
                v.refuse(fs.source, "a 9p filesystem needs <source dir=...>")
            check_virtio_iommu(v, fs, fs.model)
            v.require_device("virtio-9p-pci", fs)


def _shared_memory(v: Validation) -> bool:
    """Whether guest RAM is shared (``<memoryBacking><access mode='shared'/>``, or per NUMA
    cell ``memAccess='shared'``)."""
    backing = v.dom.memory_backing
    if backing is not None and backing.access == "shared":
        return True
    numa = v.dom.cpu.numa if v.dom.cpu is not None else None
    cells = numa.cells if numa is not None else []
    return bool(cells) and all(cell.mem_access == "shared" for cell in cells)


CHECKS = [check_tpms, check_filesystems]
