"""``qemuwrap clone``: a new guest from an existing definition, with its own identity.

A copy of a guest must not pass for the original: it gets a new name, uuid and MAC
addresses, and (when the source requests one) a new VM Generation ID, so the guest can
tell it is a copy (the genid spec: the ID changes when a VM is "imported, copied, or
cloned"). Its writable disks become new files beside the source disks: by default a
qcow2 overlay backed by the source disk (fast; the source disk must not change any more,
or the clone sees corrupt data), with ``copy=True`` a full independent copy.

Never half a clone: every check comes first, new disk files are created only under
names nobody else holds, anything this call created is removed if a later step fails,
and the definition is written last, atomically. The source guest's lock is held for
the whole clone, so it cannot be started while its disks are being read.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Collection
from typing import TypeVar

from qemuwrap.conf import guid
from qemuwrap.conf.domain import Domain, load
from qemuwrap.definition import atomic_write
from qemuwrap.errors import QemuwrapError
from qemuwrap.record import Factory, Record
from qemuwrap.runtime.guestdir import GuestBusyError, GuestDir, all_guests
from qemuwrap.statedir import check_name

T = TypeVar("T")

#: How often a random value that collides with one in use is drawn again.
_DRAWS = 16


class ClonedDisk(Record):
    """One writable disk: where it was, where the clone's is, and how it was made."""

    target: str
    old_path: str
    new_path: str
    format: str  # the new file's format: qcow2 (overlay) or the source's (copy)
    overlay: bool
    source_format: str = "raw"


class CloneResult(Record):
    """What changed between the source and the clone (None: it had none / has none)."""

    path: str
    old_name: str
    new_name: str
    old_uuid: str | None
    new_uuid: str
    old_genid: str | None = None
    new_genid: str | None = None
    macs: list[tuple[str, str]] = Factory(list)
    disks: list[ClonedDisk] = Factory(list)
    #: Things the clone still shares with its source (files, sockets, a fixed VNC port).
    warnings: list[str] = Factory(list)

    @property
    def new_disks(self) -> list[str]:
        return [d.new_path for d in self.disks]


def describe(result: CloneResult) -> list[str]:
    """One line per change, for stdout: each operation says which genid the guest had
    and which it has now."""
    lines = [f"name: {result.old_name} -> {result.new_name}",
             f"uuid: {result.old_uuid or 'none'} -> {result.new_uuid}",
             f"genid: {result.old_genid or 'none'} -> {result.new_genid or 'none'}"]
    lines += [f"mac: {old} -> {new}" for old, new in result.macs]
    for d in result.disks:
        how = (f"qcow2 overlay backed by {d.old_path}" if d.overlay
               else f"independent {d.format} copy")
        lines.append(f"disk {d.target}: {d.old_path} -> {d.new_path} ({how})")
    return lines


def clone(src_path: str, dst_path: str, new_name: str, *, copy: bool = False,
          state_dir: str | None = None, random=guid.system_random) -> CloneResult:
    """Write ``dst_path``: the guest of ``src_path`` as ``new_name``, with new identities
    and new disk files; refuse (QemuwrapError) rather than overwrite or clone a running
    guest."""
    check_name(new_name)
    if new_name != new_name.strip():
        raise QemuwrapError(f"guest name {new_name!r} starts or ends with white space")
    _data, dom = load(src_path)
    if new_name == dom.name:
        raise QemuwrapError(f"the clone needs a name other than the source's ('{dom.name}')")
    if os.path.lexists(dst_path):
        raise QemuwrapError(f"{dst_path} already exists; not overwriting it")
    if not os.path.isdir(os.path.dirname(os.path.abspath(dst_path))):
        raise QemuwrapError(f"{dst_path}: its directory does not exist")
    result = CloneResult(
        path=dst_path, old_name=dom.name, new_name=new_name,
        old_uuid=None if dom.uuid_generated else dom.uuid_str, new_uuid="",
        # A <genid/> never filled in: the guest has not yet booted with any genid.
        old_genid=None if dom.genid_generated else dom.genid_str)
    with _SourceLock(dom.name, state_dir):
        _refuse_running(GuestDir(new_name, state_dir), f"a guest named '{new_name}' is "
                        "running; the clone could not start under that name")
        disks = _plan_disks(dom, new_name, copy)
        _new_identity(dom, new_name, random, result, _running_genids(state_dir))
        result.disks = disks
        result.warnings = _shared(dom)
        _make(dom, disks, dst_path)
    return result


