"""What QEMU 7.2 can make of each ``<disk>`` (libvirt's qemuValidateDomainDeviceDefDisk
and friends), and what the host must have for it (:func:`check_host_storage`).

``CHECKS`` judge the definition against the machine and the binary: every refusal one
line naming the disk and the reason, all of them in one pass.  The host checks are
separate (:func:`check_host_storage`): a definition translates the same anywhere, but a
disk image that does not exist, a missing QEMU block module or an absent host device is
this host's fact, checked before a guest starts (and by ``validate``/``dry-run``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

from qemuwrap.conf.devices.address import DriveAddress
from qemuwrap.conf.devices.controller import ControllerModel, ControllerType
from qemuwrap.conf.devices.disk import (
    BACKING_FORMATS,
    SGIO,
    CacheMode,
    Disk,
    DiskBus,
    DiskDevice,
    DiskFormat,
    DiskType,
    ErrorPolicy,
    IoMode,
    NetProtocol,
)
from qemuwrap.errors import UnsupportedError
from qemuwrap.hints import TYPE_CHECKING
from qemuwrap.qemu.build.disk import NARROW_SCSI, disk_device
from qemuwrap.qemu.validate import refusal

if TYPE_CHECKING:
    from qemuwrap.conf.domain import Domain
    from qemuwrap.qemu.validate import Validation

#: sun_path of a UNIX socket address holds 107 bytes and a NUL.
UNIX_PATH_MAX = 107
#: libvirt's safe characters for a disk serial (QEMU_SERIAL_PARAM_ACCEPTED_CHARS).
SERIAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_ .+")
#: Protocols this QEMU does not have at all.
GONE_PROTOCOLS = {
    NetProtocol.SHEEPDOG: "QEMU removed its sheepdog driver in 6.0",
    NetProtocol.VXHS: "QEMU removed its VxHS driver in 5.1",
    NetProtocol.TFTP: "QEMU 7.2's curl driver has no tftp",
}
#: The QEMU module (Debian: qemu-block-extra) a protocol's block driver lives in.
PROTOCOL_MODULES = {
    NetProtocol.ISCSI: "block-iscsi", NetProtocol.RBD: "block-rbd",
    NetProtocol.GLUSTER: "block-gluster", NetProtocol.NFS: "block-nfs",
    NetProtocol.SSH: "block-ssh", NetProtocol.HTTP: "block-curl",
    NetProtocol.HTTPS: "block-curl", NetProtocol.FTP: "block-curl",
    NetProtocol.FTPS: "block-curl",
}
#: Where Debian's QEMU looks for its modules (CONFIG_QEMU_MODDIR).
QEMU_MODULE_DIRS = ("/usr/lib/x86_64-linux-gnu/qemu", "/usr/lib64/qemu", "/usr/lib/qemu")
SECRET_STORE = ("needs libvirt's secret store to hand QEMU the secret; qemuwrap has none "
                "(see README: no secrets on QEMU's command line)")


def _disks(v: Validation) -> list[Disk]:
    return v.dom.devices.disks


def check_buses(v: Validation) -> None:
    """Each disk's bus exists on this machine, with a controller at its address."""
    controllers = {(c.type, c.index): c for c in v.dom.devices.controllers}
    for disk in _disks(v):
        for problem in _bus_problems(v, disk, controllers):
            v.refuse(disk, problem)
            break
        else:
            device = disk_device(disk)
            if device is not None:
                v.require_device(device, disk)


