"""status, list, shutdown, destroy, suspend, resume.

Through the supervisor when one lives (it owns QEMU and says what really happened);
otherwise straight to QEMU's second monitor, with the same deadlines, and the cleanup a
supervisor would have done (runtime files, companions).
"""

from __future__ import annotations

import time

from qemuwrap import process
from qemuwrap.errors import QemuwrapError, printable
from qemuwrap.runtime import control, policy
from qemuwrap.runtime.companions import clean_up
from qemuwrap.runtime.guestdir import GuestDir, UnknownGuestError, all_guests
from qemuwrap.runtime.qmp import QMP
from qemuwrap.runtime.record import GuestRecord

#: How long a supervisor gets to finish after its QEMU ended.
SUPERVISOR_EXIT_TIMEOUT = 15.0


class NotRunningError(QemuwrapError):
    """The guest exists but does not run."""


def guest(name: str, state_dir: str | None) -> GuestDir:
    """The guest's directory; UnknownGuestError (exit 1) if it has none here."""
    gdir = GuestDir(name, state_dir)
    if not gdir.exists():
        raise UnknownGuestError(f"no guest '{printable(name)}' here (state root "
                                f"{printable(gdir.root)})")
    return gdir


def running(name: str, state_dir: str | None) -> tuple[GuestDir, GuestRecord]:
    gdir = guest(name, state_dir)
    record = gdir.running()
    if record is None:
        raise NotRunningError(f"guest '{printable(name)}' is not running")
    return gdir, record


def supervisor_alive(gdir: GuestDir, record: GuestRecord) -> bool:
    sup = record.supervisor
    return gdir.supervised() and sup is not None and process.is_alive(sup.pid,
                                                                      sup.create_time)


def ask(gdir: GuestDir, msg: dict, timeout: float) -> dict:
    return control.request(gdir.file(control.SOCKET), msg, timeout=timeout)


def status(name: str, state_dir: str | None, *, ask_agent: bool = True) -> dict:
    """What is known of a guest: its record, checked against the kernel, and the state
    its supervisor (or QEMU) reports; with ``ask_agent``, whether its guest agent
    answers and the addresses it reports (``list`` does not ask: seconds per guest)."""
    gdir = guest(name, state_dir)
    record = gdir.read_record()
    out: dict = {
        "name": name, "state": "shut off", "qemu_pid": None, "supervisor_pid": None,
        "supervised": False, "genid": record.genid if record else None,
        "uuid": record.uuid if record else None, "state_dir": gdir.path,
        "source": record.source if record else None, "console": None, "vnc": None,
        "qmp_socket": None, "control_socket": None, "supervisor_socket": None,
        "uptime": None, "companions": [],
        "agent_socket": None, "agent": None, "addresses": None,
    }
    if record is None or gdir.running(record) is None:
        return out
    assert record.qemu is not None
    supervised = supervisor_alive(gdir, record)
    out.update(qemu_pid=record.qemu.pid, supervised=supervised,
               supervisor_pid=record.supervisor.pid if supervised and record.supervisor
               else None,
               console=record.console, vnc=record.vnc,
               qmp_socket=gdir.file("qmp.sock"), control_socket=gdir.file("control.sock"),
               supervisor_socket=gdir.file(control.SOCKET) if supervised else None,
               uptime=round(time.time() - record.started, 1),
               companions=[{"kind": c.kind, "id": c.id,
                            "pid": c.proc.pid if c.proc else None}
                           for c in record.companions])
    out["state"], live = _live_state(gdir, record, supervised)
    if ask_agent:
        from qemuwrap.ops import agent

        out.update(agent.status(gdir, record, supervised, live))
    return out


def _live_state(gdir: GuestDir, record: GuestRecord,
                supervised: bool) -> tuple[str, dict | None]:
    """The state, and the supervisor's status reply (None: it gave none). The
    supervisor's answer while one lives (QEMU is its alone); QEMU's own only when none
    does."""
    if supervised:
        try:
            reply = ask(gdir, {"request": "status"}, 5.0)
            return reply["state"], reply
        except control.NoSupervisor:
            if supervisor_alive(gdir, record):
                return "starting", None  # launching: it serves once QEMU runs
        except control.ControlError:
            if supervisor_alive(gdir, record):
                return "not responding (its supervisor does not answer)", None
    assert record.qemu is not None
    if process.state_letter(record.qemu.pid) in ("T", "t"):
        return "stopped (QEMU process is stopped: SIGSTOP)", None
    try:
        from qemuwrap.runtime import qmp

        state = qmp.command(gdir.file("control.sock"), "query-status", timeout=2)["status"]
    except QemuwrapError:
        return "not responding", None
    return {"prelaunch": "starting", "inmigrate": "restoring"}.get(state, state), None


def list_guests(state_dir: str | None) -> list[dict]:
    out = []
    for gdir in all_guests(state_dir):
        try:
            if gdir.running() is not None:
                out.append(status(gdir.name, state_dir, ask_agent=False))
        except QemuwrapError:
            continue
    return out


