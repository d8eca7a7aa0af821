"""Disks, cdroms, floppies, LUNs: each image of a disk's chain as a pair of ``-blockdev``
nodes (the storage: a file, a host device, an NBD export, ...; and the format on top),
then the guest's device (``-device``) on its bus, as libvirt 9.0 builds them for QEMU 7.2
(qemuBuildDisksCommandLine, qemu_block.c).

Node names are libvirt's: ``libvirt-N-storage`` / ``libvirt-N-format``, numbered from the
last disk to the first, each chain from the top image down (libvirt prepares the disks in
reverse order).  Two things are built where libvirt uses QMP after QEMU starts: ``<iotune>``
limits are a ``throttle`` filter node over a ``throttle-group`` object (the same limits,
in force from the first guest I/O), and nothing else differs.
"""

from __future__ import annotations

from qemuwrap.conf.devices.address import DriveAddress, USBAddress
from qemuwrap.conf.devices.controller import Controller, ControllerModel, ControllerType
from qemuwrap.conf.devices.disk import (
    BACKING_FORMATS,
    CacheMode,
    DetectZeroes,
    DiscardMode,
    Disk,
    DiskBus,
    DiskDevice,
    DiskFormat,
    DiskModel,
    DiskSource,
    DiskType,
    ErrorPolicy,
    Host,
    NetProtocol,
)
from qemuwrap.conf.domain import BootDev
from qemuwrap.conf.xmlmodel import table
from qemuwrap.hints import TYPE_CHECKING
from qemuwrap.qemu.argv import optstr
from qemuwrap.qemu.build import BuildContext

if TYPE_CHECKING:
    from typing import Any

#: The guest device of a disk (device='disk') on each bus.
DISK_DEVICES = table(DiskBus, {
    DiskBus.IDE: "ide-hd", DiskBus.SATA: "ide-hd", DiskBus.VIRTIO: "virtio-blk-pci",
    DiskBus.SCSI: "scsi-hd", DiskBus.USB: "usb-storage", DiskBus.FDC: "floppy"},
    not_mapped={DiskBus.XEN: "Xen's paravirtual disk: refused (not QEMU on x86)",
                DiskBus.UML: "User-Mode Linux's disk: refused (not QEMU)",
                DiskBus.SD: "an SD card: refused (no SD controller on pc or q35)"})
#: A cdrom's device where it differs from a disk's.
CDROM_DEVICES = {DiskBus.IDE: "ide-cd", DiskBus.SATA: "ide-cd", DiskBus.SCSI: "scsi-cd"}

#: virtio-blk's device name per ``<disk model>``; vhost-user-blk's is built alike.
VIRTIO_SUFFIX = table(DiskModel, {DiskModel.VIRTIO: "",
                                  DiskModel.VIRTIO_TRANSITIONAL: "-transitional",
                                  DiskModel.VIRTIO_NON_TRANSITIONAL: "-non-transitional"})

#: (write-cache on the device, cache.direct, cache.no-flush) per cache mode
#: (qemuDomainDiskCachemodeFlags).
CACHE_FLAGS = table(CacheMode, {
    CacheMode.NONE: (True, True, False), CacheMode.WRITETHROUGH: (False, False, False),
    CacheMode.WRITEBACK: (True, False, False), CacheMode.DIRECTSYNC: (False, True, False),
    CacheMode.UNSAFE: (True, False, True)},
    not_mapped={CacheMode.DEFAULT: "QEMU's own default: no cache options"})

#: QEMU's block driver for each image format (qemuBlockStorageSourceGetBlockdevFormatProps).
FORMAT_DRIVERS = table(DiskFormat, {
    DiskFormat.RAW: "raw", DiskFormat.FAT: "raw", DiskFormat.QCOW2: "qcow2",
    DiskFormat.QCOW: "qcow", DiskFormat.PLOOP: "parallels", DiskFormat.VHD: "vhdx",
    DiskFormat.BOCHS: "bochs", DiskFormat.CLOOP: "cloop", DiskFormat.DMG: "dmg",
    DiskFormat.VDI: "vdi", DiskFormat.VPC: "vpc", DiskFormat.QED: "qed",
    DiskFormat.VMDK: "vmdk"},
    not_mapped={DiskFormat.COW: "refused: QEMU has no 'cow' driver",
                DiskFormat.ISO: "refused: libvirt says use 'raw'",
                DiskFormat.DIR: "refused: libvirt says use a type='dir' disk"})