def _bus_problems(v: Validation, disk: Disk, controllers: dict) -> Iterator[str]:
    bus, addr = disk.bus, disk.address
    machine = v.machine.name
    if bus == DiskBus.SD:
        yield f"bus 'sd' needs an SD card controller, which machine '{machine}' does not have"
    elif bus in (DiskBus.XEN, DiskBus.UML):
        yield f"bus '{bus}' is not a QEMU bus (it is {'Xen' if bus == DiskBus.XEN else 'UML'}'s)"
    if disk.type == DiskType.VHOSTUSER and bus != DiskBus.VIRTIO:
        yield "a vhostuser disk must be on bus 'virtio'"
    if disk.device == DiskDevice.LUN and bus != DiskBus.SCSI:
        yield f"a LUN (device='lun') must be on bus 'scsi', not '{bus}' (QEMU 7.2's " \
              "virtio-blk has no SCSI passthrough)"
    if disk.readonly and disk.device == DiskDevice.DISK and bus in (DiskBus.IDE,
                                                                   DiskBus.SATA):
        yield f"readonly {bus} disks are not supported"  # ide-hd refuses a read-only drive
    if not isinstance(addr, DriveAddress):
        if bus == DiskBus.USB and not _usb_controller(v):
            yield "a USB disk needs a USB controller (not model 'none')"
        return
    if bus == DiskBus.IDE:
        if v.q35:
            yield f"machine '{machine}' has no IDE bus; use bus='sata'"
        elif addr.controller != 0:
            yield f"disk '{disk.target_dev}' is on IDE controller {addr.controller}: " \
                  "the machine has one (hda..hdd)"
        elif addr.bus > 1 or addr.unit > 1:
            yield f"IDE bus {addr.bus} unit {addr.unit} does not exist (buses 0-1, units 0-1)"
    elif bus == DiskBus.SATA:
        if addr.unit > 5:
            yield f"SATA unit {addr.unit} is beyond the 6 ports of a controller"
        elif not (v.q35 and addr.controller == 0) and \
                (ControllerType.SATA, addr.controller) not in controllers:
            yield f"disk '{disk.target_dev}' needs <controller type='sata' " \
                  f"index='{addr.controller}'/>"
    elif bus == DiskBus.FDC:
        if addr.controller != 0 or addr.unit > 1:
            yield "the floppy controller has two drives (fda, fdb: controller 0, units 0-1)"
    elif bus == DiskBus.SCSI:
        ctrl = controllers.get((ControllerType.SCSI, addr.controller))
        if ctrl is None:
            yield f"disk '{disk.target_dev}' needs <controller type='scsi' " \
                  f"index='{addr.controller}'/>"
            return
        model = ctrl.model if ctrl.model not in (None, ControllerModel.AUTO) \
            else ControllerModel.LSILOGIC
        if model in NARROW_SCSI:
            if addr.target != 0:
                yield f"target must be 0 for controller model '{model}'"
            elif addr.unit > 6:
                yield f"SCSI id {addr.unit} is beyond controller model '{model}''s ids 0-6"
        elif addr.target > 255 or addr.unit > 16383:
            yield "a virtio-scsi address has targets 0-255 and LUNs 0-16383"


def _usb_controller(v: Validation) -> bool:
    return any(c.type == ControllerType.USB and c.model != ControllerModel.NONE
               for c in v.dom.devices.controllers)


def check_frontend(v: Validation) -> None:
    """Device-side options against the bus (qemuValidateDomainDeviceDefDiskFrontend)."""
    for disk in _disks(v):
        for problem in _frontend_problems(v, disk):
            v.refuse(disk, problem)


