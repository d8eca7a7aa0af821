"""The supervisor's side of the guest agent: it alone talks to its guest's agent socket.

QEMU's socket chardev serves one client at a time (a second one waits, unanswered, in
the listen backlog), and the agent answers whoever asked last: so requests are queued
and run one after another, each on a connection of its own with its own deadline
(counted from when it arrived, waiting in the queue included).

They run in a worker thread, not on the supervisor's event loop: an agent that never
answers (a guest without ``qemu-ga``) costs the requester its deadline, while the loop
goes on serving ``status``, ``destroy``, signals and QEMU's events. The worker touches
nothing but the agent socket; each result goes back to the loop through a pipe, and its
callback runs there.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Callable
from typing import Any

from qemuwrap.errors import QemuwrapError
from qemuwrap.guestagent import AgentError, GuestAgent
from qemuwrap.runtime.loop import Loop, Timer

#: How a request ends: the reply (``{"return": ...}``, or None for a command that does
#: not answer on success) or the error.
Done = Callable[[dict | None, QemuwrapError | None], None]

#: libvirt's words for a definition without a usable agent channel.
NO_CHANNEL = ("the guest has no guest agent channel: the definition needs <channel "
              "type='unix'> (QEMU listening) with <target type='virtio' "
              "name='org.qemu.guest_agent.0'/>")
#: The longest deadline a request may ask for (guest-fsfreeze-freeze may flush a lot).
MAX_TIMEOUT = 3600.0


class NoAgentChannel(QemuwrapError):
    """The definition has no agent channel qemuwrap can reach."""


def check_timeout(value: Any) -> float:
    """A request's deadline in seconds, checked (the control socket is a trust boundary
    only for its owner, but a typo must still be one line)."""
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not 0 < value <= MAX_TIMEOUT:
        raise QemuwrapError(f"the guest agent timeout must be a number of seconds above 0 "
                            f"and at most {MAX_TIMEOUT:g}")
    return float(value)


class _Job:
    __slots__ = ("request", "deadline", "timeout", "done", "reply", "error", "timer")

    def __init__(self, request: dict, timeout: float, done: Done):
        self.request = request
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.done = done
        self.reply: dict | None = None
        self.error: QemuwrapError | None = None
        self.timer: Timer | None = None

    def busy(self) -> AgentError:
        return AgentError(f"guest agent: {self.request['execute']}: not sent within "
                          f"{self.timeout:g} s: the agent was busy with an earlier command")


class AgentWorker:
    """Runs agent commands one at a time off ``loop``; ``submit`` returns at once and
    ``done(reply, error)`` is called from the loop when the command ended."""

    def __init__(self, loop: Loop, path: str | None, log: Callable[[str], None]):
        import threading

        self.path = path
        self._loop = loop
        self._log = log
        self._lock = threading.Lock()
        self._queue: collections.deque[_Job] = collections.deque()
        self._finished: collections.deque[_Job] = collections.deque()
        self._busy = False
        self._closed = False
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        loop.add_reader(self._wake_r, self._deliver)

    def submit(self, request: dict, timeout: float, done: Done) -> None:
        """Queue ``request`` (a checked agent command); NoAgentChannel at once if the
        guest has no channel."""
        import threading

        if self.path is None:
            raise NoAgentChannel(NO_CHANNEL)
        job = _Job(request, timeout, done)
        with self._lock:
            if self._closed:
                raise QemuwrapError("the guest is shutting down")
            self._queue.append(job)
            if self._busy:  # its deadline runs while it waits its turn
                job.timer = self._loop.call_later(timeout, lambda: self._expire(job))
                return
            self._busy = True
        threading.Thread(target=self._work, name="qemuwrap-agent", daemon=True).start()

    def _expire(self, job: _Job) -> None:
        """A queued request whose deadline passed before its turn came."""
        with self._lock:
            if job not in self._queue:
                return  # it runs (its exchange has the same deadline), or ran
            self._queue.remove(job)
        job.error = job.busy()
        self._call(job)

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._queue or self._closed:
                    self._busy = False
                    return
                job = self._queue.popleft()
            self._run(job)
            with self._lock:
                if self._closed:
                    self._busy = False
                    return
                self._finished.append(job)
                try:
                    os.write(self._wake_w, b"\0")
                except BlockingIOError:
                    pass  # the loop has a wake-up pending already

    def _run(self, job: _Job) -> None:
        command = job.request["execute"]
        remaining = job.deadline - time.monotonic()
        if remaining <= 0:
            job.error = job.busy()
            return
        assert self.path is not None
        try:
            with GuestAgent(self.path, remaining) as agent:
                job.reply = agent.execute_json(job.request, timeout=job.timeout,
                                               deadline=job.deadline)
        except QemuwrapError as exc:
            job.error = exc
        except Exception as exc:  # a bug here must not leave the requester waiting
            job.error = AgentError(f"guest agent: {command}: {type(exc).__name__}: {exc}")

    def _deliver(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass
        while True:
            with self._lock:
                if not self._finished:
                    return
                job = self._finished.popleft()
            if job.timer is not None:
                job.timer.cancel()
            self._call(job)

    def _call(self, job: _Job) -> None:
        try:
            job.done(job.reply, job.error)
        except Exception as exc:  # a bug in a callback must not end the guest
            self._log(f"guest agent: {job.request['execute']}: after the reply: "
                      f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        """Stop delivering; a command still running ends at its deadline, unheard (its
        socket closes with QEMU anyway)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.clear()
            self._loop.remove_reader(self._wake_r)
            os.close(self._wake_r)
            os.close(self._wake_w)


