"""Starting guests: ``run`` (a supervisor in the foreground), ``start`` (in the
background), ``adopt``; and the launches of ``restore`` and ``snapshot revert``.

A launch is a transaction. Everything that can be checked is checked before QEMU
starts (definition, guest name, state directory, duplicate genid, a save file's
checksum and ABI); the supervisor records QEMU the moment it is spawned, and any
failure after that stops QEMU before the command returns. A background supervisor
that dies before it reported the guest running is cleaned up after by the command
that forked it.
"""

from __future__ import annotations

import json
import os
import sys

from qemuwrap.conf import guid
from qemuwrap.conf.domain import Domain, load, loads, parse_domain
from qemuwrap.conf.xmlreader import parse_bytes
from qemuwrap.definition import DefinitionWriteError, save_identity
from qemuwrap.errors import QemuwrapError, debug, printable
from qemuwrap.options import Options
from qemuwrap.qemu import capabilities
from qemuwrap.qemu.command import build_command, complete_definition
from qemuwrap.runtime.guestdir import GuestBusyError, GuestDir, duplicate_genid


class Restore:
    """A checked save file to continue from (``savefile.SaveFile``) and the saved
    guest's definition, for the ABI check."""

    def __init__(self, save, saved: Domain):
        self.save = save
        self.saved = saved


def prepare(path: str, opts: Options) -> tuple[bytes, Domain, GuestDir]:
    """Read and model the definition (the strict model refuses anything unsupported; the
    RelaxNG schema, which agrees with it, is checked by ``qemuwrap validate``)."""
    data, dom = load(path)
    return data, dom, GuestDir(dom.name, opts.state_dir)


def refuse_if_running(gdir: GuestDir) -> None:
    record = gdir.running()
    if record is not None:
        assert record.qemu is not None
        raise GuestBusyError(f"guest '{printable(gdir.name)}' is running without a "
                             f"supervisor (QEMU pid {record.qemu.pid}); use 'qemuwrap adopt "
                             f"{printable(gdir.name)}'")


def refuse_duplicate_genid(dom: Domain, opts: Options, *, since: float | None = None) -> None:
    """A generation ID exists to tell copies apart: two running guests must not share
    one (a definition copied with its ``<genid>``), unless the user says so."""
    if opts.allow_duplicate_genid or dom.genid_str is None:
        return
    other = duplicate_genid(dom.name, dom.genid_str, opts.state_dir, since=since)
    if other is not None:
        raise QemuwrapError(f"genid {dom.genid_str} is already used by the running guest "
                            f"'{printable(other)}' (a copied definition?); give this guest "
                            "its own <genid/>, or pass --allow-duplicate-genid")


def run(path: str | None, opts: Options, *, background: bool = False,
        restore: Restore | None = None, loadvm: str | None = None,
        data: bytes | None = None, dom: Domain | None = None):
    """Start the guest and supervise it until it ends (this process becomes the
    supervisor: it does not return), or with ``background`` hand the supervisor to a
    child of its own session and return the guest's record (JSON) once it runs.

    ``restore``: continue from a save file; ``loadvm``: from an internal snapshot. Both
    re-execute the guest's past, so the guest gets a new generation ID (when its
    definition requests one), saved into the definition once QEMU has loaded the state.
    ``path`` None: the definition is ``dom`` (a restore from the save file's own).
    """
    # The supervisor's interpreter starts and imports (~25 ms) while this process reads
    # the definition and builds the command; it gets the launch once that is ready.
    early = _Early.start() if background else None
    try:
        return _run(path, opts, background=background, restore=restore, loadvm=loadvm,
                    data=data, dom=dom, early=early)
    finally:
        if early is not None:
            early.discard()