def _frontend_problems(v: Validation, disk: Disk) -> Iterator[str]:
    bus, device = disk.bus, disk.device
    virtio = bus == DiskBus.VIRTIO
    drv = disk.driver
    geo = disk.geometry
    if bus == DiskBus.USB and device == DiskDevice.CDROM and not disk.has_media:
        yield ("an empty usb cdrom cannot start: QEMU's usb-storage has no tray and needs "
               "a medium (give it a <source>, or put the cdrom on sata, ide or scsi)")
    if geo is not None:
        if bus == DiskBus.USB:
            yield "CHS geometry can not be set for 'usb' bus"
        if geo.trans is not None and bus != DiskBus.IDE:
            yield f"CHS translation mode can only be set for 'ide' bus, not '{bus}'"
    if disk.wwn is not None and (bus not in (DiskBus.IDE, DiskBus.SCSI)
                                 or device == DiskDevice.LUN):
        yield "only ide and scsi disks (not LUNs) take a <wwn>"
    if (disk.vendor is not None or disk.product is not None) and (
            bus != DiskBus.SCSI or device == DiskDevice.LUN):
        yield "only scsi disks (not LUNs) take <vendor> and <product>"
    if disk.serial is not None:
        if bus == DiskBus.SCSI and device == DiskDevice.LUN:
            yield "scsi-block 'lun' devices do not support the serial property"
        elif not SERIAL_CHARS.issuperset(disk.serial):
            yield f"serial '{disk.serial}' contains characters other than letters, " \
                  "digits, space and -_.+"
    rate = disk.target.rotation_rate
    if rate is not None and (bus not in (DiskBus.SCSI, DiskBus.IDE, DiskBus.SATA)
                             or device != DiskDevice.DISK):
        yield "rotation_rate is only for disks (device='disk') on scsi, ide or sata"
    if disk.target.removable is not None and not (
            bus == DiskBus.USB or (bus == DiskBus.SCSI and device == DiskDevice.DISK)):
        yield "attribute 'removable' is only for usb disks and scsi disks"
    if disk.iotune is not None:
        yield from _iotune_problems(disk)
    if disk.blockio is not None and device == DiskDevice.LUN:
        yield "a LUN passes the host's block sizes through: <blockio> is not for it"
    if drv is None:
        return
    if not virtio:
        for name in ("queues", "queue_size", "iothread", "ioeventfd", "event_idx", "iommu",
                     "ats", "packed", "page_per_vq"):
            if getattr(drv, name) is not None:
                yield f"driver attribute '{name}' is only for virtio disks"
    else:
        from qemuwrap.qemu.validate.misc import virtio_iommu_problem

        problem = virtio_iommu_problem(v, drv, disk.model)
        if problem is not None:
            yield problem
    if drv.io == IoMode.NATIVE and drv.cache not in (CacheMode.NONE, CacheMode.DIRECTSYNC):
        yield "io='native' needs cache='none' or cache='directsync'"
    if drv.copy_on_read:
        if disk.readonly or device in (DiskDevice.CDROM, DiskDevice.FLOPPY,
                                       DiskDevice.LUN):
            yield "copy_on_read is only for writable disks (not cdroms, floppies or LUNs)"
    if drv.iothread is not None and virtio:
        ids = _iothread_ids(v.dom)
        if drv.iothread not in ids:
            yield f"disk iothread '{drv.iothread}' is not defined in <iothreads>/" \
                  "<iothreadids>"
    if drv.error_policy is not None and device == DiskDevice.LUN:
        yield "a LUN takes no error_policy (SCSI passthrough reports errors itself)"
    if drv.rerror_policy == ErrorPolicy.ENOSPACE:
        yield "rerror_policy='enospace' does not exist"


#: QEMU's ceiling for a throttle limit (libvirt's QEMU_BLOCK_IOTUNE_MAX).
IOTUNE_MAX = 10**15


def _iotune_problems(disk: Disk) -> Iterator[str]:
    """QEMU's throttle rules (throttle_is_valid), which libvirt meets at start."""
    tune = disk.iotune
    assert tune is not None
    if tune.group_name is not None and not tune.limits():
        yield "<iotune> with only a group_name sets nothing"
    if tune.size_iops_sec and not (tune.total_iops_sec or tune.read_iops_sec
                                   or tune.write_iops_sec):
        yield "size_iops_sec needs an iops limit (total_iops_sec, read_iops_sec or " \
              "write_iops_sec)"
    for _name, value in tune.limits():
        if value > IOTUNE_MAX:
            yield f"<iotune> limit {value} is above QEMU's {IOTUNE_MAX}"
            break
    for limit in ("total_bytes_sec", "read_bytes_sec", "write_bytes_sec", "total_iops_sec",
                  "read_iops_sec", "write_iops_sec"):
        length = getattr(tune, f"{limit}_max_length")
        if length and length > 1 and not getattr(tune, f"{limit}_max"):
            yield f"{limit}_max_length needs {limit}_max"


def _iothread_ids(dom: Domain) -> set[int]:
    """The I/O threads the domain defines (area C's ``iothreadids``; none before it)."""
    ids = getattr(dom, "iothreadids", None)
    if ids is None:
        return set()
    return {getattr(t, "id", t) for t in ids}


def check_storage(v: Validation) -> None:
    """The images and their access (qemuDomainValidateStorageSource and friends)."""
    for disk in _disks(v):
        for problem in _storage_problems(v, disk):
            v.refuse(disk, problem)


