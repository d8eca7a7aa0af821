"""``qemuwrap clone``: a new guest from an existing definition, with its own identity.

A copy of a guest must not pass for the original: it gets a new name, uuid and MAC
addresses, and (when the source requests one) a new VM Generation ID, so the guest can
tell it is a copy (the genid spec: the ID changes when a VM is "imported, copied, or
cloned"). Its writable disks become new files beside the source disks: by default a
qcow2 overlay backed by the source disk (fast; the source disk must not change any more,
or the clone sees corrupt data), with ``copy=True`` a full independent copy.
A UEFI guest's variable store (NVRAM) is copied to the file qemuwrap gives the new name
(``companions/nvram.py``), written into the new definition, and an emulated TPM's state
is copied under the new uuid (``companions/swtpm.py``): the copy boots with the same
boot entries and keys, and the same sealed secrets, as a disk copy keeps its data.

Never half a clone: every check comes first, new disk files are created only under
names nobody else holds, anything this call created is removed if a later step fails,
and the definition is written last, atomically. The source guest's lock is held for
the whole clone, so it cannot be started while its disks are being read.
"""

from __future__ import annotations

import os
import shutil
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


class ClonedNvram(Record):
    """The UEFI variable store: the source's file (None: it has none yet, it never
    started) and the clone's, copied from it or made from the template at first start."""

    old_path: str | None
    new_path: str
    copied: bool


class ClonedTpm(Record):
    """An emulated TPM's state directory, copied for the new uuid."""

    old_dir: str
    new_dir: str


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
    nvram: ClonedNvram | None = None
    tpm: ClonedTpm | None = None
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
    if result.nvram is not None:
        n = result.nvram
        lines.append(f"nvram: {n.old_path} -> {n.new_path} (copied)" if n.copied else
                     f"nvram: {n.new_path} (made from the template at its first start: "
                     "the source has none yet)")
    if result.tpm is not None:
        lines.append(f"tpm: {result.tpm.old_dir} -> {result.tpm.new_dir} (copied)")
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
        result.nvram = _plan_nvram(dom, new_name)
        old_tpm = _tpm_state(dom)
        _new_identity(dom, new_name, random, result, _running_genids(state_dir))
        result.tpm = _plan_tpm(dom, old_tpm)
        result.disks = disks
        result.warnings = _shared(dom)
        _make(dom, disks, dst_path, result.nvram, result.tpm)
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


def _plan_nvram(dom: Domain, new_name: str) -> ClonedNvram | None:
    """The clone's own variable store (None: the guest has none): the file qemuwrap
    gives the new name (``nvram.default_path``, as ``fill_domain`` does), copied from the
    source's current file if it has one. Two guests on one store would overwrite each
    other's boot entries; refused, before anything is made, if the new file exists."""
    from qemuwrap.companions import nvram as nvram_store
    from qemuwrap.conf.os import Firmware, LoaderType

    os_el = dom.os
    loader = os_el.loader
    nvram = os_el.nvram
    if loader is not None and loader.stateless:
        return None
    autoselected = os_el.firmware == Firmware.EFI and (loader is None or loader.path is None)
    pflash = (loader is not None and loader.path is not None and bool(loader.readonly)
              and os_el.loader_type == LoaderType.PFLASH)
    if not (autoselected or pflash):
        return None  # BIOS, a ROM loader, or a writable pflash that is its own store
    if nvram is not None and nvram.source is not None:
        return None  # a file, device or export named by <source>: _shared warns of it
    old = nvram.path if nvram is not None and nvram.path else nvram_store.default_path(dom.name)
    new = nvram_store.default_path(new_name)
    if os.path.lexists(new):
        raise QemuwrapError(f"nvram: {new} already exists; not overwriting another guest's "
                            "NVRAM")
    copied = os.path.lexists(old)
    if copied and not os.path.isfile(old):
        raise QemuwrapError(f"nvram: {old} is not a regular file; cannot copy it")
    if copied or autoselected or (nvram is not None and nvram.path):
        # Written into the clone's definition; otherwise (a pflash <loader> never started,
        # no <nvram> path) the clone's first start chooses the same path and template.
        if nvram is None:
            from qemuwrap.conf.os import Nvram

            nvram = os_el.nvram = Nvram()
        nvram.path = new
    return ClonedNvram(old if copied else None, new, copied)


def _tpm_state(dom: Domain) -> str | None:
    """The source's TPM state directory, if it has an emulated TPM that was manufactured
    (a definition without a uuid never ran for good: its TPM has no state to keep)."""
    from qemuwrap.companions import swtpm
    from qemuwrap.conf.devices.tpm import TPMBackendType

    if dom.uuid_generated:
        return None
    for tpm in dom.devices.tpms:
        if tpm.backend.type == TPMBackendType.EMULATOR:
            path = swtpm.state_dir(dom.uuid_str, version=str(tpm.backend.version))
            return path if swtpm.manufactured(path) else None
    return None


def _plan_tpm(dom: Domain, old_dir: str | None) -> ClonedTpm | None:
    """Where the TPM state goes for the clone's (new) uuid; refused if that exists."""
    from qemuwrap.companions import swtpm

    if old_dir is None:
        return None
    new_dir = os.path.join(swtpm.state_root(), dom.uuid_str, os.path.basename(old_dir))
    if os.path.lexists(os.path.dirname(new_dir)):
        raise QemuwrapError(f"swtpm: {os.path.dirname(new_dir)} already exists; not "
                            "overwriting another guest's TPM")
    return ClonedTpm(old_dir, new_dir)


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
    nvram = dom.os.nvram
    if nvram is not None and nvram.source is not None:
        where = nvram.image or (nvram.source.name if nvram.source.name else "its source")
        out.append(f"the NVRAM {where} is still used (shared with the source); give the "
                   "clone its own <nvram>")
    return out


def _make(dom: Domain, disks: list[ClonedDisk], dst_path: str,
          nvram: ClonedNvram | None = None, tpm: ClonedTpm | None = None) -> None:
    """Create the disks, the NVRAM and TPM copies, then the definition; on any failure
    remove what was created."""
    from qemuwrap.companions import nvram as nvram_store
    from qemuwrap.companions import swtpm
    from qemuwrap.conf import schema

    created: list[str] = []
    made_dirs: list[str] = []
    try:
        for d in disks:
            _create_disk(d, created)
        if nvram is not None and nvram.copied and nvram.old_path is not None:
            nvram_store.clone(nvram.old_path, nvram.new_path)
            created.append(nvram.new_path)
        if tpm is not None:
            parent = os.path.dirname(tpm.new_dir)  # ROOT/NEW-UUID: all ours if made now
            if not os.path.lexists(parent):
                made_dirs.append(parent)
            swtpm.clone_state(tpm.old_dir, tpm.new_dir)
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
        for path in made_dirs:
            shutil.rmtree(path, ignore_errors=True)
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