def _run(path: str | None, opts: Options, *, background: bool, restore: Restore | None,
         loadvm: str | None, data: bytes | None, dom: Domain | None,
         early: _Early | None):
    if dom is None:
        assert path is not None
        data, dom = load(path)
    gdir = GuestDir(dom.name, opts.state_dir)
    gdir.lock()
    try:
        refuse_if_running(gdir)
        previous = dom.genid_str  # a revert: what the definition had
        caps = capabilities.for_domain(dom.devices.emulator, opts.caps)
        if restore is not None:
            # Compared as QEMU would get it (implicit devices, addresses and ids filled
            # in), as the saved definition was stored: libvirt compares two complete ones.
            complete_definition(dom, caps)
            check_abi(restore.saved, dom)
            previous = restore.saved.genid_str  # what the guest had when it was saved
        new_genid = bool(restore or loadvm) and dom.genid_requested
        if new_genid:
            dom.genid = guid.generate_v4()
        refuse_duplicate_genid(dom, opts)
        from qemuwrap.qemu.validate.host import drop_missing_optional, require_host

        for line in drop_missing_optional(dom, cold_boot=restore is None and loadvm is None):
            print(f"qemuwrap: {printable(path or dom.name)}: note: {line}", file=sys.stderr)
        cmd = build_command(dom, caps, gdir.path, incoming=restore is not None, loadvm=loadvm)
        require_host(dom, cmd, gdir.path)
        from qemuwrap.qemu.build import Paths
        from qemuwrap.qemu.companions import plan as plan_companions
        from qemuwrap.runtime.companions import from_specs, refuse_unstartable

        companions = from_specs([c.to_json() for c in
                                 plan_companions(dom, Paths(gdir.path))])
        refuse_unstartable(companions)  # no root for a tap, a network not active, ...
        _prepare_nvram(dom)
        _write_graphics_secrets(dom, gdir)
        writeback = None
        if path is not None and data is not None:
            if new_genid:  # stored by the supervisor once QEMU has loaded the state
                writeback = _prepared_write_back(path, data, dom, opts)
            else:  # a plain start: what was made up is stored before it runs
                _save_identity(path, data, dom, opts)
        from qemuwrap.runtime.machine import Exe
        from qemuwrap.supervisor import Guest, Plan

        marker = ("restore" if restore else f"revert to {loadvm}" if loadvm else "start")
        from qemuwrap.qemu import afterstart

        # A restart boots afresh: the same command less -incoming/-loadvm (as adopt
        # compares them), not a second build.
        restart_cmd = Exe(cmd.binary, _without_start_state(cmd.argv), cmd.env)
        plan = Plan(Guest.of(dom, gdir.path), Exe.of(cmd), restart_cmd=restart_cmd,
                    source=os.path.abspath(path) if path else None,
                    incoming_fd=restore.save.fd if restore else None, writeback=writeback,
                    previous_genid=previous if new_genid else None, marker=marker,
                    companions=companions, after_start=afterstart.plan(dom))
        debug(f"QEMU: {' '.join(cmd.argv)}")
        conf = {"plan": plan.to_json(), "name": dom.name, "state_dir": opts.state_dir,
                "guest_dir": gdir.path, "lock_fd": gdir.lock_fd,
                "shutdown_timeout": opts.shutdown_timeout, "console": opts.console,
                "allow_duplicate_genid": opts.allow_duplicate_genid,
                "where": path or dom.name}
        keep = [restore.save.fd] if restore else []
        verify = None
        if restore is not None:  # checked here while the supervisor starts QEMU
            verify_r, verify_w = os.pipe2(os.O_CLOEXEC)
            keep.append(verify_r)
            conf["verify_fd"] = verify_r
            verify = (restore.save, verify_w)
        if not background:
            if verify is not None:
                _verify(*verify)
            _exec_supervisor(conf, keep)
        assert early is not None
        return _fork(conf, keep, gdir, marker, early, verify)
    finally:
        gdir.close()
        if restore is not None:
            restore.save.close()


def _prepared_write_back(path: str, data: bytes, dom: Domain, opts: Options) -> dict | None:
    """The definition's bytes with the new genid (and the identity the load made up),
    for the supervisor to store once the state is loaded."""
    import hashlib

    from qemuwrap.definition import identity_edits, splice

    edits = identity_edits(data, dom)
    if not edits:
        return None
    return {"path": os.path.abspath(path), "old_sha256": hashlib.sha256(data).hexdigest(),
            "new": splice(data, edits).decode("latin-1"), "transient": opts.transient}


def _write_graphics_secrets(dom: Domain, gdir: GuestDir) -> None:
    """VNC/SPICE passwords, for QEMU's ``-object secret``: owner-only files in the state
    directory, never in the command line."""
    from qemuwrap.qemu.build.graphics import graphics_secrets

    for path, secret in graphics_secrets(dom.devices.graphics, gdir.path).items():
        gdir.write(os.path.basename(path), secret.encode())  # 0600, as every file there


def _prepare_nvram(dom: Domain) -> None:
    """The guest's own UEFI variable store, copied from its template on first start and
    kept across starts (companions/nvram.py)."""
    nvram = dom.os.nvram
    loader = dom.os.loader
    if nvram is None or nvram.path is None or loader is None or loader.stateless:
        return
    from qemuwrap.companions.nvram import ensure

    if ensure(nvram.path, nvram.template):
        debug(f"NVRAM {nvram.path} made from {nvram.template}")