def _storage_problems(v: Validation, disk: Disk) -> Iterator[str]:
    if disk.type == DiskType.VOLUME:
        yield "a volume disk needs libvirt's storage pools to find its image; use a " \
              "file, block or network disk instead"
        return
    if disk.all_auth is not None:
        yield f"<auth> {SECRET_STORE}"
    if disk.all_encryption is not None:
        yield f"<encryption> {SECRET_STORE}"
    if disk.transient is not None:
        yield from _transient_problems(disk)
    if disk.sgio == SGIO.UNFILTERED:
        yield "sgio='unfiltered' changes the host device's unpriv_sgio setting, which " \
              "qemuwrap does not do"
    if disk.shareable and not disk.readonly and disk.image_format != DiskFormat.RAW:
        yield "a shareable writable disk must be raw (QEMU cannot share other formats)"
    if disk.src is not None and disk.src.reservations is not None \
            and disk.device != DiskDevice.LUN:
        yield "<reservations/> allowed only for lun devices (device='lun')"
    for kind, fmt, src in disk.chain():
        yield from _format_problems(kind, fmt)
        if src.fdgroup is not None:
            yield f"fdgroup='{src.fdgroup}' names file descriptors handed to libvirt " \
                  "(virsh dom-fd-associate); qemuwrap opens images by path"
        if src.cookies is not None:
            yield f"HTTP cookies are passed to QEMU as a secret object, which {SECRET_STORE}"
        if src.reservations is not None and src.reservations.managed:
            yield "managed reservations need qemu-pr-helper started for the guest, which " \
                  "qemuwrap does not do; run it yourself and use managed='no'"
        if kind == DiskType.NETWORK and src.protocol in GONE_PROTOCOLS:
            yield f"protocol '{src.protocol}' cannot run: " \
                  f"{GONE_PROTOCOLS[src.protocol]}"
        if kind == DiskType.NETWORK and src.identity is not None:
            for ident in (src.identity.user, src.identity.group):
                if ident is not None and not ident.startswith("+"):
                    yield f"NFS identity '{ident}' must be numeric ('+N'): qemuwrap does " \
                          "not look up host users"
        if kind == DiskType.NVME and src.managed is not False:
            yield "an NVMe controller must be bound to vfio-pci by you (managed='no'): " \
                  "qemuwrap does not rebind host devices"
        for path in _socket_paths(src):
            if len(os.fsencode(path)) > UNIX_PATH_MAX:
                yield f"socket path {path} is longer than {UNIX_PATH_MAX} bytes, the " \
                      "limit of a UNIX socket address"
    for _kind, fmt, _src in disk.chain()[:-1]:
        if fmt not in BACKING_FORMATS:
            yield f"storage format '{fmt}' does not support backing store"
    if disk.type == DiskType.VHOSTUSER:
        if not _shared_memory(v.dom):
            yield "'vhostuser' disks need shared guest memory (<memoryBacking><access " \
                  "mode='shared'/>)"
        if disk.readonly or disk.serial is not None or disk.backing is not None:
            yield "a vhostuser disk takes no <readonly>, <serial> or <backingStore>"


def _transient_problems(disk: Disk) -> Iterator[str]:
    """qemuValidateDomainDeviceDefDiskTransient, and what QEMU's -drive snapshot=on (how
    qemuwrap builds one) cannot carry."""
    if not disk.has_media:
        yield f"transient disk '{disk.target_dev}' must not be empty"
    elif disk.readonly:
        yield f"transient disk '{disk.target_dev}' must not be read-only"
    elif disk.type != DiskType.FILE or disk.device != DiskDevice.DISK:
        yield "a transient disk must be a type='file' device='disk'"
    elif disk.backing is not None and not disk.backing.is_terminator:
        yield "a transient disk's image is opened with its own backing chain: give no " \
              "<backingStore> chain"
    elif disk.iotune is not None or disk.driver_value("copy_on_read") or (
            disk.src is not None and (disk.src.slices or disk.src.reservations)):
        yield "a transient disk takes no <iotune>, copy_on_read, <slices> or <reservations>"


def _format_problems(kind: DiskType, fmt: DiskFormat) -> Iterator[str]:
    if fmt == DiskFormat.COW:
        yield "'cow' storage format is not supported"
    elif fmt == DiskFormat.DIR:
        yield "'directory' storage format is not directly supported by QEMU, use 'dir' " \
              "disk type instead"
    elif fmt == DiskFormat.ISO:
        yield "storage format 'iso' is not directly supported by QEMU, use 'raw' instead"
    elif kind == DiskType.DIR and fmt != DiskFormat.FAT:
        yield f"a type='dir' disk is a FAT image of the directory: format must be 'fat', " \
              f"not '{fmt}'"
    elif fmt == DiskFormat.FAT and kind != DiskType.DIR:
        yield "format 'fat' is a directory shown as a FAT image: it needs type='dir'"


def _socket_paths(src) -> Iterator[str]:
    for host in src.hosts:
        if host.socket is not None:
            yield host.socket
    if src.path is not None:
        yield src.path
    res = src.reservations
    if res is not None and res.source is not None:
        yield res.source.path