#: QEMU's werror/rerror spelling of an error policy.
ERROR_POLICIES = table(ErrorPolicy, {ErrorPolicy.STOP: "stop", ErrorPolicy.REPORT: "report",
                                     ErrorPolicy.IGNORE: "ignore",
                                     ErrorPolicy.ENOSPACE: "enospc"})

#: libvirt's TLS certificate directory for NBD disks (qemu.conf's default_tls_x509_cert_dir).
TLS_X509_DIR = "/etc/pki/qemu"
#: libvirt's default gluster debug level (qemu.conf's gluster_debug_level).
GLUSTER_DEBUG = 4


def disk_device(disk: Disk) -> str | None:
    """The ``-device`` driver of ``disk`` (None: a bus nothing builds)."""
    if disk.type == DiskType.VHOSTUSER:
        return "vhost-user-blk-pci" + VIRTIO_SUFFIX[disk.model or DiskModel.VIRTIO]
    if disk.bus == DiskBus.VIRTIO:
        return "virtio-blk-pci" + VIRTIO_SUFFIX[disk.model or DiskModel.VIRTIO]
    if disk.device == DiskDevice.LUN:
        return "scsi-block" if disk.bus == DiskBus.SCSI else None
    if disk.device == DiskDevice.CDROM and disk.bus in CDROM_DEVICES:
        return CDROM_DEVICES[disk.bus]
    return DISK_DEVICES.get(disk.bus)


def qemu_opts(first: str | None, props: dict[str, Any]) -> str:
    """``first,key=value,...`` with QEMU's own key spellings: optstr writes every '_' of
    a key as '-', but QEMU names block and virtio properties with '_' (device_id,
    event_idx, iommu_platform, logical_block_size, rotation_rate).  Each value is
    escaped by optstr; None is left out, booleans are on/off."""
    parts = [] if first is None else [str(optstr(first))]
    for key, value in props.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "on" if value else "off"
        parts.append(f"{key}={optstr(value)}")
    return ",".join(parts)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    """QEMU's dotted keys for nested options (``server.0.host``)."""
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    elif isinstance(value, list):
        for n, item in enumerate(value):
            _flatten(f"{prefix}.{n}", item, out)
    else:
        out[prefix] = value


# --------------------------------------------------------------------------- node names
class NodeNames:
    """libvirt's node numbers: disks from the last to the first, each chain top down;
    every disk counts (an empty cdrom too)."""

    def __init__(self, disks: list[Disk]):
        self.numbers: dict[int, list[int]] = {}
        n = 0
        for disk in reversed(disks):
            layers = max(1, len(disk.chain()))
            self.numbers[id(disk)] = list(range(n + 1, n + layers + 1))
            n += layers

    def of(self, disk: Disk) -> list[int]:
        return self.numbers[id(disk)]


def effective_boot_index(ctx: BuildContext) -> dict[int, int]:
    """Each disk's bootindex: its ``<boot order>``, or where ``<os><boot dev>`` puts the
    first disk, cdrom and floppy (libvirt's qemuProcessPrepareDeviceBootorder; no
    ``<boot>`` anywhere means 'hd')."""
    dom = ctx.dom
    out: dict[int, int] = {}
    devices = dom.devices
    per_device = any(getattr(d, "boot", None) is not None for d in devices.all())
    order = list(dom.os.boot) or ([] if per_device else [BootDev.HD])
    wanted = {dev: n for n, dev in enumerate(order, 1)}
    firsts = {DiskDevice.CDROM: wanted.get(BootDev.CDROM),
              DiskDevice.FLOPPY: wanted.get(BootDev.FD),
              DiskDevice.DISK: wanted.get(BootDev.HD)}
    firsts[DiskDevice.LUN] = firsts[DiskDevice.DISK]
    for disk in devices.disks:
        if disk.boot is not None:
            out[id(disk)] = disk.boot.order
            continue
        kind = DiskDevice.DISK if disk.device == DiskDevice.LUN else disk.device
        index = firsts.get(kind)
        if index:
            out[id(disk)] = index
            firsts[kind] = None
            if kind == DiskDevice.DISK:
                firsts[DiskDevice.LUN] = None
    return out


