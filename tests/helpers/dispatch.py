"""Parts of the dispatcher tests: a recording target (a fake of an external system), a retry policy, a
real SQLite store fixture, a dispatcher on an injected clock, and reading a job back."""
from __future__ import annotations

import os
import threading
import time

import pytest

from bridge.dispatch.loop import Dispatcher
from bridge.jobs import Run
from bridge.policies import RetryPolicy
from bridge.store import Store
from bridge.targets.base import Target
from helpers.store import Clock


class Recorder(Target):
    """A fake CI server: records every job; answers from a script of outcomes, then 'started'."""
    kind = "recorder"

    def __init__(self, name="ci", outcomes=(), delay=0.0):
        super().__init__(name, {})
        self.outcomes = list(outcomes)
        self.delay = delay
        self.jobs = []
        self._lock = threading.Lock()

    def start(self, job):
        with self._lock:
            self.jobs.append(job)
            outcome = self.outcomes.pop(0) if self.outcomes else None
        if self.delay:
            time.sleep(self.delay)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome or Run(remote_id=f"build-{job.id}", url=f"http://ci/{job.id}", state="started")


POLICY = RetryPolicy(initial=5.0, maximum=600.0, give_up_after=86400.0)


@pytest.fixture
def store(tmp_path):
    s = Store.open(f"sqlite:///{tmp_path}/bridge.db")
    yield s
    s.close()


def make(store, target, clock=None, **kwargs):
    clock = clock or Clock()
    kwargs.setdefault("rand", lambda: 0.5)
    return Dispatcher(store, {target.name: target}, {target.name: POLICY}, owner="d1",
                      now=clock, sleep=clock.sleep, **kwargs)


def job(store, delivery_id="d-1"):
    return store.get_delivery(delivery_id)["jobs"][0]


def _needs_root():
    if os.geteuid() != 0:
        pytest.skip("an unwritable file an open connection cannot write needs chattr +i (root)")
