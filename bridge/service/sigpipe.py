"""Process stage: signals turned into ordinary events for `cibridge serve` and `cibridge dispatch`.

Input: the signals to catch. Output: their numbers, in order, read from a pipe by normal code (a
thread or the supervisor's loop). The handler itself does nothing: the interpreter's C-level
handler writes the signal's number to the pipe (signal.set_wakeup_fd), so a signal repeated or
arriving inside another handler never runs our code (locks, logging) inside itself.
"""
from __future__ import annotations

import os
import select
import signal
import threading
from collections.abc import Callable, Iterable


def _ignore_here(signum, frame):
    """The Python-level handler: nothing. The wakeup fd already carries the signal."""


class SignalPipe:
    """Catch `signals` (from the main thread); `read()` or `serve()` hands them to normal code."""

    def __init__(self, signals: Iterable[int]):
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.signals = tuple(signals)
        # A full pipe (64 KiB of unread signals) drops the byte without a warning: the
        # same signals are then pending anyway, and one more adds nothing.
        self._old_fd = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        for sig in self.signals:
            signal.signal(sig, _ignore_here)

    def read(self, timeout: float | None) -> list[int]:
        """The signals received since the last read, waiting up to `timeout` seconds for one."""
        ready, _, _ = select.select([self._r], [], [], timeout)
        if not ready:
            return []
        try:
            data = os.read(self._r, 4096)
        except BlockingIOError:
            return []
        return [n for n in data if n in self.signals]

    def serve(self, handle: Callable[[int], None], *, name: str = "signals") -> threading.Thread:
        """A daemon thread calling handle(signum) for each signal, in order, outside any handler."""
        def loop():
            while True:
                for signum in self.read(None):
                    handle(signum)

        thread = threading.Thread(target=loop, name=name, daemon=True)
        thread.start()
        return thread