# --------------------------------------------------------------------------- -blockdev
class _Layer:
    """One image of a disk's chain and what its two nodes need."""

    def __init__(self, disk: Disk, kind: DiskType, fmt: DiskFormat, src: DiskSource,
                 number: int, top: bool):
        self.disk, self.kind, self.fmt, self.src = disk, kind, fmt, src
        self.number, self.top = number, top

    @property
    def storage(self) -> str:
        return f"libvirt-{self.number}-storage"

    @property
    def format_node(self) -> str:
        return f"libvirt-{self.number}-format"

    @property
    def readonly(self) -> bool:
        return self.disk.readonly if self.top else True


def cache_mode(disk: Disk) -> CacheMode:
    """The disk's cache mode; a writable shareable disk without one gets 'none', so no
    host page cache sits between guests (libvirt's qemuDomainPrepareDiskCachemode)."""
    mode = disk.driver_value("cache") or CacheMode.DEFAULT
    if mode == CacheMode.DEFAULT and disk.shareable and not disk.readonly:
        return CacheMode.NONE
    return mode


def _cache_props(disk: Disk) -> dict[str, bool] | None:
    flags = CACHE_FLAGS.get(cache_mode(disk))
    if flags is None:
        return None
    return {"direct": flags[1], "no-flush": flags[2]}


def _socket_address(host: Host, src: DiskSource) -> dict[str, Any]:
    """QEMU's SocketAddress of a host (qemuBlockStorageSourceBuildJSONSocketAddress)."""
    if host.is_unix:
        return {"type": "unix", "path": host.socket}
    return {"type": "inet", "host": host.name, "port": str(src.port_of(host) or 0)}


def _network_props(layer: _Layer) -> dict[str, Any]:
    src = layer.src
    proto = src.protocol
    assert proto is not None
    hosts = src.hosts
    if proto == NetProtocol.NBD:
        return {"driver": "nbd", "server": _socket_address(hosts[0], src),
                "export": src.name,
                "tls-creds": f"obj{layer.storage}_tls0" if src.tls else None,
                "tls-hostname": src.tlsHostname if src.tls else None,
                "reconnect-delay": src.reconnect.delay if src.reconnect else None}
    if proto == NetProtocol.GLUSTER:
        volume, path = src.pool_and_image
        return {"driver": "gluster", "volume": volume, "path": path,
                "server": [_socket_address(h, src) for h in hosts], "debug": GLUSTER_DEBUG}
    if proto == NetProtocol.RBD:
        pool, image = src.pool_and_image
        return {"driver": "rbd", "pool": pool, "image": image,
                "snapshot": src.snapshot.name if src.snapshot else None,
                "conf": src.config.file if src.config else None,
                "server": [{"host": h.name, "port": str(src.port_of(h) or 0)}
                           for h in hosts] or None}
    if proto == NetProtocol.ISCSI:
        host = hosts[0]
        name = host.name or ""
        portal = f"[{name}]:{src.port_of(host)}" if ":" in name else \
            f"{name}:{src.port_of(host)}"
        return {"driver": "iscsi", "portal": portal, "target": (src.name or "").split("/")[0],
                "lun": src.iscsi_lun, "transport": "tcp",
                "initiator-name": src.initiator.iqn.name if src.initiator else None}
    if proto in (NetProtocol.HTTP, NetProtocol.HTTPS, NetProtocol.FTP, NetProtocol.FTPS,
                 NetProtocol.TFTP):
        host = hosts[0]
        name = src.name or ""
        path = name if name.startswith("/") else "/" + name
        url = f"{proto}://{host.name}:{src.port_of(host)}{path}"
        if src.query:
            url += "?" + src.query
        return {"driver": str(proto), "url": url,
                "sslverify": src.ssl.verify if src.ssl else None,
                "timeout": src.timeout.seconds if src.timeout else None,
                "readahead": src.readahead.size if src.readahead else None}
    if proto == NetProtocol.NFS:
        ident = src.identity
        return {"driver": "nfs", "server": {"host": hosts[0].name, "type": "inet"},
                "path": src.name,
                "user": _nfs_id(ident.user) if ident else None,
                "group": _nfs_id(ident.group) if ident else None}
    if proto == NetProtocol.SSH:
        host = hosts[0]
        return {"driver": "ssh", "path": src.name,
                "server": {"host": host.name, "port": str(src.port_of(host))}}
    if proto == NetProtocol.SHEEPDOG:
        return {"driver": "sheepdog", "server": _socket_address(hosts[0], src),
                "vdi": src.name}
    return {"driver": "vxhs", "vdisk-id": src.name,  # VXHS: refused by validation
            "server": {"host": hosts[0].name, "port": str(src.port_of(hosts[0]))}}


