"""Saving a guest's state into a file descriptor, over QMP, and undoing a save that did
not finish. Used by the supervisor, and by the tools when no supervisor lives.

The guest is paused for the save; if anything fails (or the client goes away) before
the state is safely stored, the save is cancelled and a guest that was running runs on.
Bandwidth is unlimited, as libvirt sets it for saves to a file (QEMU's default caps a
migration at 128 MiB/s).
"""

from __future__ import annotations

import time

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


def wait(qmp: QMP, timeout: float, stop_fds: list[int]) -> str:
    """Wait for the migration's end: "completed", or SaveError with QEMU's reason.
    Any of ``stop_fds`` becoming readable (QEMU's pidfd: it died; the client's socket:
    it went away or said abort) ends the wait with SaveError."""
    deadline = time.monotonic() + timeout
    while True:
        event = qmp.wait_event(("MIGRATION",), max(deadline - time.monotonic(), 0),
                               stop_fds)
        if event is None:
            if time.monotonic() >= deadline:
                raise SaveError(f"the save did not finish within {timeout:g} s")
            raise SaveError("save abandoned (its client went away, or QEMU ended)")
        status = event.get("data", {}).get("status")
        if status == "completed":
            return status
        if status in ("failed", "cancelled"):
            try:
                info = qmp.execute("query-migrate")
            except QemuwrapError:
                info = {}
            raise SaveError("saving failed: " + (info.get("error-desc") or status))


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
