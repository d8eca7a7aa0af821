"""``save`` and ``restore``: a guest's state to a file and back, with a new genid.

Save: the target is checked before the guest is paused (its directory exists and is
writable, the target is not a directory, the filesystem has room for the guest's RAM).
QEMU writes its stream straight into the (temporary) file, unthrottled; this command
hashes it behind QEMU as it grows (and has the disk take it meanwhile), showing
progress on a terminal. Only when the file is whole, checksummed, synced and renamed
into place is the supervisor told to commit (QEMU ends). Any failure, Ctrl-C included,
closes the connection: the supervisor cancels the migration and lets a running guest
run on; the temp file is removed.

Restore: the save file is checked (magic, header types, size) before QEMU starts; its
checksum is verified while the supervisor and QEMU start (on the other core), and
QEMU is given the state only once it matched: the very descriptor that was checked,
no path reopened. The definition is the one stored in the file, or ``--xml``; no path
from the file's header is followed. A stored definition with ``<qemu:commandline>``
(QEMU arguments passed verbatim) is only restored with ``--xml``.
"""

from __future__ import annotations

import os
import re
import sys
import time

from qemuwrap import savefile
from qemuwrap.errors import QemuwrapError, printable
from qemuwrap.ops.guests import _clean_unsupervised, running, supervisor_alive
from qemuwrap.runtime import control, migrate
from qemuwrap.runtime.guestdir import GuestDir
from qemuwrap.runtime.qmp import QMP

#: No byte from QEMU for this long: it is stopped or hung, the save is abandoned.
STALL_TIMEOUT = 30.0
#: While QEMU writes, the disk is given what it wrote once this much more came.
FLUSH_EVERY = 32 << 20


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


def save(name: str, path: str, opts, *, progress: bool | None = None) -> dict:
    """Save the guest's state to ``path`` and stop it; the result for the CLI."""
    gdir, record = running(name, opts.state_dir)
    xml = gdir.read("domain.xml")
    if xml is None:
        raise QemuwrapError(f"guest '{printable(name)}': its live definition is gone")
    # Our own formatting of the live definition (Domain.format): memory in KiB. It is
    # stored as it is; a restore models and checks it like any definition.
    found = re.search(rb"<memory unit='KiB'>(\d+)</memory>", xml)
    if found is None:
        raise QemuwrapError(f"guest '{printable(name)}': its live definition has no memory")
    memory = int(found.group(1)) * 1024
    path = check_target(path, memory)
    if progress is None:
        progress = sys.stderr.isatty()
    meta = savefile.header_meta(name=name, uuid=record.uuid, xml=xml.decode(),
                                genid=record.genid, memory_bytes=memory)
    writer = None
    try:
        try:
            writer = savefile.Writer(path, meta)
        except OSError as exc:
            raise QemuwrapError(f"cannot save to {printable(path)}: {exc.strerror}") \
                from None
        if supervisor_alive(gdir, record):
            checksum = _save_supervised(gdir, writer, progress)
        else:
            checksum = _save_unsupervised(gdir, record, writer, progress)
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    genid = record.genid
    return {"name": name, "file": path, "size": os.path.getsize(path),
            "checksum": f"blake3:{checksum}", "genid": genid}


def _follow(writer: savefile.Writer, wait, progress: bool) -> dict:
    """Hash what QEMU writes while it writes, and have the disk take it meanwhile
    (``flush_behind``); ``wait(timeout)`` returns the message that ends the stream (or
    None when there is none yet). A stream that stops growing for STALL_TIMEOUT seconds
    (a stopped QEMU) is abandoned."""
    start = last_growth = shown = time.monotonic()
    size = 0
    while True:
        msg = wait(0.005)
        if msg is not None:
            if msg.get("event") == "completed":
                writer.flush_behind()  # the rest, while the hash catches up
            if progress:
                writer.hash_written()
                writer.show(start)
                sys.stderr.write("\n")
            return msg
        if writer.hash_written() != size:
            size = writer.size
            last_growth = time.monotonic()
            writer.flush_behind(every=FLUSH_EVERY)
        elif time.monotonic() - last_growth > STALL_TIMEOUT:
            raise QemuwrapError(f"QEMU wrote nothing for {STALL_TIMEOUT:g} s; save "
                                "abandoned")
        if progress and time.monotonic() - shown > 0.1:
            shown = time.monotonic()
            writer.show(start)