# --- what the supervisor does with its agent -------------------------------------------------

#: guest-shutdown as libvirt's default agent mode sends it.
SHUTDOWN = {"execute": "guest-shutdown", "arguments": {"mode": "powerdown"}}
FREEZE = {"execute": "guest-fsfreeze-freeze"}
THAW = {"execute": "guest-fsfreeze-thaw"}
FREEZE_STATUS = {"execute": "guest-fsfreeze-status"}
#: A freeze syncs every file system first: it may take a while on a busy guest.
FREEZE_TIMEOUT = 60.0
THAW_TIMEOUT = 10.0
#: After a revert: how long the agent of the guest just resumed gets to say it is frozen.
REVERT_CHECK_TIMEOUT = 10.0


def quiesced(worker: AgentWorker, action: Callable[[Done], None], done: Done,
             log: Callable[[str], None]) -> None:
    """Freeze the guest's file systems, run ``action`` (a snapshot on the loop, which
    calls back ``then(result, error)`` when QEMU is done), thaw them: also when the
    freeze or the action failed. ``done(result, error)``: the action's result with
    ``"quiesced"`` (how many file systems were frozen), or why not. NoAgentChannel at
    once when there is no channel (nothing was done)."""

    def thaw(result: dict | None, failure: QemuwrapError | None) -> None:
        def thawed(reply: dict | None, error: QemuwrapError | None) -> None:
            if error is None:
                log(f"guest file systems thawed: {(reply or {}).get('return')}")
                done(result if failure is None else None, failure)
                return
            log(f"guest-fsfreeze-thaw failed: {error}")
            if failure is not None:
                done(None, failure)
                return
            done(None, QemuwrapError(
                f"the snapshot was taken, but the guest's file systems could not be thawed "
                f"({error}): they may still be frozen; thaw them with "
                "'{\"execute\":\"guest-fsfreeze-thaw\"}' through 'qemuwrap agent'"))

        try:
            worker.submit(THAW, THAW_TIMEOUT, thawed)
        except QemuwrapError as exc:
            thawed(None, exc)

    def frozen(reply: dict | None, error: QemuwrapError | None) -> None:
        if error is not None:
            log(f"guest-fsfreeze-freeze failed ({error}); thawing")
            thaw(None, QemuwrapError(f"cannot quiesce the guest: {error}; no snapshot taken"))
            return
        count = (reply or {}).get("return")
        log(f"guest file systems frozen: {count}")

        def acted(result: dict | None, failure: QemuwrapError | None) -> None:
            if failure is not None:
                log(f"snapshot failed ({failure}); thawing")
                thaw(None, failure)
            else:
                thaw({**(result or {}), "quiesced": count}, None)

        action(acted)

    worker.submit(FREEZE, FREEZE_TIMEOUT, frozen)


def thaw_if_frozen(worker: AgentWorker, log: Callable[[str], None]) -> None:
    """A snapshot taken quiesced holds the guest as it was then: frozen. After a revert
    to one, thaw what its agent says is frozen (in the background; logged)."""

    def status(reply: dict | None, error: QemuwrapError | None) -> None:
        if error is not None or (reply or {}).get("return") != "frozen":
            return
        log("the guest's file systems were frozen in the snapshot (taken quiesced); thawing")
        try:
            worker.submit(THAW, THAW_TIMEOUT, lambda reply, error: log(
                f"guest-fsfreeze-thaw failed: {error}" if error is not None
                else f"guest file systems thawed: {(reply or {}).get('return')}"))
        except QemuwrapError as exc:  # the guest is going away
            log(f"guest-fsfreeze-thaw not sent: {exc}")

    worker.submit(FREEZE_STATUS, REVERT_CHECK_TIMEOUT, status)
