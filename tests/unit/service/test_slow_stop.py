"""A stopping web worker that still holds connections says, once, which kinds they are."""
from __future__ import annotations

from collections import deque

from bridge.config.model import Settings
from bridge.service.webworker import SLOW_STOP, worker_class


class Lines:
    def __init__(self):
        self.lines: list[str] = []

    def warning(self, msg, *args):
        self.lines.append(msg % args)


def _stopping_worker(**conns):
    worker = object.__new__(worker_class(Settings()))
    worker.alive = False
    worker.stopping_since, worker.stop_reported = None, False
    worker.reading = dict.fromkeys(range(conns.get("reading", 0)))
    worker.lingering = dict.fromkeys(range(conns.get("lingering", 0)))
    worker.keepalived_conns = deque(range(conns.get("kept", 0)))
    worker.pending_conns = deque()
    worker.nr_conns = sum(conns.values())
    worker.log = Lines()
    return worker


def test_the_kinds_still_open_are_named_once_after_slow_stop_seconds():
    worker = _stopping_worker(reading=1, kept=2, threads=3)
    worker.report_slow_stop(100.0)                      # the loop first finds it stopping
    worker.report_slow_stop(100.0 + SLOW_STOP - 0.5)
    assert worker.log.lines == []
    worker.report_slow_stop(100.0 + SLOW_STOP)
    worker.report_slow_stop(100.0 + SLOW_STOP + 5)
    assert worker.log.lines == [f"stopping: 6 connection(s) still open after {SLOW_STOP:g}s: "
                                "1 being read, 0 closing, 2 kept alive, 0 waiting, 3 in a thread"]


def test_a_worker_with_nothing_open_says_nothing():
    worker = _stopping_worker()
    worker.report_slow_stop(100.0)
    worker.report_slow_stop(100.0 + SLOW_STOP + 1)
    assert worker.log.lines == []