def wait_supervisor_gone(gdir: GuestDir, record: GuestRecord, timeout: float) -> None:
    sup = record.supervisor
    if sup is not None:
        process.wait_gone(sup.pid, sup.create_time, timeout)


def shutdown(name: str, state_dir: str | None, timeout: float, mode: str = "acpi") -> dict:
    """Power-off asked by ACPI (``mode`` acpi) or the guest agent (agent); forced after
    ``timeout``. The result says which it was:
    ``{"name", "outcome": "acpi"|"agent"|"forced"|"crashed", "exit_status"}``."""
    gdir, record = running(name, state_dir)
    if supervisor_alive(gdir, record):
        try:
            reply = ask(gdir, {"request": "shutdown", "timeout": timeout, "mode": mode},
                        timeout + 30)
        except control.NoSupervisor:
            if supervisor_alive(gdir, record):  # launching: QEMU is its alone
                raise QemuwrapError(f"guest '{printable(name)}' is starting; try again "
                                    "once it runs") from None
            # it went away meanwhile: do its work
        else:
            wait_supervisor_gone(gdir, record, SUPERVISOR_EXIT_TIMEOUT)
            return {"name": name, "outcome": reply["outcome"],
                    "exit_status": _outcome_status(reply["outcome"])}
    if mode not in ("acpi", "agent"):
        raise QemuwrapError(f"unsupported shutdown mode '{printable(mode)}' "
                            "(supported: 'acpi', 'agent')")
    assert record.qemu is not None
    q = record.qemu
    if mode == "agent":
        from qemuwrap.ops import agent

        agent.ask_shutdown(gdir, timeout)
    else:
        try:
            from qemuwrap.runtime import qmp

            qmp.command(gdir.file("control.sock"), "system_powerdown",
                        timeout=min(timeout, 5) or 1)
        except QemuwrapError:
            pass
    if process.wait_gone(q.pid, q.create_time, timeout):
        outcome = mode
    else:
        _force_off(gdir, record)
        outcome = "forced"
    _clean_unsupervised(gdir, record)
    return {"name": name, "outcome": outcome, "exit_status": _outcome_status(outcome)}


def _outcome_status(outcome: str) -> int:
    return {"acpi": 0, "agent": 0, "saved": 0, "forced": policy.EXIT_DESTROYED,
            "destroyed": 0}.get(outcome, policy.EXIT_CRASHED)


def destroy(name: str, state_dir: str | None) -> dict:
    """Stop QEMU now: through the supervisor (QMP quit, then SIGKILL), or directly; a
    QEMU that answers nothing (stopped, hung) is killed either way."""
    gdir, record = running(name, state_dir)
    assert record.qemu is not None
    q = record.qemu
    if supervisor_alive(gdir, record):
        try:
            ask(gdir, {"request": "destroy"}, 30)
        except control.ControlError:
            process.kill_hard(q.pid, q.create_time)  # the supervisor then sees it end
        if not process.wait_gone(q.pid, q.create_time, 5):
            process.kill_hard(q.pid, q.create_time)
        wait_supervisor_gone(gdir, record, SUPERVISOR_EXIT_TIMEOUT)
        if not supervisor_alive(gdir, record):
            _clean_unsupervised(gdir, record)
    else:
        _force_off(gdir, record)
        _clean_unsupervised(gdir, record)
    return {"name": name, "outcome": "destroyed", "exit_status": 0}


def _force_off(gdir: GuestDir, record: GuestRecord) -> None:
    assert record.qemu is not None
    q = record.qemu
    if process.state_letter(q.pid) not in ("T", "t", None):
        try:
            from qemuwrap.runtime import qmp

            qmp.command(gdir.file("control.sock"), "quit", timeout=3)
        except QemuwrapError:
            pass
        if process.wait_gone(q.pid, q.create_time, 3):
            return
    process.kill_hard(q.pid, q.create_time)


def _clean_unsupervised(gdir: GuestDir, record: GuestRecord) -> None:
    """What a supervisor does once its QEMU ended: companions stopped, runtime files
    removed (the logs stay)."""
    for entry in reversed(record.companions):
        clean_up(entry)
    gdir.clear_runtime()


def suspend(name: str, state_dir: str | None) -> dict:
    return _pause(name, state_dir, "suspend", "stop")


def resume(name: str, state_dir: str | None) -> dict:
    return _pause(name, state_dir, "resume", "cont")


def _pause(name: str, state_dir: str | None, request: str, command: str) -> dict:
    gdir, record = running(name, state_dir)
    if supervisor_alive(gdir, record):
        reply = ask(gdir, {"request": request}, 10)
        return {"name": name, "state": reply["state"]}
    qmp = QMP.connect(gdir.file("control.sock"), timeout=5)
    try:
        if command == "cont":
            state = qmp.execute("query-status")["status"]
            if state not in ("paused", "running"):
                raise QemuwrapError(f"the guest is {state}; only a paused guest can be "
                                    "resumed")
        qmp.execute(command)
    finally:
        qmp.close()
    return {"name": name, "state": "paused" if command == "stop" else "running"}
