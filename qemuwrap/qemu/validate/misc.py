"""Checks of the other devices: random number generators, the watchdog, panic
notifiers, the memory balloon, the IOMMU, vsock and shared memory (libvirt's
qemuValidateDomain* for each), and what they need from this host.

Every guest has a balloon, few have the rest: each check imports its kind's model and
builder only when the guest has that kind."""

from __future__ import annotations

import os

from qemuwrap.conf.devices.memballoon import BalloonModel
from qemuwrap.hints import TYPE_CHECKING
from qemuwrap.qemu.build.memballoon import BALLOON_DEVICES

if TYPE_CHECKING:
    from qemuwrap.qemu.validate import Validation

VHOST_VSOCK = "/dev/vhost-vsock"


def check_virtio_iommu(v: Validation, dev, model: str | None) -> None:
    """``<driver iommu='on'>`` of ``dev`` (see :func:`virtio_iommu_problem`)."""
    drv = getattr(dev, "driver", None)
    problem = virtio_iommu_problem(v, drv, model)
    if problem is not None:
        v.refuse(drv, problem)


def virtio_iommu_problem(v: Validation, drv, model: str | None) -> str | None:
    """``<driver iommu='on'>`` (QEMU's iommu_platform) needs a modern-only virtio device:
    on a pc machine's conventional PCI a virtio device is transitional (legacy too), and
    QEMU refuses it unless the model is virtio-non-transitional."""
    if drv is None or not getattr(drv, "iommu", None) or v.q35 or \
            str(model).endswith("non-transitional"):
        return None
    return (f"<driver iommu='on'> needs a modern-only virtio device: on machine "
            f"'{v.machine.name}' use model 'virtio-non-transitional'")


def check_rngs(v: Validation) -> None:
    if not v.dom.devices.rngs:
        return
    from qemuwrap.conf.devices.rng import RNGBackendModel
    from qemuwrap.qemu.build.rng import RNG_DEVICES
    from qemuwrap.qemu.validate.chardev import check_host_end

    for rng in v.dom.devices.rngs:
        v.require_device(RNG_DEVICES[rng.model], rng)
        check_virtio_iommu(v, rng, rng.model)
        backend = rng.backend
        if backend.model == RNGBackendModel.EGD:
            check_host_end(v, backend, "rng backend")


def check_watchdogs(v: Validation) -> None:
    dogs = v.dom.devices.watchdogs
    if not dogs:
        return
    from qemuwrap.conf.devices.watchdog import WatchdogAction, WatchdogModel
    from qemuwrap.qemu.build.watchdog import WATCHDOG_DEVICES

    for extra in dogs[1:]:
        v.refuse(extra, "only a single watchdog device is supported")
    for dog in dogs[:1]:
        if dog.model == WatchdogModel.DIAG288:
            v.refuse(dog, "watchdog model 'diag288' is for s390 guests only: not supported")
        elif dog.model == WatchdogModel.ITCO:
            if not v.q35:
                v.refuse(dog, f"watchdog model 'itco' is built into q35's ICH9, not into "
                              f"machine '{v.machine.name}': not supported")
        else:
            v.require_device(WATCHDOG_DEVICES[dog.model], dog)
        if dog.action == WatchdogAction.DUMP:
            v.refuse(dog, "watchdog action 'dump' is not supported: qemuwrap does not write "
                          "guest memory dumps")


def check_panics(v: Validation) -> None:
    if not v.dom.devices.panics:
        return
    from qemuwrap.conf.devices.panic import PanicModel
    from qemuwrap.qemu.build.panic import PANIC_DEVICES

    for panic in v.dom.devices.panics:
        model = panic.model
        if model in (PanicModel.PSERIES, PanicModel.S390):
            v.refuse(panic, f"panic model '{model}' is not supported for x86 guests")
            continue
        device = PANIC_DEVICES.get(model) if model is not None else None
        if device is not None:
            v.require_device(device, panic)


