"""Deliveries to a real `cibridge serve` becoming Jenkins builds on the stand-in: the build link, the
quiet period, Jenkins down or too slow, retries that find their earlier request, deleted jobs."""
from __future__ import annotations

from bridge.jobs import Job
from helpers.process import wait_for
from helpers.targets_e2e import (ACCEPTED, BRANCH, JENKINS_RULE, OTHER_PAYLOAD, PARAMS, SHA, bridge,
                                 bridge_cli, bridge_env, deliver, retries, rules, standin, the_job,
                                 wait_job)  # noqa: F401  (fixtures)


# --- Jenkins ------------------------------------------------------------------------------

def test_delivery_becomes_a_jenkins_build_with_its_link_recorded(standin, bridge):
    bp = bridge(rules(jenkins=standin.url, rules_yaml=JENKINS_RULE), bridge_env(standin))
    delivery = deliver(bp)

    job = wait_job(bp, delivery, lambda j: j["state"] in ACCEPTED, "the job to start")
    [post] = standin.posts()
    assert post.status == 201
    assert post.path == "/job/team/job/api/job/build/buildWithParameters"
    assert post.query == {"GIT_SHA": [SHA], "BRANCH": [BRANCH],
                          "BRIDGE_DELIVERY": [f"{delivery}-{job['id']}"]}
    [build] = standin.job("team/api/build").builds.values()
    assert build.params == {"GIT_SHA": SHA, "BRANCH": BRANCH, "BRIDGE_DELIVERY": f"{delivery}-{job['id']}"}
    link = f"{standin.url}job/team/job/api/job/build/1/"
    assert (job["url"], job["remote_id"]) == (link, "team/api/build#1")

    shown = bridge_cli(bp, "deliveries", "show", delivery)
    assert shown.returncode == 0, shown.stderr
    [line] = [x for x in shown.stdout.splitlines() if x.startswith(f"job {job['id']}  api-build -> ci")]
    assert line.endswith(f"attempts 1  {link}")
    assert standin.users["bridge"] not in bp.logs() + shown.stdout


def test_jenkins_quiet_period_records_the_queue_item_then_the_build_link(standin, bridge):
    standin.quiet_period = 5.0                        # Jenkins' default: longer than our 2 s wait
    bp = bridge(rules(jenkins=standin.url, rules_yaml=JENKINS_RULE), bridge_env(standin))
    delivery = deliver(bp)
    job = wait_job(bp, delivery, lambda j: j["state"] in ACCEPTED, "the build request")
    # While queued the link is the job's page (a queue item's page 404s in Jenkins' UI).
    assert (job["url"], job["remote_id"]) == (f"{standin.url}job/team/job/api/job/build/",
                                              "team/api/build#queue/1")
    assert job["detail"]["queue_url"] == f"{standin.url}queue/item/1/"

    standin.advance(5.0)                              # the quiet period passes: the build starts
    link = f"{standin.url}job/team/job/api/job/build/1/"
    job = wait_job(bp, delivery, lambda j: j["url"] == link, "the dispatcher to follow the queue item")
    assert job["remote_id"] == "team/api/build#1"
    assert [p.status for p in standin.posts()] == [201]


def test_jenkins_down_for_a_while_then_up_builds_exactly_once(standin, bridge):
    standin.stop()                                    # the port stays ours to start again
    bp = bridge(rules(jenkins=standin.url, rules_yaml=JENKINS_RULE), bridge_env(standin))
    delivery = deliver(bp)
    # Two attempts that failed, read from the history: the job's `attempts` counts claims (it is
    # the number of the attempt under way), so `attempts >= 2` may be an attempt still running,
    # which Jenkins, started meanwhile, then accepts as the second and not the third.
    wait_for(lambda: retries(bp, delivery) >= 2, timeout=20, what="two failed attempts")
    assert the_job(bp, delivery)["state"] in ("queued", "running")
    assert not standin.posts()

    standin.start()
    job = wait_job(bp, delivery, lambda j: j["state"] in ACCEPTED, "the build after Jenkins is back")
    attempts = bp.store_.get_delivery(delivery)["jobs"][0]["history"]
    outcomes = [a["outcome"] for a in attempts]
    started = outcomes.index("started")
    assert set(outcomes[:started]) == {"retry"} and started >= 2
    assert "Jenkins target 'ci' is unreachable (connection refused or reset)" in attempts[0]["error"]
    assert [p.status for p in standin.posts()] == [201]
    assert len(standin.job("team/api/build").builds) == 1
    assert job["url"] == f"{standin.url}job/team/job/api/job/build/1/"


