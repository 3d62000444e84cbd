"""Dispatcher outcomes: an outcome is logged only once the store has it, and exec exit codes a
target names as transient (`retry_on_exit`) go through the normal backoff.

Input: a real SQLite store (made unwritable with chattr +i for the outage), real exec commands,
an injected clock. Output: assertions on log lines, job states and attempt histories.
"""
from __future__ import annotations

import contextlib
import logging
import os

import pytest

from bridge.config import RetryPolicy
from bridge.dispatcher import Dispatcher
from bridge.errors import StoreUnavailable
from bridge.store import Store
from bridge.targets.base import Run, Target
from bridge.targets.exec import ExecTarget
from support_store import Clock, new_delivery, new_job, unwritable

POLICY = RetryPolicy(initial=5.0, maximum=600.0, give_up_after=3600.0)


class Finishes(Target):
    """A target whose build succeeds inside start(); `on_start` runs first (to begin an outage)."""
    kind = "finishes"

    def __init__(self, on_start=lambda: None):
        super().__init__("ci", {})
        self.on_start = on_start

    def start(self, job):
        self.on_start()
        return Run(remote_id=f"r-{job.id}", url=f"http://ci/{job.id}", state="succeeded")


class StateAtLogTime(logging.Handler):
    """Records each dispatcher line with the job's state in the database at that moment."""

    def __init__(self, store: Store, delivery: str):
        super().__init__()
        self.store, self.delivery = store, delivery
        self.lines: list[tuple[str, str]] = []

    def emit(self, record):
        try:
            state = self.store.get_delivery(self.delivery)["jobs"][0]["state"]
        except StoreUnavailable:        # during the outage even a read may fail
            state = "unreadable"
        self.lines.append((record.getMessage(), state))


def test_succeeded_is_logged_only_after_the_store_recorded_it(tmp_path):
    """The database is unwritable (chattr +i: a real fault) when the build's result comes; the
    dispatcher retries the write until it is back. While it cannot record, no line may say the
    build succeeded; the line comes once the row says so."""
    if os.geteuid() != 0:
        pytest.skip("an unwritable file an open connection cannot write needs chattr +i (root)")
    store = Store.open(f"sqlite:///{tmp_path}/bridge.db", durability="normal")
    handler = StateAtLogTime(store, "d-1")
    log = logging.getLogger("test.bridge.dispatcher.outcomes")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    try:
        store.ingest(new_delivery("d-1", received_at=1000.0), [new_job()])
        clock = Clock(1000.0)
        with contextlib.ExitStack() as outage:
            def begin_outage():
                outage.enter_context(unwritable(tmp_path / "bridge.db"))
                outage.enter_context(unwritable(tmp_path / "bridge.db-wal"))

            def sleep(seconds):
                clock.sleep(seconds)
                if len(clock.sleeps) >= 3:     # three failed writes later: writable again
                    outage.close()

            dispatcher = Dispatcher(store, {"ci": Finishes(begin_outage)}, {"ci": POLICY}, owner="d1",
                                    now=clock, sleep=sleep, rand=lambda: 0.5, log=log)
            assert dispatcher.run_once() == 1
        said = [(m, state) for m, state in handler.lines if "succeeded" in m]
        assert said, handler.lines
        assert all(state == "succeeded" for _, state in said), handler.lines
        messages = [m for m, _ in handler.lines]
        assert any("cannot record the result yet" in m for m in messages)
        assert messages.index(said[0][0]) > max(i for i, m in enumerate(messages)
                                                 if "cannot record the result yet" in m)
    finally:
        log.removeHandler(handler)
        store.close()