def _nfs_id(value: str | None) -> int | None:
    """``+N`` is a numeric uid/gid (libvirt resolves names on the host; validation
    refuses those)."""
    if value is None or not value.startswith("+"):
        return None
    return int(value[1:])


def is_host_cdrom(disk: Disk, path: str | None) -> bool:
    """A host's optical drive given to a cdrom: QEMU's host_cdrom passes its tray and
    media changes through.  libvirt asks the device (an ioctl, at start); builders do
    not touch the host, so this goes by the names udev gives optical drives."""
    if disk.device != DiskDevice.CDROM or path is None or disk.image_format != DiskFormat.RAW:
        return False
    name = path.rsplit("/", 1)[-1]
    return path.startswith("/dev/") and (name.startswith("cdrom") or name.startswith("dvd")
                                         or (name.startswith("sr") and name[2:].isdigit()))


def storage_props(layer: _Layer) -> dict[str, Any]:
    """The storage node (qemuBlockStorageSourceGetBackendProps)."""
    disk, src, kind = layer.disk, layer.src, layer.kind
    io = disk.driver_value("io")
    if kind in (DiskType.FILE, DiskType.BLOCK):
        path = src.path_for(kind)
        if kind == DiskType.BLOCK:
            driver = "host_cdrom" if is_host_cdrom(disk, path) else "host_device"
        else:
            driver = "file"
        props: dict[str, Any] = {"driver": driver, "filename": path,
                                 "aio": str(io) if io else None,
                                 "pr-manager": _pr_manager(layer)}
    elif kind == DiskType.DIR:
        props = {"driver": "vvfat", "dir": src.dir,
                 "floppy": disk.device == DiskDevice.FLOPPY, "rw": not disk.readonly}
    elif kind == DiskType.NVME:
        assert src.nvme_address is not None
        props = {"driver": "nvme", "device": str(src.nvme_address),
                 "namespace": src.namespace}
    else:
        props = _network_props(layer)
    props["node-name"] = layer.storage
    props["cache"] = _cache_props(disk)
    props["auto-read-only"] = True
    props["discard"] = "unmap"
    return props


def _pr_manager(layer: _Layer) -> str | None:
    res = layer.src.reservations
    if res is None:
        return None
    return "pr-helper0" if res.managed else f"pr-helper-{layer.storage}"


def _slice_node(layer: _Layer) -> str | None:
    """A separate raw node for the storage slice, unless the format node is raw itself."""
    sl = layer.src.slices.storage if layer.src.slices else None
    if sl is None or layer.fmt in (DiskFormat.RAW, DiskFormat.FAT):
        return None
    return f"libvirt-{layer.number}-slice-sto"


