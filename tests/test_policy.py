"""Lifecycle policy by table: what each QMP event makes the supervisor do, and which
exit status (and shutdown outcome) each way of ending gives. No QEMU needed."""

from __future__ import annotations

import pytest

from qemuwrap.runtime.policy import (
    EXIT_CRASHED,
    EXIT_DESTROYED,
    EXIT_POWEROFF,
    Action,
    Ending,
    on_panic,
    on_shutdown,
    shutdown_outcome,
    verdict,
)


@pytest.mark.parametrize("reason, on_poweroff, stopping, action", [
    ("guest-shutdown", "destroy", False, Action.NOTHING),  # -action shutdown=poweroff
    ("guest-shutdown", "restart", False, Action.RESET),
    ("guest-shutdown", "preserve", False, Action.PRESERVE),
    ("guest-shutdown", "restart", True, Action.QUIT),  # we asked it to power off
    ("guest-shutdown", "preserve", True, Action.QUIT),
    ("guest-reset", "restart", False, Action.QUIT),  # on_reboot=destroy, paused
    ("guest-reset", "preserve", False, Action.QUIT),
    ("host-qmp-quit", "restart", False, Action.NOTHING),
    ("host-signal", "preserve", True, Action.NOTHING),
    ("host-qmp-system-reset", "restart", False, Action.QUIT),
])
def test_shutdown_event(reason, on_poweroff, stopping, action):
    assert on_shutdown(reason, on_poweroff, stopping) is action


@pytest.mark.parametrize("on_crash, action", [("restart", Action.RESET),
                                              ("destroy", Action.NOTHING),
                                              ("preserve", Action.NOTHING)])
def test_panic_event(on_crash, action):
    assert on_panic(on_crash) is action


@pytest.mark.parametrize("ending, on_crash, status, outcome, why", [
    (Ending(reason="guest-shutdown", returncode=0), "destroy", EXIT_POWEROFF, "acpi",
     "guest powered off"),
    (Ending(reason="guest-shutdown", returncode=0, stopping=True), "restart", EXIT_POWEROFF,
     "acpi", "guest powered off"),
    (Ending(reason="guest-reset", returncode=0), "destroy", EXIT_POWEROFF, "acpi",
     "on_reboot=destroy"),
    (Ending(reason="guest-shutdown", returncode=0, stopping=True, forced=True), "destroy",
     EXIT_DESTROYED, "forced", "by force"),
    (Ending(reason=None, returncode=-9, stopping=True, forced=True), "restart",
     EXIT_DESTROYED, "forced", "by force"),
    (Ending(reason="host-qmp-quit", returncode=0), "restart", EXIT_DESTROYED, "forced",
     "from the host"),
    (Ending(reason="host-signal", returncode=0), "destroy", EXIT_DESTROYED, "forced",
     "from the host"),
    (Ending(reason="host-qmp-quit", returncode=0, saved=True), "destroy", EXIT_POWEROFF,
     "forced", "saved"),
    (Ending(returncode=-9), "destroy", EXIT_CRASHED, "crashed", "signal 9 (SIGKILL)"),
    (Ending(returncode=-9), "restart", None, "crashed", "on_crash=restart"),
    (Ending(returncode=-9, stopping=True), "restart", EXIT_CRASHED, "crashed", "signal 9"),
    (Ending(returncode=1), "destroy", EXIT_CRASHED, "crashed", "status 1"),
    (Ending(reason="guest-panicked", returncode=1, panicked=True), "destroy", EXIT_CRASHED,
     "crashed", "panicked"),
    (Ending(reason="guest-shutdown", returncode=0, panicked=True), "destroy", EXIT_CRASHED,
     "crashed", "panicked"),
    (Ending(returncode=None), "destroy", EXIT_CRASHED, "crashed", "without shutting down"),
])
def test_verdict(ending, on_crash, status, outcome, why):
    got, text = verdict(ending, on_crash)
    assert got == status
    assert why in text
    if not ending.saved:
        assert shutdown_outcome(ending) == outcome