class _SourceLock:
    """Hold the source guest's supervisor lock: no ``qemuwrap start`` of it meanwhile.

    A guest whose QEMU runs (supervised or not) is refused: an overlay on, or a copy
    of, a disk a running guest still writes is corrupt. A state directory the lock had
    to create is removed again; where the lock cannot be taken at all (no permission),
    the check of the running QEMU still applies.
    """

    def __init__(self, name: str, state_dir: str | None):
        self.gdir = GuestDir(name, state_dir)
        self.created: list[str] = []

    def __enter__(self) -> _SourceLock:
        root = os.path.dirname(self.gdir.path)
        self.created = [p for p in (root, self.gdir.path) if not os.path.isdir(p)]
        try:
            self.gdir.lock()
        except GuestBusyError:
            self.created = []
            raise QemuwrapError(f"guest '{self.gdir.name}' is running or starting; shut it "
                                "down before cloning it") from None
        except OSError:
            self.created = []  # cannot lock here: the running check below still holds
        try:
            _refuse_running(self.gdir, f"guest '{self.gdir.name}' is running; shut it down "
                            "before cloning it")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.created:
            try:
                os.unlink(self.gdir.file("lock"))
            except OSError:
                pass
            for path in reversed(self.created):
                try:
                    os.rmdir(path)
                except OSError:
                    break
        self.gdir.unlock()


def _refuse_running(gdir: GuestDir, message: str) -> None:
    try:
        record = gdir.running() if gdir.exists() else None
    except FileNotFoundError:
        record = None
    if record is not None and record.qemu is not None:
        raise QemuwrapError(f"{message} (QEMU pid {record.qemu.pid})")


def _running_genids(state_dir: str | None) -> set[bytes]:
    """The genids of the guests running under this state root: a clone's new one must
    not be any of them."""
    out = set()
    for gdir in all_guests(state_dir):
        try:
            record = gdir.running()
        except QemuwrapError:
            continue
        if record is not None and record.genid:
            parsed = guid.parse(record.genid)
            if parsed is not None:
                out.add(parsed)
    return out


def _plan_disks(dom: Domain, new_name: str, copy: bool) -> list[ClonedDisk]:
    """Every writable disk's new file; refuses what cannot be cloned before touching
    anything. Read-only disks and cdroms stay shared."""
    plan = []
    for disk in dom.devices.disks:
        if disk.device != "disk" or disk.readonly or not disk.source:
            continue
        if disk.type == "block":
            raise QemuwrapError(f"disk '{disk.target_dev}' is a block device "
                                f"({disk.source}): clone makes new disk files only beside "
                                "file disks; copy the device yourself and edit the XML")
        src_format = disk.driver_type or "raw"
        new_format = src_format if copy else "qcow2"
        new_path = os.path.join(os.path.dirname(disk.source),
                                f"{new_name}-{disk.target_dev}.{new_format}")
        if not os.path.isfile(disk.source):
            raise QemuwrapError(f"disk '{disk.target_dev}': {disk.source} is not a file")
        if os.path.lexists(new_path):
            raise QemuwrapError(f"disk '{disk.target_dev}': {new_path} already exists; "
                                "not overwriting it")
        plan.append(ClonedDisk(disk.target_dev, os.path.abspath(disk.source), new_path,
                               new_format, not copy, src_format))
    return plan


def _fresh(draw: Callable[[], T], avoid: Collection[object]) -> T:
    """A value from ``draw()`` not in ``avoid``: a clone must not share an identity."""
    for _ in range(_DRAWS):
        value = draw()
        if value not in avoid:
            return value
    raise QemuwrapError("the random source keeps giving values already in use")


