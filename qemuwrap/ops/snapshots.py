"""Internal snapshots on qcow2 disks: create, list, delete, revert (with a new genid).

A running guest's snapshots are made and deleted by its supervisor (HMP savevm/delvm);
with no supervisor, over QEMU's second monitor; a guest that does not run has its
snapshots deleted with ``qemu-img`` (whose exit status is checked: "deleted" means
deleted). Revert stops the running QEMU and starts a new one from the snapshot, since
QEMU cannot change a running guest's generation ID.
"""

from __future__ import annotations

import json
import subprocess

from qemuwrap.conf.domain import Domain, load
from qemuwrap.errors import QemuwrapError, printable
from qemuwrap.launcher import Options, start
from qemuwrap.ops import guests
from qemuwrap.runtime import control
from qemuwrap.runtime.guestdir import GuestDir

QEMU_IMG_TIMEOUT = 600.0


def _definition(name: str, opts: Options) -> tuple[str, Domain]:
    """The definition file the guest was last started from (kept in its state
    directory, which only we can write)."""
    gdir = guests.guest(name, opts.state_dir)
    raw = gdir.read("definition")
    if raw is None:
        raise QemuwrapError(f"guest '{printable(name)}' has never been started from a "
                            "definition file here")
    path = raw.decode("utf-8", "surrogateescape")
    _data, dom = load(path)
    return path, dom


def _refuse_pflash(dom: Domain) -> None:
    """QEMU snapshots every writable block node with the disks, and a raw image cannot
    hold one. A UEFI guest's variable store is such a node (``libvirt-pflash1``, raw, as
    libvirt 9.0 builds it; a writable code pflash too): one line here, before anything
    runs, instead of QEMU's "Device 'libvirt-pflash1-format' is writable but does not
    support snapshots". libvirt refuses these as well (it takes internal snapshots of a
    UEFI guest only with its NVRAM in qcow2, which qemuwrap does not build)."""
    from qemuwrap.conf.os import Firmware, LoaderType

    os_el = dom.os
    loader = os_el.loader
    if loader is not None and loader.stateless:
        return
    nvram = os_el.nvram
    if loader is not None and loader.path is not None and \
            os_el.loader_type == LoaderType.PFLASH:
        what = (f"its firmware {loader.path} is a writable pflash image"
                if loader.readonly is not True else None)
    elif os_el.firmware == Firmware.EFI:
        what = None
    else:
        return  # BIOS or a ROM loader: no flash to snapshot
    if what is None:
        from qemuwrap.companions import nvram as nvram_store

        path = (nvram.image if nvram is not None else None) or \
            nvram_store.default_path(dom.name)
        what = f"its UEFI variable store {path} is a raw pflash image"
    raise QemuwrapError(f"guest '{printable(dom.name)}': internal snapshots of a UEFI "
                        f"guest are not supported: {what}, which cannot hold a snapshot "
                        "(libvirt takes them only with the NVRAM in qcow2); use 'save' "
                        "and 'restore' instead")


def _qcow2_disks(dom: Domain) -> list[str]:
    writable = [d for d in dom.devices.disks if d.device == "disk" and not d.readonly
                and d.source]
    if not writable or any(d.driver_type != "qcow2" for d in writable):
        raise QemuwrapError(f"guest '{printable(dom.name)}': snapshots need every writable "
                            "disk to be qcow2 (and at least one)")
    return [d.source for d in writable if d.source]


def qemu_img(*args: str) -> subprocess.CompletedProcess:
    """Run qemu-img; one-line errors for a missing binary, a failure or a hang."""
    try:
        res = subprocess.run(["qemu-img", *args], capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, timeout=QEMU_IMG_TIMEOUT)
    except FileNotFoundError:
        raise QemuwrapError("qemu-img is not installed (Debian package qemu-utils)") \
            from None
    except subprocess.TimeoutExpired:
        raise QemuwrapError(f"qemu-img {args[0]} did not finish within "
                            f"{QEMU_IMG_TIMEOUT:g} s") from None
    if res.returncode:
        lines = [line.strip().removeprefix("qemu-img: ")
                 for line in (res.stderr or res.stdout).splitlines() if line.strip()]
        raise QemuwrapError(f"qemu-img {args[0]} failed: " +
                            (" ".join(lines) or f"exit status {res.returncode}"))
    return res


def snapshot_list(name: str, opts: Options) -> list[dict]:
    _path, dom = _definition(name, opts)
    snaps: dict[str, dict] = {}
    for disk in _qcow2_disks(dom):
        res = qemu_img("info", "-U", "--output=json", disk)
        try:
            info = json.loads(res.stdout)
        except ValueError:
            raise QemuwrapError(f"qemu-img info gave no JSON for {printable(disk)}") from None
        for snap in info.get("snapshots", []):
            snaps.setdefault(snap["name"], {"name": snap["name"],
                                            "vm_state_size": snap.get("vm-state-size", 0),
                                            "date": snap.get("date-sec", 0)})
    return sorted(snaps.values(), key=lambda s: s["date"])