def check_memballoon(v: Validation) -> None:
    balloon = v.dom.devices.memballoon
    if balloon.model == BalloonModel.XEN:
        v.refuse(balloon, "memballoon model 'xen' is for Xen guests only: not supported")
        return
    device = BALLOON_DEVICES.get(balloon.model)
    if device is not None:
        v.require_device(device, balloon)
        check_virtio_iommu(v, balloon, balloon.model)


def check_iommu(v: Validation) -> None:
    iommu = v.dom.devices.iommu
    if iommu is None:
        return
    from qemuwrap.conf.devices.iommu import IOMMUModel

    if iommu.model == IOMMUModel.SMMUV3:
        v.refuse(iommu, "IOMMU model 'smmuv3' is for ARM virt machines only: not supported")
        return
    if not v.q35:
        v.refuse(iommu, f"IOMMU model '{iommu.model}' is only supported with q35 machines")
        return
    if iommu.model == IOMMUModel.INTEL:
        v.require_device("intel-iommu", iommu)
        drv = iommu.driver
        if drv is not None and drv.intremap and not _split_ioapic(v):
            v.refuse(drv, "IOMMU interrupt remapping requires split I/O APIC (<features>"
                          "<ioapic driver='qemu'/>)")
    else:
        v.require_device("virtio-iommu-pci", iommu)  # built by its alias, as libvirt does
        if not v.dom.acpi:
            v.refuse(iommu, "IOMMU model 'virtio' requires ACPI")


def _split_ioapic(v: Validation) -> bool:
    """``<features><ioapic driver='qemu'/>`` (the domain model's, when it has it)."""
    features = getattr(v.dom, "features", None)
    ioapic = getattr(features, "ioapic", None) if features is not None else None
    driver = getattr(ioapic, "driver", None)
    return str(driver) == "qemu"


def check_vsock(v: Validation) -> None:
    vsock = v.dom.devices.vsock
    if vsock is None:
        return
    from qemuwrap.qemu.build.vsock import VSOCK_DEVICES

    assert vsock.model is not None
    if not v.require_device(VSOCK_DEVICES[vsock.model], vsock):
        return
    check_virtio_iommu(v, vsock, vsock.model)
    if vsock.guest_cid is None:
        v.refuse(vsock, "<vsock> needs <cid address=N/> (3 or more): qemuwrap does not pick "
                        "a free guest CID")


def check_shmems(v: Validation) -> None:
    if not v.dom.devices.shmems:
        return
    from qemuwrap.conf.devices.shmem import ShmemModel

    for shmem in v.dom.devices.shmems:
        model = shmem.model
        if model == ShmemModel.IVSHMEM:
            v.refuse(shmem, "shmem model 'ivshmem' was removed in QEMU 4.0: use "
                            "'ivshmem-plain' or 'ivshmem-doorbell'")
            continue
        v.require_device(str(model), shmem)
        if shmem.server is not None:
            path = shmem.server_path
            if len(path.encode()) > 107:
                v.refuse(shmem.server, f"socket path {path} is longer than a UNIX socket "
                                       "allows")


def host_misc(h) -> None:
    """What vsock and an ivshmem server need from this host (a host check:
    ``validate/host.py``, not translation)."""
    devs = h.dom.devices
    if devs.vsock is not None and not os.path.exists(VHOST_VSOCK):
        h.refuse(devs.vsock, f"{VHOST_VSOCK} does not exist on this host (modprobe "
                             "vhost_vsock)")
    for shmem in devs.shmems:
        if shmem.server is not None and not os.path.exists(shmem.server_path):
            h.refuse(shmem.server, f"ivshmem server socket {shmem.server_path} does not "
                                   "exist (start ivshmem-server first)")


CHECKS = [check_rngs, check_watchdogs, check_panics, check_memballoon, check_iommu,
          check_vsock, check_shmems]
