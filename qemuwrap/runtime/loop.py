"""The supervisor's event loop: file descriptors, timers and signals over ``selectors``.

A supervisor waits on a handful of things (QEMU's pidfd, its QMP socket, the control
socket and its clients, SIGTERM/SIGINT, a shutdown deadline); this is the part of
asyncio it needs. asyncio itself is not used for its cost: see ``runtime/qmp.py``.
"""

from __future__ import annotations

import heapq
import itertools
import os
import selectors
import signal
import time
from collections.abc import Callable


class Timer:
    __slots__ = ("when", "callback", "cancelled")

    def __init__(self, when: float, callback: Callable[[], None]):
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Loop:
    """Callbacks on readable fds, timers and signals; :meth:`run_until` drives them."""

    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._signals: list[int] = []
        self._signal_handlers: dict[int, Callable[[int], None]] = {}
        self._previous: dict[int, object] = {}
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._sel.register(self._wake_r, selectors.EVENT_READ, self._drain_wakeup)

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        self._sel.register(fd, selectors.EVENT_READ, callback)

    def remove_reader(self, fd: int) -> None:
        try:
            self._sel.unregister(fd)
        except (KeyError, ValueError):
            pass

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(time.monotonic() + delay, callback)
        heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        return timer

    def add_signal_handler(self, sig: int, callback: Callable[[int], None]) -> None:
        """``callback(sig)`` runs from the loop (not inside the signal handler)."""
        self._signal_handlers[sig] = callback
        self._previous.setdefault(sig, signal.getsignal(sig))
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        signal.signal(sig, lambda signum, _frame: self._signals.append(signum))

    def deliver(self, sig: int) -> None:
        """Handle ``sig`` as if it had just arrived (one that came before the loop)."""
        self._signals.append(sig)

    def run_until(self, done: Callable[[], bool], timeout: float | None = None) -> bool:
        """Run callbacks until ``done()``; False if ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not done():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return False
            wait = None if deadline is None else deadline - now
            while self._timers and self._timers[0][2].cancelled:
                heapq.heappop(self._timers)
            if self._timers:
                until = max(self._timers[0][0] - now, 0)
                wait = until if wait is None else min(wait, until)
            if self._signals:
                wait = 0
            for key, _mask in self._sel.select(wait):
                key.data()
            self._run_signals()
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _when, _seq, timer = heapq.heappop(self._timers)
                if not timer.cancelled:
                    timer.callback()
        return True

    def _drain_wakeup(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _run_signals(self) -> None:
        while self._signals:
            sig = self._signals.pop(0)
            handler = self._signal_handlers.get(sig)
            if handler is not None:
                handler(sig)

    def close(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]
        if self._signal_handlers:
            signal.set_wakeup_fd(-1)
        self._sel.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
