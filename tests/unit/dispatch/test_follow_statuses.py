"""Statuses while the dispatcher follows Jenkins builds: a dead dispatcher, give-up time, Jenkins or the
git host down, operator retries, a version-1 database, targets that cannot follow, secrets kept out."""
from __future__ import annotations

import json
import logging

from bridge.dispatch.loop import Dispatcher
from bridge.jobs import Run
from bridge.policies import RetryPolicy
from bridge.targets.base import Target
from helpers.store import Clock, db_url, new_delivery, new_job, open_store  # noqa: F401
from helpers.statuses import GH_TOKEN, Setup, github, jenkins, setup, status  # noqa: F401  (fixtures)


def test_following_survives_a_dead_dispatcher(setup):
    (job_id,) = setup.push()
    setup.dispatcher("d1").run_once()
    setup.clock.t += 2.0
    # d1 claims the follow and dies before it records anything.
    assert len(setup.store.claim_follows("d1", ["ci"], 5, lease_seconds=60, now=setup.clock())) == 1
    other = setup.dispatcher("d2")
    assert other.follow_once() == 0                       # d1's follow lease still holds
    setup.jenkins.advance(60)
    setup.clock.t += 61
    assert other.follow_once() == 1
    assert setup.store.get_delivery("d-1")["jobs"][0]["state"] == "succeeded"
    assert setup.store.follow_of(job_id)["checks"] == 2


def test_following_gives_up_after_the_configured_time(tmp_path, jenkins, github, open_store):
    setup = Setup(tmp_path, jenkins, github, open_store(), give_up_after=60.0)
    poster = setup.poster()
    (job_id,) = setup.push()
    d = setup.dispatcher()
    d.run_once()
    while setup.store.follow_of(job_id)["state"] == "following":
        setup.clock.t = setup.store.follow_of(job_id)["next_check_at"]
        d.follow_once()
    assert setup.store.follow_of(job_id)["last_error"] == "stopped following the build after 1m"
    assert setup.store.get_delivery("d-1")["jobs"][0]["state"] == "started"
    setup.post_all(poster)
    assert (setup.github.statuses[-1].state, setup.github.statuses[-1].description) == (
        "error", "stopped following the build after 1m")


def test_jenkins_down_while_following_is_retried(setup):
    (job_id,) = setup.push()
    d = setup.dispatcher()
    d.run_once()
    setup.jenkins.stop()
    setup.clock.t += 2.0
    d.follow_once()
    follow = setup.store.follow_of(job_id)
    assert (follow["state"], follow["last_error"]) == (
        "following", "Jenkins target 'ci' is unreachable (connection refused or reset)")
    setup.jenkins.start()
    setup.jenkins.advance(60)
    setup.clock.t = follow["next_check_at"]
    d.follow_once()
    assert setup.store.get_delivery("d-1")["jobs"][0]["state"] == "succeeded"


def test_git_host_down_never_holds_up_builds(setup):
    setup.github.stop()
    poster = setup.poster()
    for i in range(3):
        setup.push(f"d-{i}")
    setup.post_all(poster)
    assert setup.dispatcher().run_once() == 3             # builds start regardless
    assert len(setup.jenkins.posts()) == 3
    setup.post_all(poster)
    setup.github.start()
    setup.clock.t += 600
    setup.post_all(poster)
    assert [s.state for s in setup.github.statuses] == ["pending"] * 3
    assert all(s.target_url.endswith(f"/{n}/") for s, n in zip(
        sorted(setup.github.statuses, key=lambda s: s.target_url), (1, 2, 3)))


def test_a_dead_job_retried_by_the_operator_reports_again(setup):
    poster = setup.poster()
    (job_id,) = setup.push(request={"job": "api/later", "delay": 0})
    setup.dispatcher().run_once()
    setup.post_all(poster)
    assert setup.github.states() == ["error"]
    setup.jenkins.add_job("api/later", ["BRIDGE_DELIVERY"])       # the operator fixed Jenkins
    assert setup.store.retry_job(job_id, now=setup.clock())
    d = setup.dispatcher()
    d.run_once()
    setup.jenkins.advance(60)
    setup.clock.t += 2.0
    d.follow_once()
    setup.post_all(poster)
    assert setup.github.states() == ["error", "success"]


def test_a_version_1_database_gains_the_feedback_tables(db_url, open_store):
    from helpers.store import run_sql
    open_store().close()
    run_sql(db_url, "DROP TABLE statuses; DROP TABLE follows; UPDATE schema_version SET version = 1;")
    store = open_store(upgrade=True)
    assert store.schema_status().current
    store.ingest(new_delivery("d-1"), [new_job()])
    store.add_statuses([status("success", rank=3)], now=1000.0)
    assert [r["post_state"] for r in store.statuses_of("d-1")] == ["waiting"]


class Unfollowable(Target):
    kind = "plain"

    def start(self, job):
        return Run(f"r-{job.id}", state="started")


def test_targets_that_cannot_follow_keep_their_jobs_started(open_store):
    store = open_store()
    store.ingest(new_delivery("d-1"), [new_job()])
    d = Dispatcher(store, {"ci": Unfollowable("ci", {})}, {"ci": RetryPolicy()}, owner="d1",
                   now=Clock(), sleep=Clock().sleep)
    d.run_once()
    assert d.follow_once() == 0
    assert store.get_delivery("d-1")["jobs"][0]["state"] == "started"


def test_secrets_never_reach_the_store_or_the_logs(setup, caplog):
    caplog.set_level(logging.DEBUG)
    poster = setup.poster()
    setup.github.answer_next(401, {"message": "Bad credentials"})
    setup.push()
    setup.post_all(poster)
    d = setup.dispatcher()
    d.run_once()
    setup.jenkins.advance(60)
    setup.clock.t += 2
    d.follow_once()
    setup.post_all(poster)
    dump = json.dumps(setup.store.get_delivery("d-1"), default=str) + json.dumps(
        setup.store.statuses_of("d-1"), default=str)
    assert GH_TOKEN not in dump and GH_TOKEN not in caplog.text
    assert setup.jenkins.users["bridge"] not in dump
    assert "401 Bad credentials" in setup.store.statuses_of("d-1")[0]["answer"]