def _running_request(name: str, opts: Options, request: str, hmp: str, snap: str,
                     quiesce: bool = False) -> dict:
    """The request to the supervisor (its reply), or with none the HMP command over
    QEMU's second monitor (``quiesce``: between guest agent freeze and thaw)."""
    gdir, record = guests.running(name, opts.state_dir)
    if guests.supervisor_alive(gdir, record):
        msg = {"request": request, "name": snap, **({"quiesce": True} if quiesce else {})}
        return guests.ask(gdir, msg, QEMU_IMG_TIMEOUT)
    from qemuwrap.runtime import qmp

    def run() -> None:
        out = qmp.command(gdir.file("control.sock"), "human-monitor-command",
                          {"command-line": f"{hmp} {snap}"}, timeout=QEMU_IMG_TIMEOUT)
        if out and out.strip():
            raise QemuwrapError(out.strip().splitlines()[-1])

    if not quiesce:
        run()
        return {}
    from qemuwrap.ops import agent

    return {"quiesced": agent.quiesced(gdir, run)}


def _check_name(snap: str) -> None:
    if not snap or not snap.isprintable() or " " in snap:
        raise QemuwrapError(f"snapshot name {printable(snap)!r} must be printable text "
                            "without spaces")


def snapshot_create(name: str, snap: str, opts: Options, *, quiesce: bool = False) -> dict:
    """An internal snapshot of a running guest: disks and memory, in its qcow2 disks;
    ``quiesce``: its file systems frozen by its guest agent meanwhile (``"quiesced"``:
    how many)."""
    _check_name(snap)
    _path, dom = _definition(name, opts)
    _refuse_pflash(dom)
    _qcow2_disks(dom)
    guests.running(name, opts.state_dir)
    if any(s["name"] == snap for s in snapshot_list(name, opts)):
        raise QemuwrapError(f"guest '{printable(name)}' already has a snapshot "
                            f"'{printable(snap)}'")
    reply = _running_request(name, opts, "snapshot-create", "savevm", snap, quiesce)
    out = {"name": name, "snapshot": snap, "genid": _genid(name, opts)}
    if quiesce:
        out["quiesced"] = reply.get("quiesced")
    return out


def _genid(name: str, opts: Options) -> str | None:
    try:
        record = GuestDir(name, opts.state_dir).read_record()
    except QemuwrapError:
        return None
    return record.genid if record else None


def snapshot_delete(name: str, snap: str, opts: Options) -> dict:
    _check_name(snap)
    _path, dom = _definition(name, opts)
    disks = _qcow2_disks(dom)
    if not any(s["name"] == snap for s in snapshot_list(name, opts)):
        raise QemuwrapError(f"guest '{printable(name)}' has no snapshot '{printable(snap)}'")
    try:
        guests.running(name, opts.state_dir)
        runs = True
    except guests.NotRunningError:
        runs = False
    if not runs:
        for disk in disks:
            if any(s["name"] == snap for s in _disk_snapshots(disk)):
                qemu_img("snapshot", "-d", snap, disk)
        left = [d for d in disks if any(s["name"] == snap for s in _disk_snapshots(d))]
        if left:
            raise QemuwrapError(f"snapshot '{printable(snap)}' is still in "
                                f"{printable(left[0])} after qemu-img deleted it")
    else:
        _running_request(name, opts, "snapshot-delete", "delvm", snap)
    return {"name": name, "snapshot": snap, "deleted": True}


def _disk_snapshots(disk: str) -> list[dict]:
    res = qemu_img("info", "-U", "--output=json", disk)
    try:
        return json.loads(res.stdout).get("snapshots", [])
    except ValueError:
        return []


def snapshot_revert(name: str, snap: str, opts: Options) -> dict:
    """Run the guest from snapshot ``snap`` with a new genid.

    QEMU cannot change a running guest's generation ID (libvirt refuses with "domain
    genid update requires restart"), so a running guest's QEMU is stopped and a new
    one starts from the snapshot (``-loadvm``) with the new ID.
    """
    _check_name(snap)
    path, dom = _definition(name, opts)
    _refuse_pflash(dom)  # -loadvm checks the same nodes
    _qcow2_disks(dom)
    snaps = [s for s in snapshot_list(name, opts) if s["name"] == snap]
    if not snaps:
        raise QemuwrapError(f"guest '{printable(name)}' has no snapshot '{printable(snap)}'")
    if not snaps[0]["vm_state_size"]:
        raise QemuwrapError(f"snapshot '{printable(snap)}' has no memory state to run from")
    try:
        guests.destroy(name, opts.state_dir)
    except guests.NotRunningError:
        pass  # not running: start it from the snapshot
    return start(path, opts, loadvm=snap)


__all__ = ["control", "snapshot_create", "snapshot_delete", "snapshot_list",
           "snapshot_revert"]
