"""``save`` and ``restore``: a guest's state to a file and back, with a new genid.

Save: the target is checked before the guest is paused (its directory exists and is
writable, the target is not a directory, the filesystem has room for the guest's RAM).
QEMU writes its stream into a pipe; this command reads it, hashes it and writes the
file, showing progress on a terminal. Only when the file is whole, checksummed, synced
and renamed into place is the supervisor told to commit (QEMU ends). Any failure,
Ctrl-C included, closes the pipe and the connection: QEMU's migration fails, the
supervisor cancels it and lets a running guest run on; the temp file is removed.

Restore: the save file is checked (magic, header types, size, checksum) before QEMU
starts and is handed to QEMU as the very fd that was checked. The definition is the
one stored in the file, or ``--xml``; no path from the file's header is followed.
"""

from __future__ import annotations

import fcntl
import os
import sys

from qemuwrap import savefile
from qemuwrap.conf.domain import parse_domain
from qemuwrap.conf.xmlreader import parse_bytes
from qemuwrap.errors import QemuwrapError, printable
from qemuwrap.launcher import Options, Restore, saved_definition, start
from qemuwrap.ops.guests import _clean_unsupervised, running, supervisor_alive
from qemuwrap.runtime import control, migrate
from qemuwrap.runtime.guestdir import GuestDir
from qemuwrap.runtime.qmp import QMP

#: No byte from QEMU for this long: it is stopped or hung, the save is abandoned.
STALL_TIMEOUT = 30.0
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def check_target(path: str, memory_bytes: int) -> str:
    """The save file's absolute path, after the checks that must pass before the guest
    is paused."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    where = printable(path)
    if os.path.isdir(path):
        raise QemuwrapError(f"{where} is a directory; give the save file's name")
    if not os.path.isdir(directory):
        raise QemuwrapError(f"cannot save to {where}: the directory "
                            f"{printable(directory)} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise QemuwrapError(f"cannot save to {where}: the directory is not writable")
    if os.path.lexists(path) and not os.path.isfile(path):
        raise QemuwrapError(f"{where} exists and is not a regular file")
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    if free < memory_bytes:
        raise QemuwrapError(f"cannot save to {where}: {free / 2**20:.0f} MiB free, the "
                            f"guest has {memory_bytes / 2**20:.0f} MiB of RAM")
    return path


def save(name: str, path: str, opts: Options, *, progress: bool | None = None) -> dict:
    """Save the guest's state to ``path`` and stop it; the result for the CLI."""
    gdir, record = running(name, opts.state_dir)
    xml = gdir.read("domain.xml")
    if xml is None:
        raise QemuwrapError(f"guest '{printable(name)}': its live definition is gone")
    live = parse_domain(parse_bytes(xml))
    path = check_target(path, live.memory_kib * 1024)
    if progress is None:
        progress = sys.stderr.isatty()
    meta = savefile.header_meta(name=name, uuid=live.uuid_str,
                                xml=live.format(inactive=True), genid=live.genid_str,
                                memory_bytes=live.memory_kib * 1024)
    try:
        writer = savefile.Writer(path, meta)
    except OSError as exc:
        raise QemuwrapError(f"cannot save to {printable(path)}: {exc.strerror}") from None
    try:
        if supervisor_alive(gdir, record):
            checksum = _save_supervised(gdir, writer, progress)
        else:
            checksum = _save_unsupervised(gdir, record, writer, progress)
    except BaseException:
        writer.discard()
        raise
    genid = live.genid_str
    return {"name": name, "file": path, "size": os.path.getsize(path),
            "checksum": f"sha256:{checksum}", "genid": genid}


def _pipe() -> tuple[int, int]:
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        fcntl.fcntl(w, F_SETPIPE_SZ, 1 << 20)
    except OSError:
        pass  # a smaller pipe works too
    return r, w


def _save_supervised(gdir: GuestDir, writer: savefile.Writer, progress: bool) -> str:
    r, w = _pipe()
    client = control.Client(gdir.file(control.SOCKET), timeout=10)
    try:
        client.send({"request": "save"}, fds=[w])
        os.close(w)
        w = -1
        msg = client.receive(30)
        if "error" in msg:
            raise QemuwrapError(str(msg["error"]))

        def supervisor_spoke() -> None:
            msg = client.receive(1)
            if "error" in msg:
                raise QemuwrapError(str(msg["error"]))
            pending.append(msg)

        pending: list[dict] = []
        try:
            writer.copy_from(r, stall=STALL_TIMEOUT, wake_fd=client.sock.fileno(),
                             on_wake=supervisor_spoke, progress=progress)
        except OSError as exc:
            raise QemuwrapError(f"cannot write {printable(writer.path)}: {exc.strerror}") \
                from None
        msg = pending.pop(0) if pending else client.receive(60)
        if "error" in msg:
            raise QemuwrapError(str(msg["error"]))
        if msg.get("event") != "completed":
            raise QemuwrapError("the supervisor did not confirm the save")
        try:
            checksum = writer.finish()
        except OSError as exc:
            raise QemuwrapError(f"cannot write {printable(writer.path)}: {exc.strerror}") \
                from None
        try:
            client.send({"request": "commit", "path": writer.path})
            client.reply(60)
        except control.ControlError as exc:
            raise QemuwrapError(f"the state is saved in {printable(writer.path)}, but the "
                                f"guest could not be stopped: {exc}") from None
        return checksum
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
        client.close()


def _save_unsupervised(gdir: GuestDir, record, writer: savefile.Writer,
                       progress: bool) -> str:
    """No supervisor lives: drive QEMU's second monitor ourselves, then end QEMU."""
    from qemuwrap.ops.guests import _force_off

    r, w = _pipe()
    qmp = QMP.connect(gdir.file("control.sock"), timeout=5)
    was_running = False
    try:
        try:
            was_running = migrate.begin(qmp, w)
        finally:
            os.close(w)
        try:
            writer.copy_from(r, stall=STALL_TIMEOUT, progress=progress)
            migrate.wait(qmp, 60, None)
            checksum = writer.finish()
        except BaseException:
            migrate.undo(qmp, was_running)
            raise
    finally:
        os.close(r)
        qmp.close()
    _force_off(gdir, record)
    _clean_unsupervised(gdir, record)
    return checksum


def restore(path: str, opts: Options, xml: str | None = None) -> dict:
    """Start a saved guest again, with a new genid; the new guest's record (JSON)."""
    save = savefile.open_checked(path)
    try:
        saved = saved_definition(save)
        restore = Restore(save, saved)
        if xml is not None:
            record = start(xml, opts, restore=restore)
        else:
            # The stored definition, as saved: the new genid lives in the state
            # directory only (there is no file of ours to write it to).
            dom = saved_definition(save)
            record = start(None, opts, restore=restore, dom=dom)  # type: ignore[arg-type]
    finally:
        save.close()
    return record
