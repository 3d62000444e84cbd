"""Following a Jenkins build from its queue item to its result through python-jenkins and the stand-in:
results, vanished or renumbered queue items found by queue id or BRIDGE_DELIVERY, cancelled items."""
from __future__ import annotations

import pytest

from bridge.errors import TargetUnavailable
from bridge.jobs import Run
from bridge.targets.jenkins import JenkinsTarget
from helpers.jenkins_target import API, PARAMS, SHA, job, queued_detail, standin, target  # noqa: F401  (fixture)


def test_follow_queue_to_build_to_success(standin):
    standin.build_duration = 30
    t = target(standin)
    run = t.start(job(API))
    assert run.state == "queued"
    assert t.follow(run) == run                      # still in the quiet period

    standin.advance(5)
    started = t.follow(run)
    assert started == Run(remote_id="team/api/build#1", url=f"{standin.url}job/team/job/api/job/build/1/",
                          state="started",
                          detail=queued_detail(standin, 1, BRIDGE_DELIVERY="d-1-7", number=1))
    assert t.follow(started) == started              # result is null while building

    standin.advance(30)
    done = t.follow(started)
    assert done.state == "succeeded" and done.detail["result"] == "SUCCESS"
    assert t.follow(done) == done


@pytest.mark.parametrize("result", ["FAILURE", "UNSTABLE", "ABORTED", "NOT_BUILT"])
def test_follow_other_results_fail_with_the_result(standin, result):
    standin.add_job("flaky", PARAMS, result=result)
    t = target(standin)
    run = t.start(job({"job": "flaky", "delay": 0}))
    done = t.follow(run)
    assert done.state == "failed" and done.detail["result"] == result


def test_failed_build(standin):
    t = target(standin)
    done = t.follow(t.start(job({"job": "broken", "delay": 0})))
    assert (done.state, done.detail["result"], done.remote_id) == ("failed", "FAILURE", "broken#1")


def test_vanished_queue_item_is_found_among_the_builds_by_its_queue_id(standin):
    standin.build_duration = 600                     # still building when the item vanishes
    t = target(standin)
    run = t.start(job(API, id=1))
    t.start(job(API, id=2))                          # another build of the same job, queue item 2
    standin.advance(5 + 300 + 1)                     # both started, then left the queue 5 min ago
    assert 1 not in standin.queue                    # Jenkins forgot the item
    building = t.follow(run)
    assert building == Run(remote_id="team/api/build#1", url=f"{standin.url}job/team/job/api/job/build/1/",
                           state="started",
                          detail=queued_detail(standin, 1, BRIDGE_DELIVERY="d-1-1", number=1))
    assert any(r.path == "/queue/item/1/api/json" and r.status == 404 for r in standin.requests)
    [look] = [r for r in standin.requests if r.path == "/job/team/job/api/job/build/api/json"]
    assert "queueId" in look.query["tree"][0]        # one call lists the newest builds
    standin.advance(600)
    assert t.follow(building).state == "succeeded"


def test_vanished_queue_item_is_found_by_its_bridge_delivery(standin):
    t = target(standin)
    run = t.start(job(API))
    standin.advance(5 + 300 + 1)
    # A restored or migrated Jenkins numbers its queue anew: the build's queueId is no longer ours.
    standin.job("team/api/build").builds[1].queue_id = 77
    done = t.follow(run)
    assert (done.state, done.remote_id, done.detail["result"]) == ("succeeded", "team/api/build#1", "SUCCESS")


def restart_queue_numbering(standin) -> None:
    """Jenkins restored or migrated: it numbers its queue from 1 again."""
    standin._next_queue_id = 1


def test_after_queue_renumbering_our_build_is_found_by_bridge_delivery_not_queue_id(standin):
    t = target(standin)
    run = t.start(job(API, id=1))                    # queue item 1 -> build #1
    standin.advance(5 + 300 + 1)
    restart_queue_numbering(standin)
    t.start(job(API, id=2))                          # another push: queue item 1 again -> build #2
    standin.advance(5 + 300 + 1)
    assert [b.queue_id for b in standin.job("team/api/build").builds.values()] == [1, 1]
    done = t.follow(run)
    assert (done.remote_id, done.detail["BRIDGE_DELIVERY"]) == ("team/api/build#1", "d-1-1")

    del standin.job("team/api/build").builds[1]      # ours is gone: #2 has our queue id, not ours
    lost = t.follow(run)
    assert (lost.state, lost.detail["lost_looks"]) == ("queued", 1)


def test_a_queue_item_of_another_request_under_our_number_is_not_ours(standin):
    t = target(standin)
    run = t.start(job(API, id=1))
    standin.advance(5 + 300 + 1)                     # item 1 left and vanished; build #1 is ours
    restart_queue_numbering(standin)
    t.start(job(API, id=2))                          # queue item 1 again, waiting
    standin.advance(5)                               # ... and now build #2
    found = t.follow(run)
    assert (found.remote_id, found.state) == ("team/api/build#1", "succeeded")


def test_vanished_queue_item_of_a_job_without_bridge_delivery_is_found_by_queue_id(standin):
    t = target(standin)
    run = t.start(job({"job": "old", "parameters": {"GIT_SHA": SHA}}))   # Jenkins drops ours
    standin.advance(5 + 300 + 1)
    assert t.follow(run).remote_id == "old#1"


def test_vanished_queue_item_without_a_build_ends_unknown_after_a_few_looks(standin):
    t = target(standin)
    run = t.start(job(API))
    standin.advance(5 + 300 + 1)
    del standin.job("team/api/build").builds[1]      # discarded (or never made) meanwhile
    first = t.follow(run)
    assert (first.state, first.detail["lost_looks"]) == ("queued", 1)
    second = t.follow(first)
    assert (second.state, second.detail["lost_looks"]) == ("queued", 2)
    done = t.follow(second)
    assert (done.state, done.detail["result"]) == ("failed", "UNKNOWN")
    assert done.detail["reason"] == ("queue item 1 vanished and no build of it is among the "
                                     "job's newest 50")


def test_cancelled_queue_item_fails(standin):
    t = target(standin)
    run = t.start(job(API))
    standin.cancel(1)
    done = t.follow(run)
    assert done.state == "failed" and done.detail["result"] == "CANCELLED"


def test_trouble_while_watching_the_queue_does_not_fail_the_start(standin):
    def sleep(seconds):
        standin.advance(seconds)
        standin.restarting = True                    # Jenkins goes away after accepting the build

    standin.quiet_period = 1.0                       # short enough for the adapter to wait
    t = JenkinsTarget("ci", {"kind": "jenkins", "url": standin.url, "user": "bridge",
                             "token": standin.users["bridge"]}, sleep=sleep, now=standin.now)
    run = t.start(job(API))
    assert run.state == "queued" and run.detail["queue_id"] == 1
    with pytest.raises(TargetUnavailable):
        t.follow(run)
