"""Starting guests from XML and acting on running ones: run, start, adopt, shutdown,
destroy, status, list. The supervisor itself is in ``supervisor.py``.
"""

from __future__ import annotations

import json
import os
import sys
import time

from qemuwrap.conf import guid
from qemuwrap.conf.domain import Domain, load, loads, parse_domain
from qemuwrap.conf.xmlreader import read_file
from qemuwrap.definition import DefinitionWriteError, save_genid
from qemuwrap.errors import QemuwrapError
from qemuwrap.qemu import capabilities
from qemuwrap.qemu.argv import shell_quote
from qemuwrap.qemu.command import build_command
from qemuwrap.state import GuestBusyError, GuestDir, all_guests


class Options:
    """What the CLI passes down (a plain bag: argparse's namespace fits)."""

    def __init__(self, state_dir: str | None = None, shutdown_timeout: float = 30.0,
                 transient: bool = False, console: bool = False, caps: str | None = None):
        self.state_dir = state_dir
        self.shutdown_timeout = shutdown_timeout
        self.transient = transient
        self.console = console
        self.caps = caps


def prepare(path: str, opts: Options) -> tuple[bytes, Domain, GuestDir]:
    """Read and model the definition (the strict model refuses anything unsupported; the
    RelaxNG schema, which agrees with it, is checked by ``qemuwrap validate``)."""
    data, dom = load(path)
    return data, dom, GuestDir(dom.name, opts.state_dir)


def _refuse_if_running(gdir: GuestDir) -> None:
    record = gdir.read_record()
    if record is None:
        return  # nothing ran here, or it ended cleanly
    proc = gdir.qemu_process(record)
    if proc is not None:
        raise GuestBusyError(f"guest '{gdir.name}' is running without a supervisor "
                             f"(QEMU pid {proc.pid}); use 'qemuwrap adopt {gdir.name}'")


def run(path: str, opts: Options, *, background: bool = False,
        restore_from: str | None = None, loadvm: str | None = None):
    """Start the guest and supervise it until it ends (exit status), or with
    ``background`` hand the supervisor to a forked child and return the guest's record
    once it runs.

    ``restore_from``: continue from a save file; ``loadvm``: from an internal snapshot.
    Both re-execute the guest's past, so the guest gets a new generation ID (when its
    definition requests one), saved into the definition once QEMU has loaded the state.
    """
    data, dom, gdir = prepare(path, opts)
    gdir.lock()
    try:
        _refuse_if_running(gdir)
        previous = dom.genid_str
        incoming_uri = None
        if restore_from is not None:
            incoming_uri = _check_save_file(restore_from, dom, opts)
        new_genid = bool(restore_from or loadvm) and dom.genid_requested
        if new_genid:
            dom.genid = guid.generate_v4()
        elif dom.genid_generated:
            _save_or_transient(path, data, dom, opts)
        caps = capabilities.for_domain(dom.devices.emulator, opts.caps)
        cmd = build_command(dom, caps, gdir.path, incoming=incoming_uri is not None,
                            loadvm=loadvm)
        restart_cmd = build_command(dom, caps, gdir.path)
        job = _Job(path, data, dom, gdir, opts, cmd, restart_cmd, incoming_uri,
                   previous if new_genid else None)
        if not background:
            return job.supervise(ready_fd=None)
        return _fork(job)
    finally:
        gdir.unlock()


class _Job:
    """Everything a supervisor needs, gathered before QEMU starts."""

    def __init__(self, path, data, dom, gdir, opts, cmd, restart_cmd, incoming_uri, previous):
        self.path, self.data, self.dom, self.gdir, self.opts = path, data, dom, gdir, opts
        self.cmd, self.restart_cmd = cmd, restart_cmd
        self.incoming_uri, self.previous = incoming_uri, previous

    def supervise(self, ready_fd: int | None) -> int:
        import signal

        from qemuwrap import process

        # A stop asked for while QEMU starts is remembered, and honoured once it runs.
        early: list[int] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, _frame: early.append(signum))

        try:
            pid = process.start_qemu(self.cmd, self.gdir, self.dom)
        except QemuwrapError:
            self.gdir.remove()
            raise
        # asyncio and qemu.qmp (~100 ms) load while QEMU starts.
        import asyncio

        from qemuwrap.supervisor import Supervisor

        sup = Supervisor(self.dom, self.gdir, self.cmd, source=os.path.abspath(self.path),
                         restart_cmd=self.restart_cmd, pid=pid,
                         shutdown_timeout=self.opts.shutdown_timeout, console=self.opts.console,
                         early_signals=early)
        after_load = None
        if self.previous is not None:
            def after_load():
                _save_or_transient(self.path, self.data, self.dom, self.opts)
                sup.log(f"genid: {self.previous} -> {self.dom.genid_str}")
        return asyncio.run(self._launch_and_run(sup, ready_fd, after_load))

    async def _launch_and_run(self, sup, ready_fd: int | None, after_load) -> int:
        try:
            await sup.launch(incoming=self.incoming_uri, after_load=after_load)
        except QemuwrapError:
            self.gdir.remove()  # a failed start leaves nothing behind
            raise
        if ready_fd is not None:
            record = {**self.gdir.read_record(), "previous_genid": self.previous or
                      self.dom.genid_str}
            _report(ready_fd, {"record": record})
        return await sup.run()