def _save_supervised(gdir: GuestDir, writer: savefile.Writer, progress: bool) -> str:
    """The supervisor hands our file to QEMU; we hash behind it, and commit once the
    file is whole. Our going away (Ctrl-C) makes the supervisor cancel and resume."""
    import select

    client = control.Client(gdir.file(control.SOCKET), timeout=10)
    try:
        client.send({"request": "save"}, fds=[writer.fd])
        msg = client.receive(30)
        if "error" in msg:
            raise QemuwrapError(str(msg["error"]))

        def wait(timeout: float) -> dict | None:
            if select.select([client.sock], [], [], timeout)[0]:
                return client.receive(5)
            return None

        msg = _follow(writer, wait, progress)
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
        client.close()


def _save_unsupervised(gdir: GuestDir, record, writer: savefile.Writer,
                       progress: bool) -> str:
    """No supervisor lives: drive QEMU's second monitor ourselves, then end QEMU."""
    from qemuwrap.ops.guests import _force_off

    qmp = QMP.connect(gdir.file("control.sock"), timeout=5)
    was_running = False
    try:
        was_running = migrate.begin(qmp, writer.fd)
        try:
            def wait(timeout: float) -> dict | None:
                event = qmp.wait_event(("MIGRATION",), timeout)
                if event is None:
                    return None
                status = event.get("data", {}).get("status")
                if status == "completed":
                    return {"event": "completed"}
                if status in ("failed", "cancelled"):
                    return {"error": f"saving failed: {status}"}
                return None

            msg = _follow(writer, wait, progress)
            if "error" in msg:
                raise QemuwrapError(msg["error"])
            checksum = writer.finish()
        except BaseException:
            migrate.undo(qmp, was_running)
            raise
    finally:
        qmp.close()
    _force_off(gdir, record)
    _clean_unsupervised(gdir, record)
    return checksum


def refuse_verbatim_qemu(saved) -> None:
    """A save file is not the user's own definition: anyone can write one with a
    matching checksum. What it says QEMU runs with is checked like any definition's,
    except ``<qemu:commandline>``, which passes arguments and environment to QEMU
    verbatim (``-netdev tap,script=PROG`` runs PROG, as root): only from a definition the
    user gives (``--xml``, checked against the stored one)."""
    cmdline = saved.qemu_commandline
    if cmdline is not None and (cmdline.args or cmdline.envs):
        raise QemuwrapError("the definition stored in this save file passes QEMU arguments "
                            "or environment of its own, unchecked (<qemu:commandline>); "
                            "restore it with --xml FILE.xml, your own definition of guest "
                            f"'{printable(saved.name)}' (checked against the stored one)")


def restore(path: str, opts, xml: str | None = None) -> dict:
    """Start a saved guest again, with a new genid; the new guest's record (JSON)."""
    from qemuwrap.launcher import Restore, saved_definition, start

    save = savefile.open_checked(path, verify=False)  # the checksum: while QEMU starts
    try:
        saved = saved_definition(save)
        if xml is None:
            refuse_verbatim_qemu(saved)
        restore = Restore(save, saved)
        if xml is not None:
            record = start(xml, opts, restore=restore)
        else:
            # The stored definition, as saved: the new genid lives in the state
            # directory only (there is no file of ours to write it to).
            dom = saved_definition(save)
            record = start(None, opts, restore=restore, dom=dom)
    finally:
        save.close()
    return record