def format_props(layer: _Layer, below: _Layer | None, terminated: bool) -> dict[str, Any]:
    """The format node (qemuBlockStorageSourceGetFormatProps): read-only, discard and
    zero detection (the top image only), cache, the driver, its file and backing."""
    disk = layer.disk
    discard = disk.driver_value("discard")
    zeroes = disk.driver_value("detect_zeroes") if layer.top else None
    if zeroes == DetectZeroes.UNMAP and discard != DiscardMode.UNMAP:
        zeroes = DetectZeroes.ON  # virDomainDiskGetDetectZeroesMode
    props: dict[str, Any] = {
        "node-name": layer.format_node, "read-only": layer.readonly,
        "discard": str(discard) if discard else None,
        "detect-zeroes": str(zeroes) if zeroes else None,
        "cache": _cache_props(disk), "driver": FORMAT_DRIVERS[layer.fmt]}
    sl = layer.src.slices.storage if layer.src.slices else None
    if sl is not None and _slice_node(layer) is None:
        props.update(offset=sl.offset, size=sl.size)
    if layer.fmt == DiskFormat.QCOW2:
        props["cache-size"] = _metadata_cache(layer)
    props["file"] = _slice_node(layer) or layer.storage
    if layer.fmt in BACKING_FORMATS:
        if below is not None:
            props["backing"] = below.format_node
        elif terminated:
            props["backing"] = NULL  # no backing: QEMU must not follow the header
    return props


def _metadata_cache(layer: _Layer) -> int | None:
    disk = layer.disk
    if layer.top:
        cache = disk.driver.metadata_cache if disk.driver else None
        return cache.max_size if cache else None
    node = disk.backing
    while node is not None and node.src is not layer.src:
        node = node.backing
    if node is None or node.fmt is None or node.fmt.metadata_cache is None:
        return None
    return node.fmt.metadata_cache.max_size


def _objects(ctx: BuildContext, layer: _Layer) -> None:
    """Objects a layer's storage node refers to: a reservations helper, TLS creds."""
    src, disk = layer.src, layer.disk
    res = src.reservations
    if res is not None and not res.managed and res.source is not None:
        ctx.cmd.add("-object", qemu_opts("pr-manager-helper", {
            "id": f"pr-helper-{layer.storage}", "path": res.source.path}), disk.node)
    if src.protocol == NetProtocol.NBD and src.tls:
        ctx.cmd.add("-object", qemu_opts("tls-creds-x509", {
            "id": f"obj{layer.storage}_tls0", "dir": TLS_X509_DIR, "endpoint": "client",
            "verify-peer": True}), disk.node)


class _Null:
    """JSON's null: a value QEMU's key=value syntax cannot spell (an empty string is
    deprecated in 7.2 and warns)."""


NULL = _Null()


def _blockdev(ctx: BuildContext, where: Disk | DiskSource, props: dict[str, Any]) -> None:
    """One -blockdev, explained by ``where`` (the disk, or the image's <source>)."""
    props = {key: value for key, value in props.items() if value is not None}
    if any(value is NULL for value in props.values()):
        # QEMU reads -blockdev as JSON too (libvirt always writes it so); json.dumps
        # quotes every string whole, so no XML text becomes a key of its own.
        import json

        ctx.cmd.add("-blockdev", json.dumps(
            {k: None if v is NULL else v for k, v in props.items()},
            separators=(",", ":")), where.node)
        return
    flat: dict[str, Any] = {}
    for key, value in props.items():
        _flatten(key, value, flat)
    ctx.cmd.add("-blockdev", qemu_opts(None, flat), where.node)


def build_disk_source(ctx: BuildContext, disk: Disk, numbers: list[int]) -> str | None:
    """The ``-blockdev`` chain of ``disk`` (bottom image first, as libvirt orders it) and
    its filters; the node the device reads, or None for an empty drive."""
    chain = disk.chain()
    if not chain:
        return None
    layers = [_Layer(disk, kind, fmt, src, numbers[n], n == 0)
              for n, (kind, fmt, src) in enumerate(chain)]
    terminated = disk.chain_terminated
    for n in range(len(layers) - 1, -1, -1):
        layer = layers[n]
        below = layers[n + 1] if n + 1 < len(layers) else None
        _objects(ctx, layer)
        where = layer.src if layer.src.node is not None else disk
        _blockdev(ctx, where, storage_props(layer))
        slice_node = _slice_node(layer)
        if slice_node is not None:
            sl = layer.src.slices.storage if layer.src.slices else None
            assert sl is not None
            _blockdev(ctx, where, {"driver": "raw", "node-name": slice_node,
                                  "offset": sl.offset, "size": sl.size,
                                  "file": layer.storage, "auto-read-only": True,
                                  "discard": "unmap", "cache": _cache_props(disk)})
        _blockdev(ctx, where, format_props(layer, below, terminated))
    top = layers[0].format_node
    if disk.driver_value("copy_on_read"):
        cor = f"libvirt-CoR-{disk.target_dev}"
        _blockdev(ctx, disk, {"driver": "copy-on-read", "node-name": cor, "file": top,
                              "discard": "unmap"})
        top = cor
    return top


