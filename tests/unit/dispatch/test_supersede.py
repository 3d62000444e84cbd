"""The dispatcher's side of superseded jobs (dispatch/supersede.py): a build is cancelled on its
target, a target that cannot cancel or fails to is logged and the job stays superseded, and a job
cancelled while its start ran here is recognised once."""
from __future__ import annotations

import logging

from bridge.dispatch.supersede import Superseder
from bridge.errors import TargetUnavailable
from bridge.jobs import Job, Run
from bridge.store.admission import Superseded
from bridge.targets.base import Target
from helpers.dispatch import store  # noqa: F401  (fixture)


class Cancels(Target):
    kind = "cancels"

    def __init__(self, answer=True):
        super().__init__("ci", {})
        self.answer = answer
        self.cancelled: list[Run] = []

    def cancel(self, run):
        if isinstance(self.answer, BaseException):
            raise self.answer
        self.cancelled.append(run)
        return self.answer


def superseded(job_id=1, run=Run("ci#7", url="http://ci/7/"), here=False) -> Superseded:
    return Superseded(job=Job(id=job_id, delivery="d-1", rule="build", target="ci", request={}),
                      by=9, by_sha="a" * 40, run=run, running_here=here)


def handle(store, target, entries, caplog):
    s = Superseder(store, now=lambda: 1000.0, log=logging.getLogger("test.supersede"))
    with caplog.at_level(logging.INFO, logger="test.supersede"):
        s.handle(entries, {"ci": target}, None)
    return s, [r.getMessage() for r in caplog.records]


def test_a_superseded_build_is_cancelled_on_its_target(store, caplog):
    target = Cancels()
    _, said = handle(store, target, [superseded(), superseded(2, run=None)], caplog)
    assert target.cancelled == [Run("ci#7", url="http://ci/7/")]
    assert said == [f"job 1 (build -> ci): superseded by job 9 ({'a' * 12}): build http://ci/7/ cancelled",
                    f"job 2 (build -> ci): superseded by job 9 ({'a' * 12}) before it started"]


def test_a_target_that_cannot_cancel_or_fails_to_is_logged(store, caplog):
    _, said = handle(store, Cancels(answer=False), [superseded()], caplog)
    assert said == [f"job 1 (build -> ci): superseded by job 9 ({'a' * 12}); target 'ci' cannot "
                    "cancel its build, which runs on"]
    caplog.clear()
    _, said = handle(store, Cancels(answer=TargetUnavailable("Jenkins is restarting")), [superseded()], caplog)
    assert said == [f"job 1 (build -> ci): superseded by job 9 ({'a' * 12}), but its build could not be "
                    "cancelled: Jenkins is restarting"]


def test_a_start_cancelled_here_is_recognised_once(store, caplog):
    s, _ = handle(store, Cancels(), [superseded(run=Run("", detail={"job_id": 1}), here=True)], caplog)
    assert s.was_cancelled(1) is True
    assert s.was_cancelled(1) is False
