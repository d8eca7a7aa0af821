"""The supervisor's work between QEMU coming up and the guest running: the definition's
CPU pinning and schedulers on QEMU's threads, then the QMP commands libvirt runs at that
point (link states, the balloon's statistics period), in libvirt's order
(qemuProcessLaunch).

The launcher computed all of it from the definition (``qemu/afterstart.py``); here it is
only applied, for a fresh start, a restore and a restart alike.  Any failure is the
launch's: :class:`AfterStartError`, one line naming the element.
"""

from __future__ import annotations

from collections.abc import Callable

from qemuwrap.errors import QemuwrapError
from qemuwrap.runtime import pinning


class AfterStartError(QemuwrapError):
    """Something the definition asks of the running QEMU could not be done."""


def run(machine, after_start: dict | None, log: Callable[[str], None]) -> None:
    """Apply ``after_start`` (``{"pinning": [...], "qmp": [[command, args, element]]}``)
    to the paused QEMU of ``machine``."""
    if not after_start:
        return
    spec = after_start.get("pinning") or []
    done = []
    if spec:
        pid = machine.pid
        vcpus = pinning.vcpu_threads(machine.execute("query-cpus-fast"))
        iothreads = (pinning.iothread_threads(machine.execute("query-iothreads"))
                     if any(e["thread"] == pinning.IOTHREAD for e in spec) else {})
        try:
            items = pinning.tunings(spec, vcpus, iothreads, pinning.process_threads(pid),
                                    pid)
        except pinning.PinningError as exc:
            raise AfterStartError(str(exc)) from None
        problems = pinning.apply(items)
        if problems:
            raise AfterStartError(problems[0])
        done.append(f"{len(items)} threads pinned or scheduled")
    for command, args, element in after_start.get("qmp") or []:
        try:
            machine.execute(command, args)
        except QemuwrapError as exc:
            raise AfterStartError(f"{element}: {exc}") from None
        done.append(f"{command} ({element})")
    if done:
        log(f"after start: {'; '.join(done)}")