# --------------------------------------------------------------------------- throttling
class ThrottleGroups:
    """One ``throttle-group`` object per ``<iotune group_name>`` (or per disk without
    one): ids are qemuwrap's own, so no XML text becomes an object id."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}

    def group_for(self, ctx: BuildContext, disk: Disk) -> str | None:
        tune = disk.iotune
        if tune is None or not tune.limits():
            return None
        key = tune.group_name if tune.group_name is not None else f"\0{disk.target_dev}"
        gid = self.ids.get(key)
        if gid is None:
            gid = f"throttle-group{len(self.ids)}"
            self.ids[key] = gid
            ctx.cmd.add("-object", qemu_opts("throttle-group", {"id": gid,
                                                                **dict(tune.limits())}),
                        tune.node, why="<iotune>: QEMU's throttle group (libvirt sets it "
                                       "over QMP after start)")
        return gid


def build_throttle(ctx: BuildContext, disk: Disk, top: str, groups: ThrottleGroups) -> str:
    """A throttle filter node over ``top`` when the disk has ``<iotune>`` limits."""
    group = groups.group_for(ctx, disk)
    if group is None:
        return top
    node = f"libvirt-throttle-{disk.target_dev}"
    _blockdev(ctx, disk, {"driver": "throttle", "node-name": node, "throttle-group": group,
                          "file": top})
    return node


# --------------------------------------------------------------------------- -device
def scsi_controller(ctx: BuildContext, index: int) -> Controller | None:
    for ctrl in ctx.dom.devices.controllers:
        if ctrl.type == ControllerType.SCSI and ctrl.index == index:
            return ctrl
    return None


#: SCSI adapters whose bus addresses a disk by one id (libvirt: scsi-id=unit).
NARROW_SCSI = frozenset({ControllerModel.LSILOGIC, ControllerModel.NCR53C90,
                         ControllerModel.DC390, ControllerModel.AM53C974})


def scsi_model(ctx: BuildContext, index: int) -> ControllerModel:
    """A SCSI controller's model; libvirt's x86 default (an 'auto' or absent model, or
    no controller yet) is lsilogic."""
    ctrl = scsi_controller(ctx, index)
    model = ctrl.model if ctrl is not None else None
    return ControllerModel.LSILOGIC if model in (None, ControllerModel.AUTO) else model


def _controller_alias(ctx: BuildContext, kind: ControllerType, index: int,
                      default: str) -> str:
    for ctrl in ctx.dom.devices.controllers:
        if ctrl.type == kind and ctrl.index == index and ctrl.alias_name:
            return ctrl.alias_name
    return default


def address_props(ctx: BuildContext, disk: Disk) -> dict[str, Any]:
    """Where the device sits (qemuBuildDeviceAddressProps for its bus)."""
    addr = disk.address
    bus = disk.bus
    if bus == DiskBus.VIRTIO:
        return dict(ctx.pci_props(disk))
    if bus == DiskBus.USB:
        usb = addr if isinstance(addr, USBAddress) else None
        ctrl = _controller_alias(ctx, ControllerType.USB, usb.bus if usb else 0, "usb")
        return {"bus": f"{ctrl}.0", "port": usb.port if usb else None}
    if not isinstance(addr, DriveAddress):
        return {}
    if bus == DiskBus.IDE:
        ide = _controller_alias(ctx, ControllerType.IDE, addr.controller, "ide")
        return {"bus": f"{ide}.{addr.bus}", "unit": addr.unit}
    if bus == DiskBus.SATA:
        if ctx.q35 and addr.controller == 0:
            return {"bus": f"ide.{addr.unit}"}  # ICH9's built-in AHCI names its ports ide.N
        sata = _controller_alias(ctx, ControllerType.SATA, addr.controller,
                                 f"sata{addr.controller}")
        return {"bus": f"{sata}.{addr.unit}"}
    if bus == DiskBus.FDC:
        return {"unit": addr.unit}
    if bus == DiskBus.SCSI:
        scsi = _controller_alias(ctx, ControllerType.SCSI, addr.controller,
                                 f"scsi{addr.controller}")
        if scsi_model(ctx, addr.controller) in NARROW_SCSI:
            return {"bus": f"{scsi}.{addr.bus}", "scsi-id": addr.unit}
        return {"bus": f"{scsi}.0", "channel": addr.bus, "scsi-id": addr.target,
                "lun": addr.unit}
    return {}


def _virtio_props(disk: Disk) -> dict[str, Any]:
    """virtio options (qemuBuildVirtioDevProps) and virtio-blk's own."""
    iothread = disk.driver_value("iothread")
    return {"iommu_platform": disk.driver_value("iommu"), "ats": disk.driver_value("ats"),
            "packed": disk.driver_value("packed"),
            "page-per-vq": disk.driver_value("page_per_vq"),
            "iothread": f"iothread{iothread}" if iothread else None,
            "ioeventfd": disk.driver_value("ioeventfd"),
            "event_idx": disk.driver_value("event_idx"),
            "num-queues": disk.driver_value("queues"),
            "queue-size": disk.driver_value("queue_size")}


