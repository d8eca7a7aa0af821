"""Starting guests from XML and acting on running ones: run, start, adopt, shutdown,
destroy, status, list. The supervisor itself is in ``supervisor.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

from qemuwrap import qmp, savefile
from qemuwrap.conf import guid
from qemuwrap.conf.abi import check_abi_stability
from qemuwrap.conf.domain import Domain, load, loads, parse_domain
from qemuwrap.conf.xmlreader import read_file
from qemuwrap.definition import DefinitionWriteError, save_genid
from qemuwrap.errors import QemuwrapError
from qemuwrap.qemu import capabilities
from qemuwrap.qemu.argv import shell_quote
from qemuwrap.qemu.command import build_command
from qemuwrap.state import GuestBusyError, GuestDir, all_guests
from qemuwrap.supervisor import EXIT_DESTROYED, EXIT_ERROR, Supervisor

DEFAULT_EMULATOR = "/usr/bin/qemu-system-x86_64"


class Options:
    """What the CLI passes down (a plain bag: argparse's namespace fits)."""

    def __init__(self, state_dir: str | None = None, shutdown_timeout: float = 30.0,
                 transient: bool = False, console: bool = False, caps: str | None = None):
        self.state_dir = state_dir
        self.shutdown_timeout = shutdown_timeout
        self.transient = transient
        self.console = console
        self.caps = caps


def _caps(dom: Domain, caps_file: str | None):
    if caps_file:
        return capabilities.Capabilities.from_file(caps_file)
    return capabilities.load(dom.devices.emulator or DEFAULT_EMULATOR)


def prepare(path: str, opts: Options) -> tuple[bytes, Domain, GuestDir]:
    """Read, schema-check and model the definition; find the guest's state directory."""
    from qemuwrap.conf import schema

    data, dom = load(path)
    schema.validate_bytes(data, path)
    return data, dom, GuestDir(dom.name, opts.state_dir)


def _refuse_if_running(gdir: GuestDir) -> None:
    record = gdir.read_record()
    proc = gdir.qemu_process(record)
    if proc is not None:
        raise GuestBusyError(f"guest '{gdir.name}' is running without a supervisor "
                             f"(QEMU pid {proc.pid}); use 'qemuwrap adopt {gdir.name}'")


def run(path: str, opts: Options, *, ready_fd: int | None = None,
        restore_from: str | None = None, loadvm: str | None = None) -> int:
    """Start the guest and supervise it in this process until it ends.

    ``restore_from``: continue from a save file; ``loadvm``: from an internal snapshot.
    Both re-execute the guest's past, so the guest gets a new generation ID (when its
    definition requests one), saved into the definition once QEMU has loaded the state.
    """
    try:
        data, dom, gdir = prepare(path, opts)
        gdir.lock()
    except QemuwrapError as exc:
        _report_ready(ready_fd, error=str(exc))
        raise
    try:
        _refuse_if_running(gdir)
        previous = dom.genid_str
        incoming_uri = None
        if restore_from is not None:
            incoming_uri = _check_save_file(restore_from, dom)
        if (restore_from or loadvm) and dom.genid_requested:
            dom.genid = guid.generate_v4()
        elif dom.genid_generated:
            _save_or_transient(path, data, dom, opts)
        caps = _caps(dom, opts.caps)
        cmd = build_command(dom, caps, gdir.path, incoming=incoming_uri is not None,
                            loadvm=loadvm)
        restart_cmd = build_command(dom, caps, gdir.path)
        if ready_fd is not None:  # background: our own messages go to the state directory
            logfd = os.open(gdir.file("supervisor.log"),
                            os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            os.dup2(logfd, 1)
            os.dup2(logfd, 2)
            os.close(logfd)
        sup = Supervisor(dom, gdir, cmd, source=os.path.abspath(path), restart_cmd=restart_cmd,
                         shutdown_timeout=opts.shutdown_timeout, console=opts.console)
        after_load = None
        if (restore_from or loadvm) and dom.genid_requested:
            def after_load():
                _save_or_transient(path, data, dom, opts)
                sup.log(f"genid: {previous} -> {dom.genid_str}")
        return asyncio.run(_launch_and_run(sup, gdir, ready_fd, incoming=incoming_uri,
                                           after_load=after_load, previous=previous))
    except QemuwrapError as exc:
        _report_ready(ready_fd, error=str(exc))
        raise
    finally:
        gdir.unlock()


def _save_or_transient(path: str, data: bytes, dom: Domain, opts: Options) -> None:
    """Save the domain's genid into its file; without --transient, failing to is fatal."""
    try:
        save_genid(path, data, dom)
    except DefinitionWriteError as exc:
        if not opts.transient:
            raise DefinitionWriteError(f"{exc}; use --transient to start without "
                                       "saving it") from None


def _check_save_file(save_path: str, dom: Domain) -> str:
    """The seed's ABI-stability check of ``dom`` against the saved definition; the URI
    QEMU loads the state from."""
    meta, offset = savefile.read(save_path)
    saved = loads(meta["xml"])
    check_abi_stability(saved, dom)
    return f"exec:tail -c +{offset + 1} {shell_quote(os.path.abspath(save_path))}"


async def _launch_and_run(sup: Supervisor, gdir: GuestDir, ready_fd: int | None, *,
                          incoming: str | None = None, after_load=None,
                          previous: str | None = None) -> int:
    try:
        await sup.launch(incoming=incoming, after_load=after_load)
    except QemuwrapError:
        gdir.remove()  # a failed start leaves nothing behind
        raise
    record = gdir.read_record()
    _report_ready(ready_fd, record={**record, "previous_genid": previous})
    return await sup.run()


def _report_ready(fd: int | None, *, error: str | None = None, record: dict | None = None):
    """Tell a waiting ``start`` how the launch went (one JSON line on a pipe)."""
    if fd is None:
        return
    msg = {"error": error} if error else {"record": record}
    try:
        os.write(fd, json.dumps(msg).encode() + b"\n")
        os.close(fd)
    except OSError:
        pass


def start(path: str, opts: Options, *, restore_from: str | None = None,
          loadvm: str | None = None) -> dict:
    """Run the supervisor in the background; return once the guest runs (or failed)."""
    r, w = os.pipe()
    argv = [sys.executable, "-m", "qemuwrap", "run", os.path.abspath(path),
            "--ready-fd", str(w), "--shutdown-timeout", str(opts.shutdown_timeout)]
    if opts.state_dir:
        argv += ["--state-dir", os.path.abspath(opts.state_dir)]
    if opts.transient:
        argv.append("--transient")
    if opts.caps:
        argv += ["--caps", os.path.abspath(opts.caps)]
    if restore_from:
        argv += ["--restore-from", os.path.abspath(restore_from)]
    if loadvm:
        argv += ["--loadvm", loadvm]
    subprocess.Popen(argv, pass_fds=(w,), start_new_session=True, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        line = f.readline()
    if not line:
        raise QemuwrapError("the supervisor ended before the guest was started")
    msg = json.loads(line)
    if msg.get("error"):
        raise QemuwrapError(msg["error"])
    return msg["record"]


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
        cmd = build_command(dom, _caps(dom, opts.caps), gdir.path)
        if cmd.argv != record["argv"]:
            raise QemuwrapError(f"guest '{name}': the running QEMU's command differs from "
                                "its live definition; not adopting it")
        sup = Supervisor(dom, gdir, cmd, source=record.get("source"),
                         shutdown_timeout=opts.shutdown_timeout)

        async def go():
            await sup.adopt(record)
            return await sup.run()

        return asyncio.run(go())
    finally:
        gdir.unlock()


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
    qmp.command(record["control_socket"], "system_powerdown")
    if _wait_gone(proc, opts.shutdown_timeout):
        gdir.clear_runtime()
        return f"guest '{name}' is shut down"
    _destroy_unsupervised(gdir, record, proc)
    return f"guest '{name}' did not power off within {opts.shutdown_timeout:g} s; forced off"


def destroy(name: str, opts: Options) -> str:
    """Stop QEMU now (QMP quit; SIGKILL if it does not answer)."""
    gdir, record, proc = _running(name, opts)
    supervised = gdir.supervised()
    try:
        qmp.command(record["control_socket"], "quit", timeout=5)
    except QemuwrapError:
        proc.kill()
    if not _wait_gone(proc, 10):
        proc.kill()
        _wait_gone(proc, 5)
    if not supervised:
        gdir.clear_runtime()
    else:
        sup = _supervisor(record)
        if sup is not None:
            _wait_gone(sup, 10)
    return f"guest '{name}' destroyed"


def _destroy_unsupervised(gdir: GuestDir, record: dict, proc) -> None:
    try:
        qmp.command(record["control_socket"], "quit", timeout=5)
    except QemuwrapError:
        pass
    if not _wait_gone(proc, 10):
        proc.kill()
        _wait_gone(proc, 5)
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
        st = qmp.command(record["control_socket"], "query-status", timeout=2)
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


__all__ = ["EXIT_DESTROYED", "EXIT_ERROR", "Options", "adopt", "destroy", "list_guests",
           "run", "shutdown", "start", "status"]
