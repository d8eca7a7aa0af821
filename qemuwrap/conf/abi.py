"""Guest ABI stability: can a guest saved with one definition continue under another?

Mirrors libvirt's virDomainDefCheckABIStability for the elements qemuwrap supports,
with the seed's two genid messages. A restore runs this before it gives the guest
a new generation ID.
"""

from __future__ import annotations

from qemuwrap.conf import guid
from qemuwrap.conf.domain import Domain
from qemuwrap.errors import QemuwrapError


class ABIError(QemuwrapError):
    """The target definition would change hardware the saved guest already knows."""


def _same(what: str, src: object, dst: object) -> None:
    if src != dst:
        raise ABIError(f"Target domain {what} {dst} does not match source {src}")


def check_abi_stability(src: Domain, dst: Domain) -> None:
    """Raise ABIError for the first difference the guest could notice."""
    _same("virt type", src.type, dst.type)
    _same("uuid", src.uuid_str, dst.uuid_str)
    if src.genid_requested != dst.genid_requested:
        raise ABIError("Target domain requested genid does not match source")
    if src.genid_requested and src.genid != dst.genid:
        raise ABIError(f"Target domain genid {guid.format(dst.genid)} does not match "
                       f"source {guid.format(src.genid)}")
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


def _topology(dom: Domain):
    t = dom.topology
    return None if t is None else (t.sockets, t.dies, t.cores, t.threads)


def _disk(disk):
    return (disk.target_dev, disk.bus, disk.device, disk.address)
