"""Jenkins target against the Jenkins stand-in, over real HTTP on 127.0.0.1, through python-jenkins."""
from __future__ import annotations

import traceback

import pytest

from bridge.errors import TargetRejected, TargetUnavailable
from bridge.events import Event
from bridge.jobs import Job, Run
from bridge.targets import target_class
from bridge.targets.jenkins import JenkinsTarget
from helpers.standins.jenkins import JenkinsStandin

SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
PARAMS = ["GIT_SHA", "BRANCH", "BRIDGE_DELIVERY"]


@pytest.fixture
def standin(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    s = JenkinsStandin(readers={"viewer": "0f9e8d7c6b5a49382716"})
    s.add_job("team/api/build", PARAMS)
    s.add_job("plain")                                   # not parameterized
    s.add_job("old", ["GIT_SHA"])                        # parameterized, without BRIDGE_DELIVERY
    s.add_job("broken", PARAMS, result="FAILURE")
    s.start()
    yield s
    s.stop()


def messages(exc: BaseException) -> str:
    """What a logged traceback of `exc` would print (its chain, as `traceback` walks it)."""
    te, out = traceback.TracebackException.from_exception(exc), []
    while te is not None:
        out += te.format_exception_only()
        te = te.__cause__ or (None if te.__suppress_context__ else te.__context__)
    return "".join(out)


def target(standin, **options) -> JenkinsTarget:
    opts = {"kind": "jenkins", "url": standin.url.rstrip("/"), "user": "bridge",
            "token": standin.users["bridge"], "timeout": 5}
    opts.update(options)
    # The stand-in's clock is the adapter's clock: waiting for the queue takes no real time.
    return JenkinsTarget("ci", opts, sleep=standin.advance, now=standin.now)


def job(request: dict, *, id: int = 7, delivery: str = "d-1") -> Job:
    event = Event(provider="github", source="github", delivery_id=delivery, kind="push",
                  repo="acme/api", ref="refs/heads/main", ref_name="main", before="0" * 40,
                  after=SHA, sha=SHA)
    return Job(id=id, delivery=delivery, rule="api-main", target="ci",
               request={"target": "ci", **request}, event=event)


API = {"job": "team/api/build", "parameters": {"GIT_SHA": SHA, "BRANCH": "main"}}


def test_registry_names_the_jenkins_kind():
    assert target_class("jenkins") is JenkinsTarget


def queued_detail(standin, queue_id: int, **more) -> dict:
    return {"job": "team/api/build", "queue_id": queue_id,
            "queue_url": f"{standin.url}queue/item/{queue_id}/", **more}


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


def test_check_online_reports_by_rule_and_line(standin):
    standin.add_job("team/lib/build", ["GIT_SHA", "BRIDGE_DELIVERY"])
    runs = [
        ("api-main", 12, {"target": "ci", "job": "team/api/build", "parameters": {"GIT_SHA": "${sha}"}}),
        ("typo", 20, {"target": "ci", "job": "team/api/biuld"}),
        ("extra", 25, {"target": "ci", "job": "team/lib/build", "parameters": {"GIT_SHA": "x", "FLAVOR": "y"}}),
        ("legacy", 30, {"target": "ci", "job": "old", "parameters": {"GIT_SHA": "x"}}),
        ("legacy-ok", 34, {"target": "ci", "job": "old", "unique": False}),   # defaults are used
        ("bare", 38, {"target": "ci", "job": "plain"}),
        ("bare-ok", 42, {"target": "ci", "job": "plain", "unique": False}),
        ("bare-delay-ok", 44, {"target": "ci", "job": "plain", "unique": False, "delay": 0}),
        ("folder", 46, {"target": "ci", "job": "team/api"}),
        ("templated", 50, {"target": "ci", "job": "${repo}/build"}),
    ]
    assert target(standin).check_online(runs) == [
        "rule 'typo' (rules.yaml:20): job 'team/api/biuld' not found on target 'ci'",
        "rule 'extra' (rules.yaml:25): job 'team/lib/build' on target 'ci' does not define "
        "parameter(s) FLAVOR: Jenkins drops them silently",
        "rule 'legacy' (rules.yaml:30): job 'old' on target 'ci' lacks a BRIDGE_DELIVERY parameter: "
        "Jenkins may merge two pushes into one build (add a string parameter BRIDGE_DELIVERY to the "
        "job, or set unique: false)",
        "rule 'bare' (rules.yaml:38): job 'plain' on target 'ci' takes no parameters but the rule "
        "sends BRIDGE_DELIVERY: Jenkins answers HTTP 400 (add a string parameter BRIDGE_DELIVERY to "
        "the job, or set unique: false)",
        "rule 'folder' (rules.yaml:46): 'team/api' on target 'ci' is a folder, not a job",
    ]
    assert standin.posts() == []                     # a check never starts a build


def test_check_online_stops_at_refused_credentials(standin):
    runs = [("a", 1, {"job": "team/api/build"}), ("b", 2, {"job": "old"})]
    assert target(standin, token="nope").check_online(runs) == [
        "target 'ci': Jenkins refused user 'bridge' on target 'ci' "
        "(HTTP 401: Invalid password/token for user: bridge)"]


@pytest.mark.parametrize("options, problems", [
    ({"url": "https://ci.example.com", "user": "bridge", "token": "t"}, []),
    ({"url": "ci.example.com"}, ["url must be an http:// or https:// URL, not 'ci.example.com'"]),
    ({"url": "https://ci.example.com", "user": "bridge"},
     ["'user' and 'token' go together (the token is the user's API token)"]),
    ({"url": "https://ci.example.com", "timeout": 0},
     ["timeout must be a positive number of seconds, not 0"]),
    ({"url": "https://ci.example.com", "verify_tls": "no"}, ["verify_tls must be true or false"]),
])
def test_validate(options, problems):
    assert JenkinsTarget.validate({"kind": "jenkins", **options}) == problems


@pytest.mark.parametrize("run, problems", [
    ({"job": "team/api/build", "parameters": {"A": "${sha}"}, "unique": True, "delay": "0sec"}, []),
    ({"job": "job/team/job/build"}, ["'run.job' 'job/team/job/build': write the folder path "
                                     "('team/api/build'), not the URL path ('job/team/job/api/job/build')"]),
    ({"job": "team//build"}, ["'run.job' 'team//build': write folder paths as 'team/api/build'"]),
    ({"job": "x", "parameters": {"token": "1"}},
     ["'run.parameters.token': Jenkins reads 'token' itself; it cannot be a job parameter"]),
    ({"job": "x", "parameters": {"BRIDGE_DELIVERY": "1"}},
     ["'run.parameters.BRIDGE_DELIVERY': the bridge sets BRIDGE_DELIVERY itself "
      "(set unique: false to send your own)"]),
    ({"job": "x", "parameters": {"BRIDGE_DELIVERY": "1"}, "unique": False}, []),
    ({"job": "x", "unique": "yes"}, ["'run.unique' must be true or false"]),
    ({"job": "x", "delay": "soon"}, ["'run.delay' must be seconds, e.g. 0 or '0sec', not 'soon'"]),
])
def test_validate_run(run, problems):
    assert JenkinsTarget.validate_run({"target": "ci", **run}) == problems


RULES_WITH_TOKENS = """\
sources:
  github: {{provider: github, secrets: ["${{env:GH_SECRET}}"]}}
targets:
  ci:
    kind: jenkins
    url: https://ci.example.com
    user: bridge
    token: {token}
    build_token: {build_token}
rules: []
"""


def test_tokens_in_rules_yaml_must_be_secret_references(tmp_path):
    from bridge.config.load import load_config
    from bridge.errors import ConfigError
    env = {"GH_SECRET": "s", "JENKINS_TOKEN": "11d8c3a0f6b2", "BUILD_TOKEN": "b7-build-token-9f"}
    path = tmp_path / "rules.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=env, text=RULES_WITH_TOKENS.format(
            token="11d8c3a0f6b2", build_token="b7-build-token-9f"))
    assert info.value.problems == [
        "rules.yaml:8: target 'ci': 'token' must be a secret reference like "
        "${credential:ci-token}, not literal text",
        "rules.yaml:9: target 'ci': 'build_token' must be a secret reference like "
        "${credential:ci-build_token}, not literal text"]
    assert "11d8c3a0f6b2" not in str(info.value) and "b7-build-token-9f" not in str(info.value)

    config = load_config(path, text=RULES_WITH_TOKENS.format(
        token="${env:JENKINS_TOKEN}", build_token="${env:BUILD_TOKEN}"), environ=env)
    options = config.targets["ci"].options
    assert (options["token"], options["build_token"]) == ("11d8c3a0f6b2", "b7-build-token-9f")


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
