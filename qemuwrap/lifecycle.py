"""Re-executing a guest's past: save/restore and internal snapshots (qcow2).

Each of these makes a guest run again from a state it already ran from, so the guest
gets a new VM Generation ID (the seed's purpose). QEMU 7.2 cannot change the ID of
a running vmgenid device, so a new ID always means a new QEMU process, started with
the new ``guid=``; QEMU writes it into guest memory and notifies the guest as the
saved state loads. A plain start, reboot or on_crash restart keeps the ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time

from qemu.qmp import EventListener

from qemuwrap import qmp, savefile
from qemuwrap.conf.domain import Domain, load, parse_domain
from qemuwrap.conf.xmlreader import read_file
from qemuwrap.definition import atomic_write
from qemuwrap.errors import QemuwrapError
from qemuwrap.launcher import Options, _running, start, stop_guest
from qemuwrap.state import GuestDir

SAVED_MARKER = "saved"  # in the state dir: tells the supervisor QEMU ended by a save


# -- save / restore ---------------------------------------------------------------------
def save(name: str, path: str, opts: Options) -> str:
    """Pause the guest, write its state and definition to ``path``, stop its QEMU.

    The state goes to a temporary file beside ``path``, renamed into place only when
    QEMU reports the migration completed: an existing save file is never half-replaced.
    """
    gdir, record, proc = _running(name, opts)
    _data, root = read_file(gdir.file("domain.xml"))
    live = parse_domain(root)
    path = os.path.abspath(path)
    head, size_at = savefile.header({
        "name": name, "xml": live.format(inactive=True), "source": record.get("source"),
        "genid": live.genid_str, "saved": time.time()})
    tmp = f"{path}.{os.getpid()}.tmp"
    # Not O_APPEND (Linux's pwrite would append the size field too): QEMU shares this
    # file offset and goes on writing right after the header.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, head)
        asyncio.run(_migrate_to(record["control_socket"], fd))
        savefile.set_stream_size(fd, size_at, len(head))
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.rename(tmp, path)
        dfd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(dfd)
        os.close(dfd)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    atomic_write(gdir.file(SAVED_MARKER), path.encode())  # the supervisor: "saved"
    stop_guest(gdir, record, proc)
    with contextlib.suppress(FileNotFoundError):  # no supervisor read it
        os.unlink(gdir.file(SAVED_MARKER))
    genid = live.genid_str or "none"
    return (f"guest '{name}' saved to {path}\n"
            f"genid: {genid} -> {genid} (unchanged; a restore gives the guest a new one)")


async def _migrate_to(control: str, fd: int) -> None:
    """Migrate into the open file ``fd`` (handed to QEMU over QMP): QEMU writes the file
    itself, so "completed" means every byte is in it (through a pipe to a helper
    process it would only mean every byte left QEMU)."""
    client = await qmp.connect(control, name="qemuwrap-save", timeout=5)
    listener = EventListener(("MIGRATION",))
    client.register_listener(listener)
    try:
        status = (await client.execute("query-status"))["status"]
        if status not in ("running", "paused"):
            raise QemuwrapError(f"the guest is {status}; only a running or paused guest "
                                "can be saved")
        await client.execute("stop")
        await client.execute("migrate-set-capabilities", {
            "capabilities": [{"capability": "events", "state": True}]})
        client.send_fd_scm(fd)
        await client.execute("getfd", {"fdname": "qemuwrap-save"})
        await client.execute("migrate", {"uri": "fd:qemuwrap-save"})
        async for event in listener:
            state = event["data"]["status"]
            if state == "completed":
                return
            if state in ("failed", "cancelled"):
                info = await client.execute("query-migrate")
                if status == "running":
                    await client.execute("cont")  # nothing saved: the guest goes on
                raise QemuwrapError("saving failed: " + info.get("error-desc", state))
    finally:
        client.remove_listener(listener)
        await qmp.disconnect(client)


def restore(path: str, opts: Options, xml: str | None = None) -> dict:
    """Start a saved guest again, with a new genid; returns the new guest's record.

    The definition is ``xml`` or the file the guest was started from; it must pass the
    ABI-stability check against the definition stored in the save file (done by the
    supervisor before QEMU starts). The save file is only read.
    """
    meta, _offset = savefile.read(path)
    definition = xml or meta.get("source")
    if not definition or not os.path.exists(definition):
        raise QemuwrapError(f"the definition {definition or '(none recorded)'} is gone; "
                            "pass --xml FILE")
    return start(definition, opts, restore_from=path)


# -- internal snapshots -----------------------------------------------------------------
def _definition(name: str, opts: Options) -> tuple[str, bytes, Domain]:
    gdir = GuestDir(name, opts.state_dir)
    try:
        with open(gdir.file("definition")) as f:
            path = f.read()
    except FileNotFoundError:
        raise QemuwrapError(f"guest '{name}' has never been started here") from None
    data, dom = load(path)
    return path, data, dom


def _qcow2_disks(dom: Domain) -> list[str]:
    writable = [d for d in dom.devices.disks if d.device == "disk" and not d.readonly
                and d.source]
    if not writable or any(d.driver_type != "qcow2" for d in writable):
        raise QemuwrapError(f"guest '{dom.name}': snapshots need every writable disk to be "
                            "qcow2 (and at least one)")
    return [d.source for d in writable]


def _hmp(control: str, line: str) -> None:
    out = qmp.command(control, "human-monitor-command", {"command-line": line}, timeout=120)
    if out and out.strip():
        raise QemuwrapError(out.strip().splitlines()[-1])


def snapshot_list(name: str, opts: Options) -> list[dict]:
    _path, _data, dom = _definition(name, opts)
    snaps: dict[str, dict] = {}
    for disk in _qcow2_disks(dom):
        res = subprocess.run(["qemu-img", "info", "-U", "--output=json", disk],
                             capture_output=True, text=True)
        if res.returncode:
            raise QemuwrapError(f"cannot read {disk}: {res.stderr.strip()}")
        for snap in json.loads(res.stdout).get("snapshots", []):
            snaps.setdefault(snap["name"], {"name": snap["name"],
                                            "vm_state_size": snap.get("vm-state-size", 0),
                                            "date": snap.get("date-sec", 0)})
    return sorted(snaps.values(), key=lambda s: s["date"])


def snapshot_create(name: str, snap: str, opts: Options) -> str:
    """An internal snapshot of a running guest: disks and memory, in its qcow2 disks."""
    _path, _data, dom = _definition(name, opts)
    _qcow2_disks(dom)
    _gdir, record, _proc = _running(name, opts)
    if any(s["name"] == snap for s in snapshot_list(name, opts)):
        raise QemuwrapError(f"guest '{name}' already has a snapshot '{snap}'")
    _hmp(record["control_socket"], f"savevm {snap}")
    genid = record.get("genid") or "none"
    return (f"snapshot '{snap}' of guest '{name}' created\n"
            f"genid: {genid} -> {genid} (unchanged; a revert gives the guest a new one)")


def snapshot_delete(name: str, snap: str, opts: Options) -> str:
    _path, _data, dom = _definition(name, opts)
    disks = _qcow2_disks(dom)
    if not any(s["name"] == snap for s in snapshot_list(name, opts)):
        raise QemuwrapError(f"guest '{name}' has no snapshot '{snap}'")
    try:
        _gdir, record, _proc = _running(name, opts)
    except QemuwrapError:
        for disk in disks:
            subprocess.run(["qemu-img", "snapshot", "-d", snap, disk], capture_output=True)
    else:
        _hmp(record["control_socket"], f"delvm {snap}")
    return f"snapshot '{snap}' of guest '{name}' deleted"


def snapshot_revert(name: str, snap: str, opts: Options) -> dict:
    """Run the guest from snapshot ``snap`` with a new genid.

    QEMU cannot change a running guest's generation ID (libvirt refuses with "domain
    genid update requires restart"), so a running guest's QEMU is stopped and a new
    one starts from the snapshot (``-loadvm``) with the new ID.
    """
    path, _data, dom = _definition(name, opts)
    _qcow2_disks(dom)
    snaps = [s for s in snapshot_list(name, opts) if s["name"] == snap]
    if not snaps:
        raise QemuwrapError(f"guest '{name}' has no snapshot '{snap}'")
    if not snaps[0]["vm_state_size"]:
        raise QemuwrapError(f"snapshot '{snap}' has no memory state to run from")
    try:
        gdir, record, proc = _running(name, opts)
    except QemuwrapError:
        proc = None  # not running: start it from the snapshot
    if proc is not None:
        stop_guest(gdir, record, proc)
    return start(path, opts, loadvm=snap)
