"""Companions: host processes and resources that live exactly as long as a guest's QEMU.

Later work (swtpm, virtiofsd, dnsmasq, tap devices) plugs in here. A companion is a
subclass of :class:`Companion` given to the :class:`~qemuwrap.runtime.machine.Machine`:

1. ``start(gdir)`` runs before QEMU, in the order the companions were given; it starts
   the process (``process.spawn``: own session, log in the state directory) and returns
   its :class:`~qemuwrap.runtime.record.Companion` entry at once, so the guest record
   holds it before anything can fail.
2. ``wait_ready(deadline)`` waits (with that deadline) until QEMU can use it (its
   socket listens, its device exists).
3. ``stop(entry, timeout)`` runs after QEMU ended, in reverse order; the default asks
   the process to end (SIGTERM) and kills it (SIGKILL) after ``timeout``, then removes
   the entry's ``cleanup`` paths.

If the supervisor itself was killed, ``destroy``/``adopt`` call :func:`clean_up` on the
recorded entries: the process is recognised by pid and create time before it is
signalled, so a reused pid is never hit.
"""

from __future__ import annotations

import os
import signal
import time

from qemuwrap import process
from qemuwrap.runtime.record import Companion as Entry


class Companion:
    """Base class of a companion; see the module's docstring for the protocol."""

    kind = "companion"

    def start(self, gdir) -> Entry:
        raise NotImplementedError

    def wait_ready(self, deadline: float) -> None:
        """Default: ready as soon as started."""

    def stop(self, entry: Entry, timeout: float = 5.0) -> None:
        clean_up(entry, timeout)


def clean_up(entry: Entry, timeout: float = 5.0) -> None:
    """End a recorded companion's process (if it is still that process) and remove its
    paths."""
    proc = entry.proc
    if proc is not None and process.is_alive(proc.pid, proc.create_time):
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        if not process.wait_gone(proc.pid, proc.create_time, timeout):
            process.kill_hard(proc.pid, proc.create_time, max(deadline - time.monotonic(), 1))
        process.reap_if_child(proc.pid)
    for path in entry.cleanup:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