def _fork(job: _Job) -> dict:
    """Run ``job`` in a child of its own session; wait until it says the guest runs.

    A fork, not a new interpreter: everything already read, checked and locked carries
    over (the child inherits the guest's lock; the parent's copy goes when it exits).
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the supervisor
        status = 1
        try:
            os.close(r)
            os.setsid()
            logfd = os.open(job.gdir.file("supervisor.log"),
                            os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            nullfd = os.open(os.devnull, os.O_RDONLY)
            os.dup2(nullfd, 0)
            os.dup2(logfd, 1)
            os.dup2(logfd, 2)
            try:
                status = job.supervise(ready_fd=w)
            except QemuwrapError as exc:
                _report(w, {"error": str(exc)})
                print(f"qemuwrap: {job.dom.name}: {exc}", file=sys.stderr)
            except BaseException:  # a bug: keep the traceback in supervisor.log
                import traceback

                traceback.print_exc()
                _report(w, {"error": "the supervisor failed; see "
                                     f"{job.gdir.file('supervisor.log')}"})
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        line = f.readline()
    if not line:
        raise QemuwrapError("the supervisor ended before the guest was started; see "
                            f"{job.gdir.file('supervisor.log')}")
    msg = json.loads(line)
    if msg.get("error"):
        raise QemuwrapError(msg["error"])
    return msg["record"]


def _report(fd: int, msg: dict) -> None:
    """Tell the waiting parent how the launch went (one JSON line on a pipe)."""
    try:
        os.write(fd, json.dumps(msg).encode() + b"\n")
        os.close(fd)
    except OSError:
        pass


def _save_or_transient(path: str, data: bytes, dom: Domain, opts: Options) -> None:
    """Save the domain's genid into its file; without --transient, failing to is fatal."""
    try:
        save_genid(path, data, dom)
    except DefinitionWriteError as exc:
        if not opts.transient:
            raise DefinitionWriteError(f"{exc}; use --transient to start without "
                                       "saving it") from None


def _check_save_file(save_path: str, dom: Domain, opts: Options) -> str:
    """The seed's ABI-stability check of ``dom`` against the saved definition; the URI
    QEMU loads the state from."""
    from qemuwrap import savefile
    from qemuwrap.conf.abi import check_abi_stability

    meta, offset = savefile.read(save_path)
    saved = loads(meta["xml"])
    # What the definition leaves to be made up at load (a uuid, MACs) is what the saved
    # guest had, not new random values that would fail the ABI check.
    if dom.uuid_generated:
        dom.uuid = saved.uuid
    for nic, was in zip(dom.devices.interfaces, saved.devices.interfaces, strict=False):
        if nic.mac_generated:
            nic.mac = was.mac
    # Both as QEMU would get them: implicit devices, addresses and ids filled in (the
    # saved one was stored that way), as libvirt compares two complete definitions.
    from qemuwrap.qemu.command import complete_definition

    complete_definition(dom, capabilities.for_domain(dom.devices.emulator, opts.caps))
    check_abi_stability(saved, dom)
    return f"exec:tail -c +{offset + 1} {shell_quote(os.path.abspath(save_path))}"


def start(path: str, opts: Options, *, restore_from: str | None = None,
          loadvm: str | None = None) -> dict:
    """Start the guest with its supervisor in the background; the guest's record."""
    return run(path, opts, background=True, restore_from=restore_from, loadvm=loadvm)


def adopt(name: str, opts: Options) -> int:
    """Supervise a running QEMU whose supervisor died."""
    gdir = GuestDir(name, opts.state_dir)
    gdir.lock()
    try:
        record = gdir.read_record()
        if gdir.qemu_process(record) is None:
            raise QemuwrapError(f"guest '{name}' is not running")
        _data, root = read_file(gdir.file("domain.xml"))
        dom = parse_domain(root)
        caps = capabilities.for_domain(dom.devices.emulator, opts.caps)
        cmd = build_command(dom, caps, gdir.path)
        if cmd.argv != _without_start_state(record["argv"]):
            raise QemuwrapError(f"guest '{name}': the running QEMU's command differs from "
                                "its live definition; not adopting it")
        import asyncio

        from qemuwrap.supervisor import Supervisor

        sup = Supervisor(dom, gdir, cmd, source=record.get("source"),
                         shutdown_timeout=opts.shutdown_timeout)

        async def go():
            await sup.adopt(record)
            return await sup.run()

        return asyncio.run(go())
    finally:
        gdir.unlock()