def _shared_memory(dom: Domain) -> bool:
    """Whether guest memory is shared (area C's <memoryBacking>/<numa> model)."""
    backing = getattr(dom, "memory_backing", None)
    if backing is not None and str(getattr(backing, "access", "")) == "shared":
        return True
    numa = getattr(getattr(dom, "cpu", None), "numa", None)
    cells = getattr(numa, "cells", None) or []
    return bool(cells) and all(str(getattr(c, "mem_access", "")) == "shared" for c in cells)


def check_addresses(v: Validation) -> None:
    """Two disks at one drive address (virDomainDefCheckDuplicateDriveAddresses)."""
    seen: dict[tuple[DiskBus, int, int, int, int], Disk] = {}
    for disk in _disks(v):
        addr = disk.address
        if not isinstance(addr, DriveAddress):
            continue
        key = (disk.bus, addr.controller, addr.bus, addr.target, addr.unit)
        other = seen.get(key)
        if other is not None:
            v.refuse(disk, f"disk '{disk.target_dev}' has the drive address of disk "
                           f"'{other.target_dev}' (controller {addr.controller}, bus "
                           f"{addr.bus}, target {addr.target}, unit {addr.unit})")
        else:
            seen[key] = disk


CHECKS = [check_buses, check_frontend, check_storage, check_addresses]


# --------------------------------------------------------------------------- the host
def check_host_storage(dom: Domain, module_dirs: tuple[str, ...] = QEMU_MODULE_DIRS
                       ) -> list[UnsupportedError]:
    """What this host lacks for the guest's disks, one refusal each: a local image that
    does not exist (of any layer), a block device that is not one, a QEMU block module
    that is not installed, an NVMe controller or vhost-user socket that is not there.

    Call ``validate.host.drop_missing_optional`` first: missing images whose
    startupPolicy lets them go are dropped, as libvirt drops them."""
    problems: list[UnsupportedError] = []
    for disk in dom.devices.disks:
        for message in _host_problems(disk, module_dirs):
            problems.append(refusal(disk, message))
    return problems


def _host_problems(disk: Disk, module_dirs: tuple[str, ...]) -> Iterator[str]:
    for kind, _fmt, src in disk.chain():
        path = src.path_for(kind)
        if path is not None:
            yield from _local_problems(kind, path, disk)
        elif kind == DiskType.NETWORK and src.protocol in PROTOCOL_MODULES:
            module = PROTOCOL_MODULES[src.protocol]
            if not any(os.path.exists(os.path.join(d, f"{module}.so")) for d in module_dirs):
                yield f"protocol '{src.protocol}' needs QEMU's {module} module (Debian " \
                      "package qemu-block-extra), which is not installed"
        elif kind == DiskType.NVME and src.nvme_address is not None:
            if not os.path.exists(f"/sys/bus/pci/devices/{src.nvme_address}"):
                yield f"host PCI device {src.nvme_address} does not exist"
    if disk.type == DiskType.VHOSTUSER and disk.src is not None and disk.src.path:
        reconnect = disk.src.reconnect
        if not _is_socket(disk.src.path) and not (reconnect and reconnect.enabled):
            yield f"vhost-user socket {disk.src.path} does not exist (start the " \
                  "vhost-user-blk daemon first)"
    for _kind, _fmt, src in disk.chain():
        res = src.reservations
        if res is not None and res.source is not None and not _is_socket(res.source.path):
            yield f"reservations helper socket {res.source.path} does not exist"


def _local_problems(kind: DiskType, path: str, disk: Disk) -> Iterator[str]:
    try:
        st = os.stat(path)
    except OSError as exc:
        yield f"disk source {path} cannot be used: {exc.strerror}"
        return
    if kind == DiskType.DIR and not stat.S_ISDIR(st.st_mode):
        yield f"disk source {path} is not a directory"
    elif kind == DiskType.BLOCK and not stat.S_ISBLK(st.st_mode):
        yield f"disk source {path} is not a block device (use type='file' for an image)"
    elif kind == DiskType.FILE and stat.S_ISDIR(st.st_mode):
        yield f"disk source {path} is a directory (use type='dir')"
    elif disk.device == DiskDevice.LUN and not stat.S_ISBLK(st.st_mode):
        yield f"LUN source {path} is not a block device"


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False
