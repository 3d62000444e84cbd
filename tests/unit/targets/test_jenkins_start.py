"""Starting a Jenkins build through python-jenkins against the stand-in: folder paths, parameters, crumb
and auth, delays, build tokens, unique parameters and merged queue items, and jobs refused at start."""
from __future__ import annotations

import pytest

from bridge.errors import TargetRejected, TargetUnavailable
from bridge.jobs import Run
from bridge.targets import target_class
from bridge.targets.jenkins import JenkinsTarget
from helpers.jenkins_target import (API, PARAMS, SHA, job, messages, queued_detail, standin,
                                    target)  # noqa: F401  (fixture)


def test_registry_names_the_jenkins_kind():
    assert target_class("jenkins") is JenkinsTarget


def test_build_request_uses_folder_path_parameters_crumb_and_auth(standin):
    before = standin.now()
    run = target(standin).start(job(API))

    # The quiet period (5 s) outlasts the bounded wait (2 s): the queue item is recorded after
    # one look, without waiting. Its link is the job's page (the queue item's page 404s in the UI).
    assert run == Run(remote_id="team/api/build#queue/1", url=f"{standin.url}job/team/job/api/job/build/",
                      state="queued", detail=queued_detail(standin, 1, BRIDGE_DELIVERY="d-1-7"))
    [post] = standin.posts()
    assert post.path == "/job/team/job/api/job/build/buildWithParameters"
    assert post.query == {"GIT_SHA": [SHA], "BRANCH": ["main"], "BRIDGE_DELIVERY": ["d-1-7"]}
    assert post.status == 201
    assert post.headers["jenkins-crumb"] == standin._crumbs["bridge"]
    assert post.headers["authorization"].startswith("Basic ")
    assert standin.requests[0].path == "/crumbIssuer/api/json"
    polls = [r for r in standin.requests if r.path == "/queue/item/1/api/json"]
    assert len(polls) == 1 and standin.now() - before < 1.0     # the adapter never slept
    assert standin.queue[1].params == {"GIT_SHA": SHA, "BRANCH": "main", "BRIDGE_DELIVERY": "d-1-7"}


def test_build_that_starts_within_the_wait_is_recorded_with_its_number(standin):
    standin.quiet_period = 1.0                       # shorter than the wait: worth waiting for
    run = target(standin).start(job(API))
    assert run == Run(remote_id="team/api/build#1", url=f"{standin.url}job/team/job/api/job/build/1/",
                      state="started", detail=queued_detail(standin, 1, BRIDGE_DELIVERY="d-1-7", number=1))
    polls = [r for r in standin.requests if r.path == "/queue/item/1/api/json"]
    assert len(polls) >= 2


def test_delay_overrides_the_quiet_period_and_is_no_parameter(standin):
    run = target(standin).start(job({**API, "delay": 0}))
    assert run.state == "started" and run.detail["number"] == 1
    [post] = standin.posts()
    assert post.query["delay"] == ["0sec"]
    assert "delay" not in standin.queue[1].params


def test_job_without_parameters_and_unique_false_uses_build(standin):
    run = target(standin).start(job({"job": "plain", "unique": False}))
    assert run.state == "queued" and run.url == f"{standin.url}job/plain/"
    [post] = standin.posts()
    assert post.path == "/job/plain/build" and post.query == {}


def test_delay_on_a_job_without_parameters_goes_to_build_not_build_with_parameters(standin):
    # Jenkins refuses buildWithParameters for a job without parameters: a delay must not make one.
    standin.add_job("plain-tokened", build_token="b7-build-token-9f")
    t = target(standin, build_token="b7-build-token-9f")
    assert t.start(job({"job": "plain", "unique": False, "delay": 0})).state == "started"
    assert t.start(job({"job": "plain-tokened", "unique": False, "delay": "0sec"})).state == "started"
    assert [(p.path, p.query, p.status) for p in standin.posts()] == [
        ("/job/plain/build", {"token": ["b7-build-token-9f"], "delay": ["0sec"]}, 201),
        ("/job/plain-tokened/build", {"token": ["b7-build-token-9f"], "delay": ["0sec"]}, 201)]


