"""Lifecycle policy as pure functions: what a QEMU event makes the supervisor do, and
which exit status a run ends with. No I/O here, so every case is tested by table
(tests/test_policy.py) without booting a guest.
"""

from __future__ import annotations

import enum
import signal

EXIT_POWEROFF = 0  # the guest powered off (or rebooted with on_reboot=destroy), or was saved
EXIT_ERROR = 1  # QEMU did not start, or the genid check failed
EXIT_CRASHED = 3  # QEMU died (signal, failure exit) or the guest panicked
EXIT_DESTROYED = 4  # stopped by force: destroy, shutdown timeout, QEMU told to quit

#: SHUTDOWN reasons that mean "someone on the host stopped QEMU".
HOST_REASONS = ("host-qmp-quit", "host-signal", "host-ui")
#: SHUTDOWN reasons of a reboot that -action reboot=shutdown turned into a shutdown.
REBOOT_REASONS = ("guest-reset", "host-qmp-system-reset")


class Action(enum.Enum):
    """What the supervisor does about an event."""

    NOTHING = "nothing"  # QEMU acts by itself (its -action), or there is nothing to do
    QUIT = "quit"  # end QEMU (the guest is off for good)
    RESET = "reset"  # system_reset + cont: the same QEMU boots again (same genid)
    PRESERVE = "preserve"  # keep QEMU, the guest stays stopped


def on_shutdown(reason: str | None, on_poweroff: str, stopping: bool) -> Action:
    """A SHUTDOWN event. QEMU runs with ``-action shutdown=poweroff`` for
    on_poweroff=destroy (it exits by itself) and ``shutdown=pause`` otherwise."""
    if on_poweroff == "destroy" or reason in HOST_REASONS:
        return Action.NOTHING
    if stopping or reason in REBOOT_REASONS:
        return Action.QUIT  # we asked it to power off, or on_reboot=destroy
    if on_poweroff == "restart":
        return Action.RESET
    return Action.PRESERVE


def on_panic(on_crash: str) -> Action:
    """A GUEST_PANICKED event (QEMU's ``-action panic=`` did the rest)."""
    return Action.RESET if on_crash == "restart" else Action.NOTHING


class Ending:
    """How one QEMU ended, as the supervisor saw it."""

    def __init__(self, *, returncode: int | None = None, reason: str | None = None,
                 stopping: bool = False, forced: bool = False, saved: bool = False,
                 panicked: bool = False, asked: str = "acpi"):
        self.returncode = returncode  # our child's exit code (negative: signal)
        self.reason = reason  # the last SHUTDOWN reason
        self.stopping = stopping  # we asked the guest to power off
        self.asked = asked  # how: "acpi" (the power button) or "agent" (guest-shutdown)
        self.forced = forced  # we ended QEMU by force (destroy, shutdown timeout)
        self.saved = saved  # QEMU ended because its state was saved to a file
        self.panicked = panicked

    def __repr__(self) -> str:
        return f"Ending({vars(self)})"


def verdict(end: Ending, on_crash: str) -> tuple[int | None, str]:
    """The exit status a run ends with (None: on_crash=restart, start QEMU again) and
    the line that says why."""
    if end.saved:
        return EXIT_POWEROFF, "guest saved"
    if end.forced:
        return EXIT_DESTROYED, "QEMU stopped by force"
    if end.reason in HOST_REASONS:
        return EXIT_DESTROYED, f"QEMU stopped from the host ({end.reason})"
    clean = end.returncode in (0, None) and not end.panicked
    if clean and end.reason == "guest-shutdown":
        return EXIT_POWEROFF, "guest powered off"
    if clean and end.reason in REBOOT_REASONS:
        return EXIT_POWEROFF, "guest rebooted; on_reboot=destroy"
    if end.panicked:
        why = "the guest panicked"
    elif end.returncode is not None and end.returncode < 0:
        sig = -end.returncode
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else "?"
        why = f"QEMU was killed by signal {sig} ({name})"
    elif end.returncode:
        why = f"QEMU exited with status {end.returncode}"
    else:
        why = "QEMU ended without shutting down"
    if on_crash == "restart" and not end.stopping:
        return None, why + "; on_crash=restart"
    return EXIT_CRASHED, why


def shutdown_outcome(end: Ending) -> str:
    """What a ``shutdown`` request reports: ``acpi`` or ``agent`` (the guest powered
    itself off, asked by the power button or by its guest agent), ``forced`` (it did not
    within the timeout, or the host ended QEMU) or ``crashed``."""
    status, _why = verdict(end, "destroy")
    if status == EXIT_POWEROFF and not end.saved:
        return end.asked
    return "crashed" if status == EXIT_CRASHED else "forced"
