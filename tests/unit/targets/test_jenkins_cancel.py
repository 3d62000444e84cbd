"""Cancelling superseded Jenkins builds through python-jenkins and the stand-in: a queue item is
cancelled (POST /queue/cancelItem?id=N, 204), a running build stopped (POST /job/.../N/stop, 302),
an item that became a build meanwhile is stopped as a build, an ended one is left alone."""
from __future__ import annotations

from bridge.targets.base import Target
from bridge.jobs import Run
from helpers.jenkins_target import API, job, standin, target  # noqa: F401  (fixture)

NOW = {**API, "delay": 0}                            # no quiet period: the build starts at once


def test_a_queued_item_is_cancelled_on_jenkins(standin):
    t = target(standin, queue_wait=0)
    run = t.start(job(API))
    assert run.state == "queued"
    assert t.cancel(run) is True
    cancel = [r for r in standin.posts() if r.path == "/queue/cancelItem"]
    assert [(r.query["id"], r.status) for r in cancel] == [([str(run.detail["queue_id"])], 204)]
    standin.advance(10)                              # its quiet period passes: no build comes
    assert standin.builds() == []
    assert t.follow(run).detail["result"] == "CANCELLED"


def test_a_running_build_is_stopped_and_ends_aborted(standin):
    standin.build_duration = 60
    t = target(standin)
    run = t.start(job(NOW))
    assert run.state == "started"
    assert t.cancel(run) is True
    stop = [r for r in standin.posts() if r.path.endswith("/stop")]
    assert [(r.path, r.status) for r in stop] == [(f"/job/team/job/api/job/build/{run.detail['number']}/stop", 302)]
    done = t.follow(run)
    assert (done.state, done.detail["result"]) == ("failed", "ABORTED")
    assert standin.peak_running() == 1


def test_an_item_that_became_a_build_is_stopped_as_a_build(standin):
    standin.build_duration = 60
    t = target(standin, queue_wait=0)
    run = t.start(job(API))
    standin.advance(6)                               # the item leaves the queue: cancelItem 404s
    assert t.cancel(run) is True
    answers = [(r.path.rsplit("/", 1)[-1], r.status) for r in standin.posts()
               if r.path.endswith(("/stop", "/cancelItem"))]
    assert answers == [("cancelItem", 404), ("stop", 302)]
    assert standin.builds()[0].result == "ABORTED"


def test_a_finished_build_is_left_as_it_ended(standin):
    t = target(standin)
    run = t.start(job(NOW))
    assert run.state == "started"
    standin.advance(1)
    assert t.cancel(run) is True
    assert standin.builds()[0].result == "SUCCESS"


def test_a_target_kind_without_cancel_says_so():
    assert Target("x", {}).cancel(Run(remote_id="r")) is False