def test_build_token_travels_in_the_query_and_never_in_errors(standin):
    standin.add_job("tokened", PARAMS, build_token="b7-build-token-9f")
    t = target(standin, build_token="b7-build-token-9f")
    assert t.start(job({"job": "tokened"})).state == "queued"
    assert standin.posts()[0].query["token"] == ["b7-build-token-9f"]

    standin.restarting = True
    with pytest.raises(TargetUnavailable) as info:
        t.start(job({"job": "tokened"}, id=8))
    text = messages(info.value)
    assert "b7-build-token-9f" not in text and standin.users["bridge"] not in text
    assert "?" not in str(info.value)


def test_wrong_build_token_is_refused(standin):
    standin.add_job("tokened", PARAMS, build_token="right")
    with pytest.raises(TargetRejected) as info:
        target(standin, build_token="wrong").start(job({"job": "tokened"}))
    assert str(info.value) == ("Jenkins refused user 'bridge' on target 'ci' "
                               "(HTTP 403: Invalid token provided)")


def test_unique_parameter_keeps_two_pushes_apart(standin):
    t = target(standin)
    first = t.start(job(API, id=1))
    second = t.start(job(API, id=2))
    assert (first.detail["queue_id"], second.detail["queue_id"]) == (1, 2)
    assert [p.status for p in standin.posts()] == [201, 201]


def test_identical_queued_build_is_merged_not_a_missing_job(standin):
    t = target(standin)
    first = t.start(job({**API, "unique": False}, id=1))
    merged = t.start(job({**API, "unique": False}, id=2))

    assert merged == Run(remote_id="team/api/build#queue/1", url=f"{standin.url}job/team/job/api/job/build/",
                         state="queued", detail=queued_detail(standin, 1, merged=True))
    assert first.detail["queue_id"] == 1 and len(standin.queue) == 1
    assert [p.status for p in standin.posts()] == [201, 303]
    # requests followed the 303 to the queue item's page, which Jenkins answers with 404.
    assert any(r.method == "GET" and r.path == "/queue/item/1/" and r.status == 404
               for r in standin.requests)


def test_job_lacking_bridge_delivery_merges_because_jenkins_drops_it(standin):
    t = target(standin)
    t.start(job({"job": "old", "parameters": {"GIT_SHA": SHA}}, id=1))
    merged = t.start(job({"job": "old", "parameters": {"GIT_SHA": SHA}}, id=2))
    assert merged.detail.get("merged") is True
    assert standin.queue[1].dropped == ["BRIDGE_DELIVERY"]


def test_unknown_job_is_rejected(standin):
    with pytest.raises(TargetRejected) as info:
        target(standin).start(job({"job": "team/api/biuld"}))
    assert str(info.value) == "job 'team/api/biuld' not found on target 'ci'"
    with pytest.raises(TargetRejected) as info:
        target(standin).start(job({"job": "nofolder/build"}))
    assert str(info.value) == "job 'nofolder/build' not found on target 'ci'"


def test_bad_api_token_is_rejected_without_printing_it(standin):
    with pytest.raises(TargetRejected) as info:
        target(standin, token="not-the-token").start(job(API))
    assert str(info.value) == ("Jenkins refused user 'bridge' on target 'ci' "
                               "(HTTP 401: Invalid password/token for user: bridge)")
    assert "not-the-token" not in messages(info.value)
    assert standin.posts() == []


def test_user_without_build_permission_is_rejected(standin):
    with pytest.raises(TargetRejected) as info:
        target(standin, user="viewer", token=standin.readers["viewer"]).start(job(API))
    assert str(info.value) == ("Jenkins refused user 'viewer' on target 'ci' "
                               "(HTTP 403: viewer is missing the Job/Build permission)")
