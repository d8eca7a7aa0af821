"""Guest ABI stability: can a guest saved with one definition continue under another?

Mirrors libvirt's virDomainDefCheckABIStability for the elements qemuwrap supports,
with the seed's two genid messages. A restore runs this before it gives the guest
a new generation ID.

Beyond libvirt, it also refuses a target that would run other programs or data than
the saved guest did: the emulator and every path that selects what runs
(:data:`RUNS_FROM`: kernel, firmware, disks and their backing chains, shared
directories, and the arguments and environment ``<qemu:commandline>`` passes to QEMU
verbatim), so a definition swapped under a save file cannot point the restored guest at
another binary, kernel or disk, or slip QEMU an option.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from qemuwrap.conf import guid
from qemuwrap.conf.domain import Domain
from qemuwrap.errors import QemuwrapError


class ABIError(QemuwrapError):
    """The target definition would change hardware the saved guest already knows."""


def _same(what: str, src: object, dst: object) -> None:
    if src != dst:
        raise ABIError(f"Target domain {what} {dst} does not match source {src}")


def _source(kind: object, src) -> tuple | None:
    """What a disk's or backing image's ``<source>`` names: a local path (normalised), or
    the server, name, pool, volume or socket of storage that is not a local file."""
    if src is None:
        return None
    return (str(kind), _path(src.path_for(kind)), src.protocol, src.name, src.pool,
            src.volume, _path(src.path),
            [(h.name, h.port, h.transport, _path(h.socket)) for h in src.hosts],
            src.nvme_address)


def _chain(disk) -> list:
    """A disk's ``<backingStore>`` chain, top down: each image's format and source; an
    empty ``<backingStore/>`` (no backing, whatever the image's header says) is None."""
    out: list = []
    store = disk.backing
    while store is not None:
        out.append(None if store.is_terminator else
                   (str(store.image_format), _source(store.type, store.src)))
        store = store.backing
    return out


def _disk_sources(dom: Domain) -> list:
    return [(d.target_dev, _source(d.type, d.src)) for d in dom.devices.disks]


def _disk_chains(dom: Domain) -> list:
    return [(d.target_dev, _chain(d)) for d in dom.devices.disks]


def _filesystems(dom: Domain) -> list:
    return [(f.target.dir, str(f.type), _path(f.source.dir), _path(f.source.file),
             _path(f.source.socket), f.source.name,
             _path(f.binary.path) if f.binary is not None else None)
            for f in dom.devices.filesystems]


def _qemu_args(dom: Domain) -> list:
    cmdline = dom.qemu_commandline
    return [a.value for a in cmdline.args] if cmdline is not None else []


def _qemu_env(dom: Domain) -> list:
    cmdline = dom.qemu_commandline
    return [(e.name, e.value) for e in cmdline.envs] if cmdline is not None else []


#: What selects the programs and data a guest runs, as ``(what, how to read it)``: an
#: attribute path (read with getattr, a missing attribute is None, so a row for a field
#: the model does not have yet is checked once it exists), or a function of the
#: definition. Add a row for every new field that names a file QEMU or a companion runs
#: or reads, or that passes QEMU arguments of its own.
RUNS_FROM: tuple[tuple[str, str | Callable[[Domain], object]], ...] = (
    ("emulator", "devices.emulator"),
    ("kernel", "os.kernel"),
    ("initrd", "os.initrd"),
    ("firmware", "os.firmware"),
    ("loader", "os.loader"),
    ("NVRAM", "os.nvram"),
    ("disk sources", _disk_sources),
    ("disk backing chains", _disk_chains),
    ("filesystem sources", _filesystems),
    ("qemu:commandline arguments", _qemu_args),
    ("qemu:commandline environment", _qemu_env),
)


def _attr(obj: object, dotted: str) -> object:
    for name in dotted.split("."):
        obj = getattr(obj, name, None)
    return obj


def _path(value: object) -> object:
    """Paths compared by what they name (``/usr//bin/../bin/x`` is ``/usr/bin/x``)."""
    return os.path.normpath(value) if isinstance(value, str) and value else value


def check_runs_from(src: Domain, dst: Domain) -> None:
    """The target runs the same emulator, firmware, kernel, disks (and their backing
    chains), shared directories and verbatim QEMU arguments as the source."""
    for what, how in RUNS_FROM:
        if callable(how):
            _same(what, how(src), how(dst))
        else:
            _same(what, _path(_attr(src, how)), _path(_attr(dst, how)))


def check_abi_stability(src: Domain, dst: Domain) -> None:
    """Raise ABIError for the first difference the guest could notice, or that would
    make it run something else."""
    _same("virt type", src.type, dst.type)
    _same("uuid", src.uuid_str, dst.uuid_str)
    if src.genid_requested != dst.genid_requested:
        raise ABIError("Target domain requested genid does not match source")
    if src.genid_requested and src.genid != dst.genid:
        raise ABIError(f"Target domain genid {_guid(dst.genid)} does not match "
                       f"source {_guid(src.genid)}")
    # Not ABI, but a restore must not rename a guest through the back door (libvirt).
    _same("name", src.name, dst.name)
    _same("memory", src.memory_kib, dst.memory_kib)
    _same("vCPU count", src.vcpus, dst.vcpus)
    _same("CPU topology", _topology(src), _topology(dst))
    _same("architecture", src.os.arch, dst.os.arch)
    _same("machine type", src.os.machine, dst.os.machine)
    for feature in ("acpi", "apic", "pae"):
        _same(f"feature {feature}", getattr(src, feature), getattr(dst, feature))
    s, d = src.devices, dst.devices
    _same("disks", [_disk(x) for x in s.disks], [_disk(x) for x in d.disks])
    _same("controllers", [(c.type, c.index, c.model, c.address) for c in s.controllers],
          [(c.type, c.index, c.model, c.address) for c in d.controllers])
    _same("interfaces", [(n.model, n.mac, n.address) for n in s.interfaces],
          [(n.model, n.mac, n.address) for n in d.interfaces])
    _same("serial ports", [x.port for x in s.serials], [x.port for x in d.serials])
    _same("consoles", [(c.target_type, c.port) for c in s.consoles],
          [(c.target_type, c.port) for c in d.consoles])
    _same("input devices", [(i.type, i.bus) for i in s.inputs],
          [(i.type, i.bus) for i in d.inputs])
    _same("graphics count", len(s.graphics), len(d.graphics))
    _same("memballoon model", s.memballoon.model, d.memballoon.model)
    check_runs_from(src, dst)


def _guid(value: bytes | None) -> str:
    return guid.format(value) if value is not None else "none"


def _topology(dom: Domain):
    t = dom.topology
    return None if t is None else (t.sockets, t.dies, t.cores, t.threads)


def _disk(disk):
    return (disk.target_dev, disk.bus, disk.device, disk.address)