def test_jenkins_too_slow_to_answer_still_builds_once(standin, bridge):
    """Jenkins queued the request but answered after our timeout: the retry must find that build
    by its BRIDGE_DELIVERY instead of requesting a second one."""
    text = rules(jenkins=standin.url, rules_yaml=JENKINS_RULE, timeout=1,
                 settings="settings: {dispatcher_concurrency: 1}\n")
    bp = bridge(text, bridge_env(standin))
    first = deliver(bp)                               # the one dispatcher thread has its crumb now
    wait_job(bp, first, lambda j: j["state"] in ACCEPTED, "the first build")

    standin.slow = 1.5                                # every answer comes after the 1 s timeout
    second = deliver(bp, OTHER_PAYLOAD)
    wait_for(lambda: any(i.params.get("BRIDGE_DELIVERY", "").startswith(f"{second}-")
                         for i in list(standin.queue.values())), timeout=20, what="the slow request queued")
    standin.slow = 0
    job = wait_job(bp, second, lambda j: j["state"] in ACCEPTED, "the second build")
    wait_for(lambda: all(r.status for r in list(standin.requests)), timeout=20,
             what="the stand-in to answer every request it got")

    builds = [b for b in standin.job("team/api/build").builds.values()
              if b.params["BRIDGE_DELIVERY"] == f"{second}-{job['id']}"]
    assert len(builds) == 1, [p.query for p in standin.posts()]
    assert len([p for p in standin.posts() if p.query["BRIDGE_DELIVERY"] == [f"{second}-{job['id']}"]]) == 1
    assert job["detail"]["requested_before"] is True     # found by BRIDGE_DELIVERY, not asked again
    assert job["url"] == f"{standin.url}job/team/job/api/job/build/{builds[0].number}/"
    history = bp.store_.get_delivery(second)["jobs"][0]["history"]
    assert "Jenkins target 'ci' did not answer within 1 s" in history[0]["error"]


def test_a_retry_finds_its_earlier_request_in_the_queue_or_among_the_builds(standin):
    """The adapter alone, on the stand-in's clock: attempt 2 of a job whose attempt 1 reached
    Jenkins posts nothing; a job Jenkins never saw is requested."""
    from dataclasses import replace

    from bridge.events import Event
    from bridge.targets.jenkins import JenkinsTarget
    t = JenkinsTarget("ci", {"kind": "jenkins", "url": standin.url, "user": "bridge",
                             "token": standin.users["bridge"]}, sleep=standin.advance, now=standin.now)
    event = Event(provider="github", source="github", delivery_id="d-9", kind="push", repo="f110/test",
                  ref="refs/heads/main", ref_name="main", before="0" * 40, after=SHA, sha=SHA)
    first = Job(id=1, delivery="d-9", rule="api-build", target="ci", event=event,
                request={"target": "ci", "job": "team/api/build", "parameters": {"GIT_SHA": SHA}})
    standin.quiet_period = 60.0
    queued = t.start(first)
    again = t.start(replace(first, attempt=2))              # still waiting in the queue
    assert (again.url, again.detail["requested_before"]) == (queued.url, True)

    standin.advance(60.0)
    t.start(replace(first, id=2))                           # another job: a build of its own
    standin.advance(60.0)
    built = t.start(replace(first, attempt=3))              # attempt 1's build has started
    assert (built.state, built.remote_id) == ("started", "team/api/build#1")
    assert built.detail["requested_before"] is True
    fresh = t.start(replace(first, id=3, attempt=2))        # attempt 1 never reached Jenkins
    assert "requested_before" not in fresh.detail
    assert [p.query["BRIDGE_DELIVERY"] for p in standin.posts()] == [["d-9-1"], ["d-9-2"], ["d-9-3"]]


def test_deleted_job_is_a_dead_letter_with_its_reason_then_retry_builds_it(standin, bridge):
    standin.remove_job("team/api/build")
    bp = bridge(rules(jenkins=standin.url, rules_yaml=JENKINS_RULE), bridge_env(standin))
    delivery = deliver(bp)
    job = wait_job(bp, delivery, lambda j: j["state"] == "dead", "the dead letter")
    reason = "job 'team/api/build' not found on target 'ci'"
    assert job["last_error"] == reason and job["attempts"] == 1

    shown = bridge_cli(bp, "deliveries", "show", delivery)
    assert f"state dead  attempts 1  error: {reason}" in shown.stdout

    standin.add_job("team/api/build", PARAMS)
    again = bridge_cli(bp, "retry", str(job["id"]))
    assert again.returncode == 0, again.stderr
    job = wait_job(bp, delivery, lambda j: j["state"] in ACCEPTED, "the build after `cibridge retry`")
    assert job["url"] == f"{standin.url}job/team/job/api/job/build/1/"
    assert [p.status for p in standin.posts()] == [404, 201]
    assert standin.posts()[-1].query["BRIDGE_DELIVERY"] == [f"{delivery}-{job['id']}"]