def _qmp_command(*args, **kwargs):
    from qemuwrap import qmp  # asyncio: only for commands that talk to QEMU

    return qmp.command(*args, **kwargs)


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


def _running(name: str, opts: Options) -> tuple[GuestDir, dict, object]:
    gdir = GuestDir(name, opts.state_dir)
    record = gdir.read_record()
    proc = gdir.qemu_process(record)
    if proc is None:
        raise QemuwrapError(f"guest '{name}' is not running")
    return gdir, record, proc


def _wait_gone(proc, timeout: float) -> bool:
    import psutil

    try:
        proc.wait(timeout)
        return True
    except psutil.TimeoutExpired:
        return False


def _supervisor(record: dict):
    import psutil

    try:
        proc = psutil.Process(record["supervisor_pid"])
        if abs(proc.create_time() - record["supervisor_create_time"]) < 0.05:
            return proc
    except (psutil.NoSuchProcess, KeyError):
        pass
    return None


def shutdown(name: str, opts: Options) -> str:
    """ACPI power-off; force after the timeout. Through the supervisor if it lives."""
    gdir, record, proc = _running(name, opts)
    sup = _supervisor(record) if gdir.supervised() else None
    if sup is not None:
        sup.terminate()  # the supervisor does ACPI, the timeout and the cleanup
        if _wait_gone(proc, opts.shutdown_timeout + 15):
            _wait_gone(sup, 10)
            return f"guest '{name}' is shut down"
        raise QemuwrapError(f"guest '{name}' is still running")
    _qmp_command(record["control_socket"], "system_powerdown")
    if _wait_gone(proc, opts.shutdown_timeout):
        gdir.clear_runtime()
        return f"guest '{name}' is shut down"
    stop_guest(gdir, record, proc)
    return f"guest '{name}' did not power off within {opts.shutdown_timeout:g} s; forced off"


def destroy(name: str, opts: Options) -> str:
    """Stop QEMU now (QMP quit; SIGKILL if it does not answer)."""
    gdir, record, proc = _running(name, opts)
    stop_guest(gdir, record, proc)
    return f"guest '{name}' destroyed"


def stop_guest(gdir: GuestDir, record: dict, proc) -> None:
    """End a running guest's QEMU (QMP quit, SIGKILL if it does not answer or linger),
    then wait for its supervisor to finish, or clean up for it when there is none."""
    supervised = gdir.supervised()
    try:
        _qmp_command(record["control_socket"], "quit", timeout=5)
    except QemuwrapError:
        proc.kill()
    if not _wait_gone(proc, 20):
        proc.kill()
        _wait_gone(proc, 5)
    sup = _supervisor(record) if supervised else None
    if sup is not None:
        _wait_gone(sup, 20)
    else:
        gdir.clear_runtime()


def status(name: str, opts: Options) -> dict:
    """What is known of a guest: from its state directory, checked against the kernel."""
    gdir = GuestDir(name, opts.state_dir)
    record = gdir.read_record() or {}
    proc = gdir.qemu_process(record) if record else None
    out = {"name": name, "state": "shut off", "qemu_pid": None, "supervisor_pid": None,
           "supervised": False, "qmp_socket": None, "control_socket": None,
           "genid": record.get("genid"), "uuid": record.get("uuid"),
           "state_dir": gdir.path, "source": record.get("source")}
    if proc is None:
        return out
    sup = _supervisor(record) if gdir.supervised() else None
    out.update(qemu_pid=proc.pid, supervised=sup is not None,
               supervisor_pid=sup.pid if sup else None, qmp_socket=record["qmp_socket"],
               control_socket=record["control_socket"],
               uptime=round(time.time() - record["started"], 1))
    try:
        st = _qmp_command(record["control_socket"], "query-status", timeout=2)
        out["state"] = {"prelaunch": "starting", "inmigrate": "restoring"}.get(
            st["status"], st["status"])
    except QemuwrapError:
        out["state"] = "unknown (monitor busy)"
    return out


def list_guests(opts: Options) -> list[dict]:
    out = []
    for gdir in all_guests(opts.state_dir):
        record = gdir.read_record()
        if record and gdir.qemu_process(record) is not None:
            out.append(status(gdir.name, opts))
    return out


__all__ = ["Options", "adopt", "destroy", "list_guests", "run", "shutdown", "start",
           "status", "stop_guest"]
