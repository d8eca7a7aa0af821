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
from collections.abc import Callable

from qemuwrap.conf import guid
from qemuwrap.conf.domain import Domain, load, loads, parse_domain
from qemuwrap.conf.xmlreader import parse_bytes
from qemuwrap.definition import DefinitionWriteError, save_identity
from qemuwrap.errors import QemuwrapError, printable
from qemuwrap.qemu import capabilities
from qemuwrap.qemu.command import build_command
from qemuwrap.runtime.guestdir import GuestBusyError, GuestDir, all_guests


class Options:
    """What the CLI passes down (a plain bag: argparse's namespace fits)."""

    def __init__(self, state_dir: str | None = None, shutdown_timeout: float = 30.0,
                 transient: bool = False, console: bool = False, caps: str | None = None,
                 allow_duplicate_genid: bool = False, verbose: bool = False):
        self.state_dir = state_dir
        self.shutdown_timeout = shutdown_timeout
        self.transient = transient
        self.console = console
        self.caps = caps
        self.allow_duplicate_genid = allow_duplicate_genid
        self.verbose = verbose


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


def duplicate_genid(dom: Domain, opts: Options, *, since: float | None = None) -> str | None:
    """The name of another running guest under this state root with ``dom``'s genid
    (started before ``since``, when given), or None."""
    mine = dom.genid_str
    if mine is None:
        return None
    for other in all_guests(opts.state_dir):
        if other.name == dom.name:
            continue
        try:
            record = other.running()
        except QemuwrapError:
            continue
        if record is None or record.genid != mine:
            continue
        if since is not None and (record.started, record.name) >= (since, dom.name):
            continue
        return other.name
    return None


def refuse_duplicate_genid(dom: Domain, opts: Options, *, since: float | None = None) -> None:
    """A generation ID exists to tell copies apart: two running guests must not share
    one (a definition copied with its ``<genid>``), unless the user says so."""
    if opts.allow_duplicate_genid:
        return
    other = duplicate_genid(dom, opts, since=since)
    if other is not None:
        raise QemuwrapError(f"genid {dom.genid_str} is already used by the running guest "
                            f"'{printable(other)}' (a copied definition?); give this guest "
                            "its own <genid/>, or pass --allow-duplicate-genid")


def run(path: str | None, opts: Options, *, background: bool = False,
        restore: Restore | None = None, loadvm: str | None = None,
        data: bytes | None = None, dom: Domain | None = None):
    """Start the guest and supervise it until it ends (exit status), or with
    ``background`` hand the supervisor to a forked child and return the guest's record
    (as JSON) once it runs.

    ``restore``: continue from a save file; ``loadvm``: from an internal snapshot. Both
    re-execute the guest's past, so the guest gets a new generation ID (when its
    definition requests one), saved into the definition once QEMU has loaded the state.
    ``path`` None: the definition is ``dom`` (a restore from the save file's own).
    """
    if dom is None:
        assert path is not None
        data, dom = load(path)
    gdir = GuestDir(dom.name, opts.state_dir)
    gdir.lock()
    try:
        refuse_if_running(gdir)
        previous = dom.genid_str  # a revert: what the definition had
        if restore is not None:
            check_abi(restore.saved, dom)
            previous = restore.saved.genid_str  # what the guest had when it was saved
        new_genid = bool(restore or loadvm) and dom.genid_requested
        if new_genid:
            dom.genid = guid.generate_v4()
        refuse_duplicate_genid(dom, opts)
        caps = capabilities.for_domain(dom.devices.emulator, opts.caps)
        cmd = build_command(dom, caps, gdir.path, incoming=restore is not None, loadvm=loadvm)
        restart_cmd = build_command(dom, caps, gdir.path) if (restore or loadvm) else cmd
        write_back: Callable[[], None] | None = None
        if path is not None and data is not None:
            def write_back() -> None:
                _save_identity(path, data, dom, opts)
            if not new_genid:  # a plain start: what was made up is stored before it runs
                write_back()
                write_back = None
        from qemuwrap.supervisor import Plan

        marker = ("restore" if restore else f"revert to {loadvm}" if loadvm else "start")
        plan = Plan(dom, cmd, restart_cmd=restart_cmd,
                    source=os.path.abspath(path) if path else None,
                    incoming_fd=restore.save.fd if restore else None,
                    after_load=write_back, marker=marker)
        job = _Job(plan, gdir, opts, previous if new_genid else None)
        if not background:
            return job.supervise(ready_fd=None)
        return _fork(job)
    finally:
        gdir.close()
        if restore is not None:
            restore.save.close()