def _save_identity(path: str, data: bytes, dom: Domain, opts: Options) -> None:
    """Store the genid, uuid and MACs this start made up; without --transient, failing
    to is fatal."""
    notes: list[str] = []
    try:
        save_identity(path, data, dom, notes)
        for note in notes:  # e.g. written through a symbolic link
            print(f"qemuwrap: {printable(path)}: note: {printable(note)}", file=sys.stderr)
    except DefinitionWriteError as exc:
        if not opts.transient:
            raise DefinitionWriteError(f"{exc}; use --transient to start without "
                                       "saving it") from None


def _exec_supervisor(conf: dict, keep: list[int]) -> None:
    """Become the supervisor: a fresh interpreter that loads only the runtime (see
    ``supervisor.main``: the model and QEMU's capabilities stay behind, which keeps
    every supervisor small), handed the launch as JSON in a memfd and the fds it keeps
    (the guest's lock, the ready pipe, a restore's save file)."""
    memfd = os.memfd_create("qemuwrap-launch", 0)
    for fd in (conf["lock_fd"], conf.get("ready_fd"), *keep):
        if fd is not None:
            os.set_inheritable(fd, True)
    view = memoryview(json.dumps(conf).encode())
    while view:
        view = view[os.write(memfd, view):]
    os.lseek(memfd, 0, os.SEEK_SET)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-P", "-m", "qemuwrap.supervisor", str(memfd)])


def _verify(save, fd: int) -> None:
    """Check a save file's checksum and tell the supervisor (which waits before it gives
    QEMU the state): "ok", or the one-line refusal."""
    answer = b"interrupted\n"
    try:
        save.verify()
        answer = b"ok\n"
    except QemuwrapError as exc:
        answer = str(exc).encode() + b"\n"
        raise
    finally:
        try:
            os.write(fd, answer)
        except OSError:
            pass  # the supervisor ended already (QEMU failed): its report says why
        os.close(fd)


class _Early:
    """A supervisor started ahead of its launch: a child of its own session (stdin and
    output /dev/null) that has loaded the runtime and waits on a socket for the launch
    (``hand``: the JSON and the fds it keeps, its log among them). Discarded unused (the
    command failed first), it is killed: it holds nothing yet."""

    def __init__(self, pid: int, sock):
        self.pid = pid
        self.sock = sock

    @classmethod
    def start(cls) -> _Early:
        import socket

        ours, theirs = socket.socketpair(socket.AF_UNIX,
                                         socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the supervisor-to-be
            try:
                ours.close()
                os.setsid()
                nullfd = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(nullfd, fd)
                os.set_inheritable(theirs.fileno(), True)
                os.execv(sys.executable, [sys.executable, "-P", "-m", "qemuwrap.supervisor",
                                          "--socket", str(theirs.fileno())])
            finally:
                os._exit(127)
        theirs.close()
        return cls(pid, ours)

    def hand(self, conf: dict, fds: list[int]) -> int:
        """Give the supervisor its launch; its pid."""
        import socket

        data = json.dumps({**conf, "passed": fds}).encode()
        sent = socket.send_fds(self.sock, [data], fds)
        self.sock.sendall(data[sent:])
        self.sock.close()
        self.sock = None
        return self.pid

    def discard(self) -> None:
        if self.sock is not None:
            import signal

            self.sock.close()
            self.sock = None
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)


def _fork(conf: dict, keep: list[int], gdir: GuestDir, marker: str, early: _Early,
          verify: tuple | None = None) -> dict:
    """Hand the launch to the supervisor started early (output to supervisor.log) and
    wait until it says the guest runs. If it ends without saying so, whatever it
    recorded is stopped here. ``verify``: a save file to check meanwhile."""
    r, w = os.pipe2(os.O_CLOEXEC)
    log = gdir.open_log("supervisor.log", marker=marker)
    try:
        pid = early.hand({**conf, "ready_fd": w, "log_fd": log},
                         [conf["lock_fd"], w, log, *keep])
    finally:
        os.close(w)
        os.close(log)
    refusal = None
    if verify is not None:
        os.close(conf["verify_fd"])
        try:
            _verify(*verify)
        except QemuwrapError as exc:
            refusal = exc  # the supervisor stops its QEMU and says so; this is the why
    with os.fdopen(r, "rb") as f:
        line = f.readline()
    if refusal is not None:
        if line:
            os.waitpid(pid, 0)
        raise refusal
    if not line:
        os.waitpid(pid, 0)
        _clean_up_after(gdir)
        raise QemuwrapError("the supervisor ended before the guest was started; see "
                            f"{printable(gdir.file('supervisor.log'))}")
    msg = json.loads(line)
    if msg.get("error"):
        os.waitpid(pid, 0)
        raise QemuwrapError(msg["error"])
    return msg["record"]


