"""What Jenkins answers and how the target takes it: the endpoint each job kind takes, retries without
parameters, refusals with Jenkins' reason, disabled jobs, restarting/stopped/slow Jenkins as unavailable,
Retry-After, and an allowed empty SHA parameter on deletions."""
from __future__ import annotations

import pytest

from bridge.errors import TargetRejected, TargetUnavailable
from bridge.events import Event
from bridge.jobs import Job
from helpers.jenkins_target import API, PARAMS, SHA, job, standin, target  # noqa: F401  (fixture)


WITH_DEFAULTS = {"GIT_SHA": "HEAD", "BRANCH": "main"}


@pytest.mark.parametrize("request_, posts", [
    # A parameterized job given no parameter: /build wants a form (400, nothing queued), then
    # buildWithParameters builds with the defaults. Stapler words the 400 by whether the request
    # had a query at all.
    ({"job": "param", "unique": False},
     [("/job/param/build", {}, 400), ("/job/param/buildWithParameters", {}, 201)]),
    ({"job": "param", "unique": False, "delay": 0},
     [("/job/param/build", {"delay": ["0sec"]}, 400),
      ("/job/param/buildWithParameters", {"delay": ["0sec"]}, 201)]),
    ({"job": "param", "unique": False, "parameters": {"BRANCH": "dev"}, "delay": "3sec"},
     [("/job/param/buildWithParameters", {"BRANCH": ["dev"], "delay": ["3sec"]}, 201)]),
    ({"job": "plain", "unique": False}, [("/job/plain/build", {}, 201)]),
    ({"job": "plain", "unique": False, "delay": 0}, [("/job/plain/build", {"delay": ["0sec"]}, 201)]),
])
def test_each_job_kind_gets_the_endpoint_jenkins_takes(standin, request_, posts):
    standin.add_job("param", WITH_DEFAULTS)
    run = target(standin).start(job(request_))
    assert run.state in ("queued", "started")
    assert [(p.path, p.query, p.status) for p in standin.posts()] == posts
    expected = {**WITH_DEFAULTS, **request_.get("parameters", {})} if request_["job"] == "param" else {}
    assert standin.queue[1].params == expected


def test_parameterized_job_without_parameters_retries_once_with_token_and_merges(standin):
    standin.add_job("param", WITH_DEFAULTS, build_token="b7-build-token-9f")
    t = target(standin, build_token="b7-build-token-9f")
    first = t.start(job({"job": "param", "unique": False}, id=1))
    merged = t.start(job({"job": "param", "unique": False}, id=2))   # identical: Jenkins merges
    assert (first.detail["queue_id"], merged.detail["queue_id"], merged.detail.get("merged")) == (1, 1, True)
    token = {"token": ["b7-build-token-9f"]}
    assert [(p.path, p.query, p.status) for p in standin.posts()] == [
        ("/job/param/build", token, 400), ("/job/param/buildWithParameters", token, 201),
        ("/job/param/build", token, 400), ("/job/param/buildWithParameters", token, 303)]


def test_a_refused_retry_reports_jenkins_reason(standin):
    standin.add_job("param", WITH_DEFAULTS, build_token="right")
    with pytest.raises(TargetRejected) as info:
        target(standin, build_token="wrong").start(job({"job": "param", "unique": False}))
    assert str(info.value) == ("Jenkins refused user 'bridge' on target 'ci' "
                               "(HTTP 403: Invalid token provided)")
    assert [p.status for p in standin.posts()] == [403]     # no 400 for a form: no second try


def test_parameters_to_a_job_without_any_are_rejected_with_a_hint(standin):
    with pytest.raises(TargetRejected) as info:
        target(standin).start(job({"job": "plain"}))
    assert str(info.value) == (
        "Jenkins target 'ci' refused job 'plain': plain is not parameterized (unique: true sends "
        "BRIDGE_DELIVERY: add that string parameter to the job, or set unique: false)")


def test_disabled_job_is_rejected(standin):
    standin.add_job("off", PARAMS, disabled=True)
    with pytest.raises(TargetRejected) as info:
        target(standin).start(job({"job": "off"}))
    assert str(info.value) == ("Jenkins target 'ci' refused job 'off' (HTTP 409: off is not buildable): "
                               "is the job disabled?")


def test_restarting_jenkins_is_unavailable(standin):
    standin.restarting = True
    with pytest.raises(TargetUnavailable) as info:
        target(standin).start(job(API))
    assert str(info.value) == "Jenkins target 'ci' answered HTTP 503: Please wait while Jenkins is restarting"


def test_stopped_jenkins_is_unavailable_even_with_a_kept_alive_connection(standin):
    t = target(standin)
    t.start(job(API, id=1))                          # leaves a pooled connection behind
    standin.stop()
    with pytest.raises(TargetUnavailable) as info:
        t.start(job(API, id=2))
    assert str(info.value) == "Jenkins target 'ci' is unreachable (connection refused or reset)"

    standin.start()                                  # same port: Jenkins is back
    assert t.start(job(API, id=3)).state == "queued"


def test_slow_jenkins_times_out_as_unavailable(standin):
    standin.slow = 3.0
    with pytest.raises(TargetUnavailable) as info:
        target(standin, timeout=0.2).start(job(API))
    assert str(info.value) == "Jenkins target 'ci' did not answer within 0.2 s"


def test_retry_after_is_read_alike_for_jenkins_and_the_git_hosts():
    """One parser (targets.base.retry_after): seconds or an HTTP date, capped at an hour, so a
    Jenkins answering `Retry-After: 86400` does not park a job for a day."""
    import email.utils

    from bridge.policies import MAX_RETRY_AFTER, retry_after
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    when = email.utils.parsedate_to_datetime(date).timestamp()
    assert retry_after("120") == 120.0
    assert retry_after("86400") == MAX_RETRY_AFTER == 3600.0
    assert retry_after(date, now=lambda: when - 30) == 30.0
    assert retry_after(date, now=lambda: when + 30) == 0.0
    assert retry_after("soon") is None and retry_after("") is None and retry_after(None) is None


def test_a_deletion_sends_an_allowed_empty_sha_parameter_as_empty(standin, tmp_path):
    # A parameter templated from ${sha} is sent, empty: never left out, or the job's default
    # (often a branch such as main) would build instead of nothing.
    from bridge.config.load import load_config
    rules = load_config("rules.yaml", environ={"S": "x"}, text=f"""\
sources:
  github: {{provider: github, secrets: ["${{env:S}}"]}}
targets:
  ci: {{kind: jenkins, url: "{standin.url.rstrip('/')}", user: bridge, token: "${{env:S}}"}}
rules:
  - name: cleanup
    on: {{repo: acme/api, events: [delete]}}
    allow_empty_sha: true
    run: {{target: ci, job: team/api/build, parameters: {{GIT_SHA: "${{sha}}", BRANCH: "${{branch}}"}}}}
""")
    deleted = Event(provider="github", source="github", delivery_id="d-del", kind="delete",
                    repo="acme/api", ref="refs/heads/old", ref_name="old", before=SHA,
                    after="0" * 40, sha=None, deleted=True)
    [verdict] = rules.ruleset.match(deleted)
    request = verdict.jobs[0].request
    assert request["parameters"] == {"GIT_SHA": "", "BRANCH": "old"}
    target(standin).start(Job(id=9, delivery="d-del", rule="cleanup", target="ci", request=request,
                              event=deleted))
    [post] = standin.posts()
    assert post.query["GIT_SHA"] == [""] and post.query["BRANCH"] == ["old"]