def _save_identity(path: str, data: bytes, dom: Domain, opts: Options) -> None:
    """Store the genid, uuid and MACs this start made up or changed; without
    --transient, failing to is fatal."""
    try:
        save_identity(path, data, dom)
    except DefinitionWriteError as exc:
        if not opts.transient:
            raise DefinitionWriteError(f"{exc}; use --transient to start without "
                                       "saving it") from None


class _Job:
    """Everything a supervisor needs, gathered before QEMU starts."""

    def __init__(self, plan, gdir: GuestDir, opts: Options, previous: str | None):
        self.plan = plan
        self.gdir = gdir
        self.opts = opts
        self.previous = previous

    def supervise(self, ready_fd: int | None) -> int:
        import signal

        from qemuwrap.supervisor import Supervisor

        # A stop asked for while QEMU starts is remembered, and honoured once it runs.
        early: list[int] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, _frame: early.append(signum))
        sup = Supervisor(self.plan, self.gdir, shutdown_timeout=self.opts.shutdown_timeout,
                         console=self.opts.console, early_signals=early)
        dom = self.plan.dom
        after_load = self.plan.after_load
        if self.previous is not None:
            def after_load_and_log() -> None:
                if after_load is not None:
                    after_load()
                sup.log(f"genid: {self.previous} -> {dom.genid_str}")
        sup.launch(incoming_fd=self.plan.incoming_fd,
                   after_load=after_load_and_log if self.previous is not None else after_load)
        # Two copies started at once both passed the check before either ran: the one
        # that started later gives way.
        if not self.opts.allow_duplicate_genid and sup.record is not None:
            try:
                refuse_duplicate_genid(dom, self.opts, since=sup.record.started)
            except QemuwrapError:
                sup.destroy()
                sup.gdir.clear_runtime()
                raise
        if ready_fd is not None:
            record = sup.record.to_json() if sup.record else {}
            record["previous_genid"] = self.previous or dom.genid_str
            _report(ready_fd, {"record": record})
        return sup.run()


def _fork(job: _Job) -> dict:
    """Run ``job`` in a child of its own session; wait until it says the guest runs.

    A fork, not a new interpreter: everything already read, checked and locked carries
    over (the child inherits the guest's lock; the parent's copy goes when it exits).
    If the child ends without saying so, whatever it spawned is stopped here.
    """
    r, w = os.pipe2(os.O_CLOEXEC)
    log = job.gdir.open_log("supervisor.log", marker=job.plan.marker)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the supervisor
        status = 1
        try:
            os.close(r)
            os.setsid()
            nullfd = os.open(os.devnull, os.O_RDONLY)
            os.dup2(nullfd, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(log)
            try:
                status = job.supervise(ready_fd=w)
            except (QemuwrapError, OSError) as exc:
                if isinstance(exc, OSError):
                    where = f" ({printable(str(exc.filename))})" if exc.filename else ""
                    exc = QemuwrapError(f"{exc.strerror or exc}{where}")
                _report(w, {"error": str(exc)})
                try:
                    print(f"qemuwrap: {printable(job.plan.dom.name)}: {exc}", file=sys.stderr)
                except OSError:
                    pass
            except BaseException:  # a bug: keep the traceback in supervisor.log
                _report(w, {"error": "the supervisor failed; see "
                                     f"{printable(job.gdir.file('supervisor.log'))}"})
                try:
                    import traceback

                    traceback.print_exc()
                except OSError:
                    pass
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except OSError:
                pass
            os._exit(status)
    os.close(w)
    os.close(log)
    with os.fdopen(r, "rb") as f:
        line = f.readline()
    if not line:
        os.waitpid(pid, 0)
        _clean_up_after(job.gdir)
        raise QemuwrapError("the supervisor ended before the guest was started; see "
                            f"{printable(job.gdir.file('supervisor.log'))}")
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


def _report(fd: int, msg: dict) -> None:
    """Tell the waiting parent how the launch went (one JSON line on a pipe)."""
    try:
        os.write(fd, json.dumps(msg).encode() + b"\n")
        os.close(fd)
    except OSError:
        pass


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


def start(path: str, opts: Options, **kwargs) -> dict:
    """Start the guest with its supervisor in the background; the guest's record."""
    return run(path, opts, background=True, **kwargs)


def adopt(name: str, opts: Options) -> int:
    """Supervise a running QEMU whose supervisor died."""
    from qemuwrap.supervisor import Plan, Supervisor

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
        sup = Supervisor(Plan(dom, cmd, source=record.source), gdir,
                         shutdown_timeout=opts.shutdown_timeout)
        sup.adopt(record)
        return sup.run()
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