def _clean_up_after(gdir: GuestDir) -> None:
    """A supervisor died during its launch: stop the QEMU and companions it recorded."""
    from qemuwrap import process
    from qemuwrap.runtime.companions import clean_up

    try:
        record = gdir.read_record()
    except QemuwrapError:
        record = None
    if record is not None:
        if record.qemu is not None:
            process.kill_hard(record.qemu.pid, record.qemu.create_time)
        for entry in record.companions:
            clean_up(entry)
    gdir.clear_runtime()


def check_abi(saved: Domain, dom: Domain) -> None:
    """The seed's ABI-stability check of ``dom`` against the saved definition, expecting
    the generation ID to change (a restore gives a new one): everything else the guest
    could notice must stay the same."""
    from qemuwrap.conf.abi import ABIError, check_abi_stability

    if saved.name != dom.name:
        raise ABIError(f"the save file holds guest '{printable(saved.name)}', not "
                       f"'{printable(dom.name)}'")
    # What the definition leaves to be made up at load (a uuid, MACs) is what the saved
    # guest had, not new random values; they are written back with the new genid.
    if dom.uuid_generated:
        dom.uuid = saved.uuid
    for nic, was in zip(dom.devices.interfaces, saved.devices.interfaces, strict=False):
        if nic.mac_generated:
            nic.mac = was.mac
    if saved.genid_requested and dom.genid_requested:
        expected = saved.genid
        saved.genid = dom.genid  # the one thing that must change is not compared
        try:
            check_abi_stability(saved, dom)
        finally:
            saved.genid = expected
    else:
        check_abi_stability(saved, dom)


def start(path: str | None, opts: Options, **kwargs) -> dict:
    """Start the guest with its supervisor in the background; the guest's record."""
    return run(path, opts, background=True, **kwargs)


def adopt(name: str, opts: Options) -> int:
    """Supervise a running QEMU whose supervisor died (this process becomes it)."""
    from qemuwrap.runtime.machine import Exe
    from qemuwrap.supervisor import Guest, Plan

    gdir = GuestDir(name, opts.state_dir)
    if not gdir.exists():
        raise QemuwrapError(f"no guest '{printable(name)}' here")
    gdir.lock()
    try:
        record = gdir.running()
        if record is None:
            raise QemuwrapError(f"guest '{printable(name)}' is not running")
        xml = gdir.read("domain.xml")
        if xml is None:
            raise QemuwrapError(f"guest '{printable(name)}': its live definition is gone")
        dom = parse_domain(parse_bytes(xml))
        caps = capabilities.for_domain(dom.devices.emulator, opts.caps)
        cmd = build_command(dom, caps, gdir.path)
        assert record.qemu is not None
        if cmd.argv != _without_start_state(record.qemu.argv):
            raise QemuwrapError(f"guest '{printable(name)}': the running QEMU's command "
                                "differs from its live definition; not adopting it")
        plan = Plan(Guest.of(dom, gdir.path), Exe.of(cmd), source=record.source,
                    marker="adopt")
        _exec_supervisor({"plan": plan.to_json(), "name": name, "state_dir": opts.state_dir,
                          "guest_dir": gdir.path, "lock_fd": gdir.lock_fd,
                          "shutdown_timeout": opts.shutdown_timeout, "console": False,
                          "allow_duplicate_genid": True, "where": name,
                          "adopt": record.dumps().decode()}, [])
        return 1  # not reached: this process became the supervisor
    finally:
        gdir.close()


def _without_start_state(argv: list[str]) -> list[str]:
    """``argv`` less what only its first start had (``-incoming``, ``-loadvm``)."""
    out, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word in ("-incoming", "-loadvm"):
            skip = True
        else:
            out.append(word)
    return out


def saved_definition(save) -> Domain:
    """The definition stored in a save file, modelled (its name must match the file's)."""
    dom = loads(save.xml)
    if dom.name != save.name:
        raise QemuwrapError(f"{printable(save.path)}: the stored definition is of guest "
                            f"'{printable(dom.name)}', the header says "
                            f"'{printable(save.name)}'")
    return dom


__all__ = ["Options", "Restore", "adopt", "check_abi", "run", "start"]