def device_props(ctx: BuildContext, disk: Disk, drive: str | None,
                 bootindex: int | None) -> dict[str, Any]:
    """The guest device's properties in libvirt's order (qemuBuildDiskDeviceProps)."""
    props: dict[str, Any] = {}
    vhostuser = disk.type == DiskType.VHOSTUSER
    if disk.bus == DiskBus.VIRTIO:
        props.update(_virtio_props(disk))
        if vhostuser:
            for key in ("iothread", "ioeventfd", "event_idx", "num-queues", "queue-size"):
                props[key] = None  # vhost-user-blk has its own queues in the daemon
    props.update(address_props(ctx, disk))
    device_id = None
    if disk.bus == DiskBus.SCSI and disk.device != DiskDevice.LUN:
        device_id = disk.serial if disk.serial is not None else f"drive-{disk.alias_name}"
    cache = CACHE_FLAGS.get(cache_mode(disk))
    write_cache = None
    if cache is not None and disk.device != DiskDevice.LUN:
        write_cache = cache[0]
    removable = disk.target.removable
    if disk.bus == DiskBus.USB and removable is None:
        removable = False
    elif disk.bus == DiskBus.SCSI and disk.device != DiskDevice.DISK:
        removable = None  # scsi-cd is removable by nature; scsi-block has no such knob
    geo = disk.geometry
    werror = ERROR_POLICIES.get(disk.driver_value("error_policy"))
    rerror = ERROR_POLICIES.get(disk.driver_value("rerror_policy"))
    if rerror is None and disk.driver_value("error_policy") != ErrorPolicy.ENOSPACE:
        rerror = werror
    blockio = disk.blockio
    props.update({
        "device_id": device_id,
        "share-rw": True if disk.shareable else None,
        "drive": drive,
        "chardev": f"chr-vu-{disk.alias_name}" if vhostuser else None,
        "id": disk.alias_name,
        "bootindex": bootindex if disk.bus != DiskBus.FDC else None,
        "logical_block_size": blockio.logical_block_size if blockio else None,
        "physical_block_size": blockio.physical_block_size if blockio else None,
        "wwn": int(disk.wwn, 16) if disk.wwn else None,
        "rotation_rate": disk.target.rotation_rate,
        "vendor": disk.vendor, "product": disk.product,
        "removable": removable,
        "write-cache": write_cache,
        "cyls": geo.cyls if geo else None, "heads": geo.heads if geo else None,
        "secs": geo.secs if geo else None,
        "bios-chs-trans": str(geo.trans) if geo and geo.trans else None,
        # libvirt escapes spaces as '\ ' (its -drive serial syntax), which QEMU keeps:
        # the guest sees the backslashes, so qemuwrap does the same.
        "serial": disk.serial.replace(" ", "\\ ") if disk.serial is not None else None,
        "werror": werror, "rerror": rerror,
    })
    return props


