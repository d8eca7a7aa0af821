"""Device ids, as libvirt names them (qemu_alias.c: ``net0``, ``virtio-disk0``,
``sata0-0-1``, ``usb``, ``pci.1``, ``sound0``, ...), written into the model as
``<alias>``.  An alias the XML already has is kept.  Builders use ``dev.alias_name`` for
``id=`` and derive bus names from their controller's alias (``scsi0.0``, ``usb.0``,
``virtio-serial0.0``, ``sound0.0``)."""

from __future__ import annotations

from qemuwrap.conf.devices.address import Alias, Device, DriveAddress
from qemuwrap.conf.devices.controller import Controller, ControllerModel, ControllerType
from qemuwrap.conf.devices.disk import Disk, DiskBus
from qemuwrap.conf.domain import Domain

#: libvirt's alias prefix for disks by bus (qemuAssignDeviceDiskAlias).
_DISK_PREFIX = {DiskBus.IDE: "ide", DiskBus.SATA: "sata", DiskBus.SCSI: "scsi",
                DiskBus.FDC: "fdc"}
#: Memory devices by model (qemuAssignDeviceMemoryAlias).
_MEMORY_PREFIX = {"dimm": "dimm", "nvdimm": "nvdimm", "virtio-pmem": "virtiopmem",
                  "virtio-mem": "virtiomem", "sgx-epc": "epc"}


def _name(dev: Device, alias: str) -> None:
    if dev.alias is None:
        dev.alias = Alias(name=alias)


def controller_alias(ctrl: Controller) -> str:
    """qemuAssignDeviceControllerAlias."""
    if ctrl.type == ControllerType.PCI:
        if ctrl.model == ControllerModel.PCIE_ROOT:
            return "pcie.0"
        return f"pci.{ctrl.index}"
    if ctrl.type == ControllerType.IDE:
        return "ide"  # the machine's own (PIIX3's, or the q35's AHCI)
    if ctrl.type == ControllerType.SATA:
        return f"sata{ctrl.index}"
    if ctrl.type == ControllerType.USB:
        return "usb" if ctrl.index == 0 else f"usb{ctrl.index}"
    return f"{ctrl.type}{ctrl.index}"


def disk_alias(disk: Disk) -> str | None:
    addr = disk.address
    if disk.bus == DiskBus.VIRTIO:
        return f"virtio-disk{disk.index}"
    if disk.bus == DiskBus.USB:
        return f"usb-disk{disk.index}"
    prefix = _DISK_PREFIX.get(disk.bus)
    if prefix is None or not isinstance(addr, DriveAddress):
        return None
    if disk.bus == DiskBus.SCSI and addr.target:
        return f"{prefix}{addr.controller}-{addr.bus}-{addr.target}-{addr.unit}"
    return f"{prefix}{addr.controller}-{addr.bus}-{addr.unit}"


def assign_aliases(dom: Domain) -> None:
    """qemuAssignDeviceAliases, for every device kind."""
    devs = dom.devices
    for ctrl in devs.controllers:
        _name(ctrl, controller_alias(ctrl))
    for disk in devs.disks:
        alias = disk_alias(disk)
        if alias is not None:
            _name(disk, alias)
    for n, dev in enumerate(devs.filesystems):
        _name(dev, f"fs{n}")
    for n, nic in enumerate(devs.interfaces):
        _name(nic, f"hostdev{n}" if nic.type == "hostdev" else f"net{n}")
    for n, card in enumerate(devs.smartcards):
        _name(card, f"smartcard{n}")
    serial_ports = set()
    for serial in devs.serials:
        _name(serial, f"serial{serial.port}")
        serial_ports.add(serial.port)
    for n, par in enumerate(devs.parallels):
        _name(par, f"parallel{n}")
    for n, console in enumerate(devs.consoles):
        # A console that is a serial port's alias names that port (libvirt: serial0).
        if console.target_type == "serial" and console.port in serial_ports:
            _name(console, f"serial{console.port}")
        else:
            _name(console, f"console{n}")
    for n, chan in enumerate(devs.channels):
        _name(chan, f"channel{n}")
    for n, inp in enumerate(devs.inputs):
        _name(inp, f"input{n}")
    for n, tpm in enumerate(devs.tpms):
        _name(tpm, f"tpm{n}")
    for n, sound in enumerate(devs.sounds):
        _name(sound, f"sound{n}")
    for n, video in enumerate(devs.videos):
        _name(video, f"video{n}")
    for n, hostdev in enumerate(devs.hostdevs):
        _name(hostdev, f"hostdev{n}")
    for n, redir in enumerate(devs.redirdevs):
        _name(redir, f"redir{n}")
    for n, hub in enumerate(devs.hubs):
        _name(hub, f"hub{n}")
    for n, watchdog in enumerate(devs.watchdogs):
        _name(watchdog, f"watchdog{n}")
    if devs.memballoon_el is not None:
        _name(devs.memballoon_el, "balloon0")
    for n, rng in enumerate(devs.rngs):
        _name(rng, f"rng{n}")
    for n, panic in enumerate(devs.panics):
        _name(panic, f"panic{n}")
    for n, shmem in enumerate(devs.shmems):
        _name(shmem, f"shmem{n}")
    counts: dict[str, int] = {}
    for mem in devs.memories:
        prefix = _MEMORY_PREFIX.get(str(mem.model), "dimm")
        _name(mem, f"{prefix}{counts.get(prefix, 0)}")
        counts[prefix] = counts.get(prefix, 0) + 1
    if devs.iommu is not None:
        _name(devs.iommu, "iommu0")
    if devs.vsock is not None:
        _name(devs.vsock, "vsock0")