def _new_identity(dom: Domain, new_name: str, random, result: CloneResult,
                  running_genids: set[bytes] | None = None) -> None:
    """Name, uuid, genid (if requested: keep requested-ness; never one a running guest
    has) and MACs of the clone."""
    dom.name = new_name
    dom.id = None
    dom.uuid = _fresh(lambda: guid.generate_v4(random), {dom.uuid})
    result.new_uuid = dom.uuid_str
    if dom.genid_requested:
        dom.genid = _fresh(lambda: guid.generate_v4(random),
                           {dom.genid, *(running_genids or ())})
        dom.genid_generated = False
        result.new_genid = dom.genid_str
    nics = dom.devices.interfaces
    if nics:
        old = [nic.mac for nic in nics]

        def draw() -> tuple[str, ...] | None:
            raw = random(3 * len(nics))
            macs = tuple("52:54:00:" + ":".join(f"{b:02x}" for b in raw[i:i + 3])
                         for i in range(0, len(raw), 3))
            unique = len(set(macs)) == len(macs) and not set(macs) & set(old)
            return macs if unique else None

        new = _fresh(draw, {None})
        assert new is not None  # _fresh never returns what it avoids
        for nic, mac in zip(nics, new, strict=True):
            nic.mac = mac
        result.macs = list(zip(old, new, strict=True))


def _shared(dom: Domain) -> list[str]:
    """What the clone still shares with its source: both cannot use it at once."""
    out = []
    for kind, devs in (("serial", dom.devices.serials), ("console", dom.devices.consoles)):
        for dev in devs:
            if kind == "console" and dev.target_type == "serial":
                continue  # serial port 0's other name (libvirt's console compatibility)
            if dev.path:
                out.append(f"{kind} port {dev.port} still uses {dev.path} "
                           "(shared with the source)")
    for g in dom.devices.graphics:
        for port in g.fixed_ports:
            out.append(f"{str(g.type).upper()} port {port} is fixed (shared with the "
                       "source)")
    return out


def _make(dom: Domain, disks: list[ClonedDisk], dst_path: str) -> None:
    """Create the disks, then the definition; on any failure remove what was created."""
    from qemuwrap.conf import schema

    created: list[str] = []
    try:
        for d in disks:
            _create_disk(d, created)
        by_target = {d.target: d for d in disks}
        for disk in dom.devices.disks:
            new = by_target.get(disk.target_dev)
            if new is not None:
                disk.source, disk.driver_type = new.new_path, new.format
        data = dom.format(inactive=True).encode()
        schema.validate_bytes(data, dst_path)  # never write what 'run' would refuse
        if os.path.lexists(dst_path):
            raise QemuwrapError(f"{dst_path} appeared during the clone; not overwriting it")
        try:
            atomic_write(dst_path, data, mode=0o644)
        except OSError as exc:
            raise QemuwrapError(f"cannot write {dst_path}: {exc.strerror}") from None
    except BaseException:
        for path in reversed(created):
            try:
                os.unlink(path)
            except OSError:
                pass
        raise


def _create_disk(d: ClonedDisk, created: list[str]) -> None:
    """Reserve the new file's name (O_EXCL: never someone else's file), then let
    qemu-img fill it. Its permissions are the source disk's (plus the owner's read and
    write, which qemu-img needs), less the umask: a copy is no more exposed than its
    source."""
    try:
        mode = (os.stat(d.old_path).st_mode & 0o666) | 0o600  # qemu-img must write it
        fd = os.open(d.new_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:
        raise QemuwrapError(f"disk '{d.target}': {d.new_path} already exists; "
                            "not overwriting it") from None
    except OSError as exc:
        raise QemuwrapError(f"disk '{d.target}': cannot create {d.new_path}: "
                            f"{exc.strerror}") from None
    os.close(fd)
    created.append(d.new_path)
    if d.overlay:
        argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", d.source_format,
                "-b", d.old_path, d.new_path]
    else:
        argv = ["qemu-img", "convert", "-q", "-f", d.source_format, "-O", d.format,
                d.old_path, d.new_path]
    try:
        res = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise QemuwrapError("qemu-img is not installed (Debian package qemu-utils)") from None
    if res.returncode:
        lines = [line.strip().removeprefix("qemu-img: ")
                 for line in (res.stderr or res.stdout).splitlines() if line.strip()]
        raise QemuwrapError(f"disk '{d.target}': qemu-img {argv[1]} failed: "
                            + (" ".join(lines) or f"exit status {res.returncode}"))