def build_vhostuser_chardev(ctx: BuildContext, disk: Disk) -> None:
    src = disk.src
    assert src is not None
    rec = src.reconnect
    ctx.cmd.add("-chardev", qemu_opts("socket", {
        "id": f"chr-vu-{disk.alias_name}", "path": src.path,
        "reconnect": rec.timeout if rec is not None and rec.enabled else None}), disk.node)


def build_floppy_controller(ctx: BuildContext, boot: dict[int, int]) -> None:
    """Boot order of floppies sits on the controller: ``-global isa-fdc.bootindexA=`` on
    pc (built in), or an explicit ``-device isa-fdc`` on q35, which has none."""
    floppies = [d for d in ctx.dom.devices.disks if d.bus == DiskBus.FDC]
    if not floppies:
        return
    index: dict[str, int | None] = {"bootindexA": None, "bootindexB": None}
    for disk in floppies:
        unit = disk.address.unit if isinstance(disk.address, DriveAddress) else 0
        index["bootindexB" if unit else "bootindexA"] = boot.get(id(disk))
    if ctx.q35:
        ctx.cmd.add("-device", qemu_opts("isa-fdc", index), floppies[0].node,
                    why="q35 has no floppy controller of its own")
        return
    for key, value in index.items():
        if value:
            ctx.cmd.add("-global", qemu_opts(None, {f"isa-fdc.{key}": value}),
                        floppies[0].node)


def build_disks(ctx: BuildContext) -> None:
    """Every disk in document order (libvirt's qemuBuildDisksCommandLine)."""
    disks = ctx.dom.devices.disks
    numbers = NodeNames(disks)
    boot = effective_boot_index(ctx)
    groups = ThrottleGroups()
    build_floppy_controller(ctx, boot)
    for disk in disks:
        build_disk(ctx, disk, numbers.of(disk), boot.get(id(disk)), groups)


def build_transient_drive(ctx: BuildContext, disk: Disk) -> str:
    """A ``<transient>`` disk: QEMU's ``-drive snapshot=on`` puts the guest's writes in
    a temporary overlay (unlinked as soon as QEMU opens it, so nothing is left even if
    QEMU is killed) over the image opened read-only, which other guests may share.
    libvirt makes the overlay over QMP after start; the guest sees the same disk."""
    src = disk.src
    assert src is not None and src.file is not None
    drive = f"drive-{disk.alias_name}"
    zeroes = disk.driver_value("detect_zeroes")
    discard = disk.driver_value("discard")
    if zeroes == DetectZeroes.UNMAP and discard != DiscardMode.UNMAP:
        zeroes = DetectZeroes.ON
    cache = _cache_props(disk) or {}
    io = disk.driver_value("io")
    ctx.cmd.add("-drive", qemu_opts(None, {
        "file.driver": "file", "file.filename": src.file,
        "format": FORMAT_DRIVERS[disk.image_format], "if": "none", "id": drive,
        "snapshot": True,
        **{f"cache.{k}": v for k, v in cache.items()},
        "aio": str(io) if io else None, "discard": str(discard) if discard else None,
        "detect-zeroes": str(zeroes) if zeroes else None}), disk.node)
    return drive


def build_disk(ctx: BuildContext, disk: Disk, numbers: list[int], bootindex: int | None,
               groups: ThrottleGroups | None = None) -> None:
    drive = None
    if disk.type == DiskType.VHOSTUSER:
        build_vhostuser_chardev(ctx, disk)
    elif disk.transient is not None:
        drive = build_transient_drive(ctx, disk)
    else:
        drive = build_disk_source(ctx, disk, numbers)
        if drive is not None:
            drive = build_throttle(ctx, disk, drive, groups or ThrottleGroups())
    ctx.cmd.add("-device", qemu_opts(disk_device(disk) or "",
                                     device_props(ctx, disk, drive, bootindex)), disk.node)
