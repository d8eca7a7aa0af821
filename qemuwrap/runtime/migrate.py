"""Saving a guest's state into a file descriptor, over QMP, and undoing a save that did
not finish: :class:`SaveJob` for the supervisor (driven by its loop, never blocking
it), and the blocking :func:`begin`/:func:`undo` for the tools when no
supervisor lives.

The guest is paused for the save; if anything fails (or the client goes away) before
the state is safely stored, the save is cancelled and a guest that was running runs on.
Bandwidth is unlimited, as libvirt sets it for saves to a file (QEMU's default caps a
migration at 128 MiB/s).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from qemuwrap.errors import QemuwrapError
from qemuwrap.runtime.qmp import QMP

#: QEMU's ceiling for max-bandwidth (bytes/s): "unlimited" as libvirt sets it.
UNLIMITED = (1 << 63) - 1
FDNAME = "qemuwrap-save"


class SaveError(QemuwrapError):
    """The state could not be saved; the guest runs on as it was."""


def begin(qmp: QMP, fd: int) -> bool:
    """Pause the guest and start writing its state into ``fd``; True if it was running.
    ``fd`` is handed to QEMU (the caller may close its own copy afterwards)."""
    status = qmp.execute("query-status")["status"]
    if status not in ("running", "paused"):
        raise SaveError(f"the guest is {status}; only a running or paused guest can be saved")
    was_running = status == "running"
    if was_running:
        qmp.execute("stop")
    try:
        qmp.execute("migrate-set-capabilities", {
            "capabilities": [{"capability": "events", "state": True}]})
        qmp.execute("migrate-set-parameters", {"max-bandwidth": UNLIMITED})
        qmp.execute("getfd", {"fdname": FDNAME}, fds=[fd])
        qmp.execute("migrate", {"uri": f"fd:{FDNAME}"})
    except BaseException:
        undo(qmp, was_running)
        raise
    return was_running


def undo(qmp: QMP, was_running: bool) -> None:
    """Cancel a save in flight (or undo a completed one) and let a guest that was running
    run on. After a completed migration QEMU is in ``postmigrate``; ``cont`` resumes it
    (and takes back its disks)."""
    try:
        info = qmp.execute("query-migrate")
        if info.get("status") in ("setup", "active", "pre-switchover", "device"):
            qmp.execute("migrate_cancel")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                state = qmp.execute("query-migrate").get("status")
                if state not in ("setup", "active", "pre-switchover", "device", "cancelling"):
                    break
                time.sleep(0.01)
    except QemuwrapError:
        pass
    if was_running:
        qmp.execute("cont")


#: Migration states in which the stream is still being written (migrate_cancel applies).
IN_FLIGHT = ("setup", "active", "pre-switchover", "device", "cancelling")
#: How long a cancelled migration gets to end before the guest is resumed anyway.
CANCEL_TIMEOUT = 10.0
#: Each QMP exchange of a save (its stream aside).
STEP_TIMEOUT = 5.0


class SaveJob:
    """A save driven by the supervisor's loop: nothing here blocks, so the supervisor
    goes on answering ``status``, ``destroy`` and signals while QEMU writes.

    Steps: ``query-status``, events on, bandwidth unlimited (sent together); then
    ``stop``, ``getfd``, ``migrate`` (together); then the MIGRATION events (fed to
    :meth:`on_migration`) until "completed", within ``timeout`` seconds; then the
    client has ``commit_timeout`` seconds to say its file is whole (:meth:`commit`).
    :meth:`abandon` (the client went away or gave up) and any failure undo the save:
    a migration in flight is cancelled (its end awaited, with a deadline) and a guest
    that was running runs on. ``report(msg)`` speaks to the client; ``finished()``
    says the job is over (committed, undone, or QEMU ended). Each QMP reply is acted
    on only in the state its command was sent in (``migrate``'s refusal also once
    getfd's reply moved the job on): a late reply to a step of a save being undone
    is dropped.
    """

    kind = "saving"

    def __init__(self, qmp: QMP, later, fd: int, *, timeout: float, commit_timeout: float,
                 report: Callable[[dict], None], finished: Callable[[], None],
                 log: Callable[[str], None]):
        self.qmp = qmp
        self.later = later
        self.fd: int | None = fd
        self.timeout = timeout
        self.commit_timeout = commit_timeout
        self.report = report
        self.finished = finished
        self.log = log
        #: starting, migrating, completed (waiting for the commit), undoing, resuming,
        #: done
        self.state = "starting"
        self.stopped = False  # we paused the guest: an undo resumes it
        self.status: str | None = None  # the last MIGRATION status QEMU sent
        self._timer = None
        self._why = ""
        self._guest_status: str | None = None  # query-status's answer
        self._migrate_sent = False

    # -- steps -----------------------------------------------------------------------
    def start(self) -> None:
        """Two round trips, not six: QMP runs a monitor's commands in order, so the
        steps are sent in two batches — what to ask and set (status, events,
        bandwidth), then, once the status is known, what to do (stop, getfd, migrate).
        Each reply is still checked; any failure undoes the save."""
        self._call("query-status", None, self._have_status)
        self._call("migrate-set-capabilities",
                   {"capabilities": [{"capability": "events", "state": True}]},
                   lambda _r: None)
        self._call("migrate-set-parameters", {"max-bandwidth": UNLIMITED}, self._configured)

    def _call(self, command: str, args: dict | None, then: Callable, *,
              fds: list[int] | None = None,
              on_error: Callable[[QemuwrapError], None] | None = None) -> None:
        sent_in = self.state

        def done(result, error: QemuwrapError | None) -> None:
            if self.state != sent_in:
                return  # the job moved on (undone, QEMU ended) meanwhile
            if error is not None:
                (on_error or self._failed)(error)
            else:
                then(result)

        self.qmp.call(command, args, later=self.later, timeout=STEP_TIMEOUT, done=done,
                      fds=fds)

    def _have_status(self, result: dict) -> None:
        self._guest_status = result["status"]

    def _configured(self, _result) -> None:
        status = self._guest_status
        if status not in ("running", "paused"):
            self._end(f"the guest is {status}; only a running or paused guest can be saved")
            return
        if status == "running":
            self.stopped = True  # from now: QMP runs commands in order, cont comes after
            self._call("stop", None, lambda _r: None)
        self._call("getfd", {"fdname": FDNAME}, self._handed_over,
                   fds=[self.fd] if self.fd is not None else None)
        self._migrate_sent = True

        def refused(result, error: QemuwrapError | None) -> None:
            # Sent before getfd's reply moved the job to "migrating": its refusal counts
            # in either state (no MIGRATION event would ever end the wait).
            if error is not None and self.state in ("starting", "migrating"):
                self._failed(error)

        self.qmp.call("migrate", {"uri": f"fd:{FDNAME}"}, later=self.later,
                      timeout=STEP_TIMEOUT, done=refused)

    def _handed_over(self, _result) -> None:
        self._close_fd()  # QEMU holds its own copy
        self.state = "migrating"
        self._timer = self.later(self.timeout, lambda: self._undo(
            f"the save did not finish within {self.timeout:g} s"))
        self.report({"event": "started"})
        if self.status is not None:  # an event that came before getfd's reply
            self.on_migration(self.status)

    def on_migration(self, status: str | None) -> None:
        """A MIGRATION event from QEMU."""
        self.status = status
        if self.state == "migrating":
            if status == "completed":
                self._cancel_timer()
                self.state = "completed"
                self._timer = self.later(self.commit_timeout, lambda: self._undo(
                    "save abandoned: its client did not store the state in time"))
                self.report({"event": "completed"})
            elif status in ("failed", "cancelled"):
                self._call("query-migrate", None,
                           lambda info: self._undo("saving failed: " + (
                               info.get("error-desc") or str(status))),
                           on_error=lambda _e: self._undo(f"saving failed: {status}"))
        elif self.state == "undoing" and status not in IN_FLIGHT:
            self._resume()

    def commit(self) -> bool:
        """The client stored the state: the job is done (QEMU may end). False if the
        stream is not complete."""
        if self.state != "completed":
            return False
        self._cancel_timer()
        self.state = "done"
        self.finished()
        return True

    # -- failures --------------------------------------------------------------------
    def abandon(self, why: str) -> None:
        """The client went away or gave up: undo the save, unless it is over."""
        self._undo(why)

    def qemu_ended(self) -> None:
        """QEMU is gone (killed, crashed, destroyed): nothing left to undo."""
        if self.state != "done":
            self._end("QEMU ended during the save")

    def _failed(self, error: QemuwrapError) -> None:
        self._undo(str(error))

    def _undo(self, why: str) -> None:
        """Cancel the migration if one may be in flight (its end is a MIGRATION event,
        or what query-migrate says after the cancel, or the deadline), then resume a
        guest that was running."""
        if self.state in ("done", "undoing", "resuming"):
            return
        self._cancel_timer()
        self.state = "undoing"
        self._why = why
        if self.status in IN_FLIGHT or (self._migrate_sent and self.status is None):
            self._timer = self.later(CANCEL_TIMEOUT, self._resume)

            def cancelled(_result) -> None:
                self._call("query-migrate", None, lambda info: None if info.get(
                    "status") in IN_FLIGHT else self._resume(), on_error=lambda _e: None)

            self._call("migrate_cancel", None, cancelled,
                       on_error=lambda exc: self.log(f"migrate_cancel: {exc}"))
        else:
            self._resume()

    def _resume(self) -> None:
        if self.state != "undoing":
            return
        self._cancel_timer()
        why = self._why
        if not self.stopped:
            self._end(f"{why}; the guest is as it was")
            return
        self.state = "resuming"

        def not_resumed(exc: QemuwrapError) -> None:
            self._end(f"{why}; the guest could not be resumed ({exc})")

        self._call("cont", None, lambda _r: self._end(f"{why}; the guest runs on"),
                   on_error=not_resumed)

    def _end(self, why: str) -> None:
        self._close_fd()
        self._cancel_timer()
        self.state = "done"
        self.log(why)
        self.report({"error": why})
        self.finished()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _close_fd(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
