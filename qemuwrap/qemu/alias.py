"""Device ids, as libvirt names them (qemu_alias.c: ``net0``, ``virtio-disk0``,
``sata0-0-1``, ``usb``, ``pci.1``, ``sound0``, ...), written into the model as
``<alias>``.  A user alias from the XML (``ua-...``) is kept, as libvirt keeps it.
Builders use ``dev.alias_name`` for ``id=`` and derive bus names from their controller's
alias (``scsi0.0``, ``usb.0``, ``virtio-serial0.0``, ``sound0.0``)."""

from __future__ import annotations

from qemuwrap.conf.devices.address import Alias, Device, DIMMAddress, DriveAddress
from qemuwrap.conf.devices.controller import Controller, ControllerModel, ControllerType
from qemuwrap.conf.domain import Domain
from qemuwrap.hints import TYPE_CHECKING

if TYPE_CHECKING:
    from qemuwrap.conf.devices.disk import Disk

#: libvirt's alias prefix for disks by bus (qemuAssignDeviceDiskAlias), by spelling: the
#: disk model is loaded only for a guest with disks.
_DISK_PREFIX = {"ide": "ide", "sata": "sata", "scsi": "scsi", "fdc": "fdc"}
#: libvirt keeps aliases with this prefix from the XML (user aliases).
USER_PREFIX = "ua-"
#: Memory devices by model (qemuAssignDeviceMemoryAlias).
_MEMORY_PREFIX = {"dimm": "dimm", "nvdimm": "nvdimm", "virtio-pmem": "virtiopmem",
                  "virtio-mem": "virtiomem", "sgx-epc": "epc"}


def _name(dev: Device, alias: str) -> None:
    """libvirt keeps a user's alias (``ua-...``) and names everything else itself."""
    if dev.alias is None or not dev.alias.name.startswith(USER_PREFIX):
        dev.alias = Alias(name=alias)


def controller_alias(ctrl: Controller, q35: bool = False) -> str:
    """qemuAssignDeviceControllerAlias: the machine's own IDE (pc) and SATA (q35)
    controllers are "ide", the first USB controller is "usb" (its UHCI companions
    share it), the PCI root is "pci.0" or "pcie.0"."""
    if ctrl.type == ControllerType.PCI:
        if ctrl.model == ControllerModel.PCIE_ROOT:
            return "pcie.0"
        return f"pci.{ctrl.index}"
    if ctrl.type == ControllerType.IDE and ctrl.index == 0 and not q35:
        return "ide"
    if ctrl.type == ControllerType.SATA and ctrl.index == 0 and q35:
        return "ide"
    if ctrl.type == ControllerType.USB and ctrl.index == 0:
        return "usb"
    if ctrl.type == ControllerType.SCSI and ctrl.index == 0 \
            and ctrl.model == ControllerModel.NCR53C90:
        return "scsi"
    return f"{ctrl.type}{ctrl.index}"


def disk_alias(disk: Disk, scsi_models: dict[int, ControllerModel | None]) -> str | None:
    """qemuAssignDeviceDiskAlias: a drive address names the disk, with the target
    for every SCSI controller but the LSI one (``scsi0-0-0`` on lsilogic,
    ``scsi0-0-0-0`` on virtio-scsi)."""
    from qemuwrap.conf.devices.disk import DiskBus

    addr = disk.address
    if disk.bus == DiskBus.VIRTIO:
        return f"virtio-disk{disk.index}"
    if disk.bus == DiskBus.USB:
        return f"usb-disk{disk.index}"
    prefix = _DISK_PREFIX.get(disk.bus)
    if prefix is None or not isinstance(addr, DriveAddress):
        return None
    if disk.bus == DiskBus.SCSI \
            and scsi_models.get(addr.controller) != ControllerModel.LSILOGIC:
        return f"{prefix}{addr.controller}-{addr.bus}-{addr.target}-{addr.unit}"
    return f"{prefix}{addr.controller}-{addr.bus}-{addr.unit}"


def assign_aliases(dom: Domain) -> None:
    """qemuAssignDeviceAliases, for every device kind."""
    devs = dom.devices
    q35 = any(c.model == ControllerModel.PCIE_ROOT for c in devs.controllers)
    for ctrl in devs.controllers:
        if ctrl.is_pci_root:  # QEMU names the root bus itself
            ctrl.alias = Alias(name=controller_alias(ctrl, q35))
        else:
            _name(ctrl, controller_alias(ctrl, q35))
    scsi_models = {c.index: c.model for c in devs.controllers
                   if c.type == ControllerType.SCSI}
    for disk in devs.disks:
        alias = disk_alias(disk, scsi_models)
        if alias is not None:
            _name(disk, alias)
    for n, dev in enumerate(devs.filesystems):
        _name(dev, f"fs{n}")
    for n, nic in enumerate(devs.interfaces):
        _name(nic, f"hostdev{n}" if nic.type == "hostdev" else f"net{n}")
    for n, card in enumerate(devs.smartcards):
        _name(card, f"smartcard{n}")
    for n, serial in enumerate(devs.serials):  # by index, not port (qemuAssignDeviceChrAlias)
        _name(serial, f"serial{n}")
    for n, par in enumerate(devs.parallels):
        _name(par, f"parallel{n}")
    for n, console in enumerate(devs.consoles):
        # The serial console (only the first console can be one) is the first serial
        # port's other name: libvirt formats it from that serial, alias included.
        if n == 0 and console.target_type == "serial" and devs.serials:
            _name(console, devs.serials[0].alias_name or "serial0")
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
        # qemuAssignDeviceMemoryAlias: a DIMM or NVDIMM is named by its slot; virtio
        # memory (on PCI) and SGX EPC sections are counted.
        prefix = _MEMORY_PREFIX.get(str(mem.model), "dimm")
        slot = getattr(mem.address, "slot", None) if isinstance(mem.address, DIMMAddress) \
            else None
        if prefix in ("dimm", "nvdimm") and slot is not None:
            _name(mem, f"{prefix}{slot}")
            continue
        _name(mem, f"{prefix}{counts.get(prefix, 0)}")
        counts[prefix] = counts.get(prefix, 0) + 1
    if devs.iommu is not None:
        _name(devs.iommu, "iommu0")
    if devs.vsock is not None:
        _name(devs.vsock, "vsock0")
