"""Dispatcher jobs on a real store with recording targets and an injected clock: starting and
recording runs, backoff with full jitter, retry-after, giving up, dead letters, unknown targets, and
path decisions for jobs that need the changed files."""
from __future__ import annotations

import logging

import pytest

from bridge.dispatch.loop import Dispatcher
from bridge.errors import TargetRejected, TargetUnavailable
from bridge.policies import RetryPolicy
from helpers.store import Clock, new_delivery, new_job  # noqa: F401
from helpers.dispatch import POLICY, Recorder, job, make, store  # noqa: F401  (fixture)


def test_run_once_starts_jobs_and_records_them(store):
    d = new_delivery("d-1")
    store.ingest(d, [new_job(parameters={"SHA": "abc"}), new_job("other")])
    ci = Recorder()
    assert make(store, ci).run_once() == 2
    (first,) = [j for j in ci.jobs if j.rule == "build"]
    assert (first.delivery, first.rule, first.target, first.attempt) == ("d-1", "build", "ci", 1)
    assert first.request == {"target": "ci", "parameters": {"SHA": "abc"}}
    assert first.event == d.event
    row = job(store)
    assert (row["state"], row["remote_id"], row["url"]) == ("started", f"build-{first.id}",
                                                            f"http://ci/{first.id}")
    assert make(store, ci).run_once() == 0


def test_transient_failures_back_off_exponentially_with_full_jitter(store):
    store.ingest(new_delivery("d-1", received_at=1000.0), [new_job()])
    clock = Clock(1000.0)
    ci = Recorder(outcomes=[TargetUnavailable("connection refused")] * 3)
    dispatcher = make(store, ci, clock, rand=lambda: 0.5)
    expected_delays = [2.5, 5.0, 10.0]          # 0.5 * 5 * 2**(attempt-1)
    for delay in expected_delays:
        assert dispatcher.run_once() == 1
        row = job(store)
        assert row["state"] == "queued" and row["last_error"] == "connection refused"
        assert row["next_attempt_at"] == pytest.approx(clock.t + delay)
        assert dispatcher.run_once() == 0       # not due yet
        clock.t = row["next_attempt_at"]
    assert dispatcher.run_once() == 1
    row = job(store)
    assert row["state"] == "started" and row["attempts"] == 4
    assert [h["outcome"] for h in row["history"]] == ["retry", "retry", "retry", "started"]
    assert [j.attempt for j in ci.jobs] == [1, 2, 3, 4]
    assert clock.sleeps == []                   # nobody waited


def test_backoff_is_capped_and_honours_retry_after(store):
    store.ingest(new_delivery("d-1"), [new_job()])
    clock = Clock(1000.0)
    policy = RetryPolicy(initial=5.0, maximum=12.0, give_up_after=86400.0)
    ci = Recorder(outcomes=[TargetUnavailable("503")] * 4 + [TargetUnavailable("throttled", retry_after=90)])
    dispatcher = Dispatcher(store, {"ci": ci}, {"ci": policy}, owner="d1", now=clock,
                            sleep=clock.sleep, rand=lambda: 1.0)
    delays = []
    for _ in range(5):
        before = clock.t
        dispatcher.run_once()
        clock.t = job(store)["next_attempt_at"]
        delays.append(clock.t - before)
    assert delays == [5.0, 10.0, 12.0, 12.0, 90.0]


def test_zero_jitter_retries_at_once(store):
    store.ingest(new_delivery("d-1"), [new_job()])
    clock = Clock(1000.0)
    dispatcher = make(store, Recorder(outcomes=[TargetUnavailable("down")]), clock, rand=lambda: 0.0)
    dispatcher.run_once()
    assert job(store)["next_attempt_at"] == 1000.0
    assert dispatcher.run_once() == 1


def test_gives_up_after_the_give_up_time(store):
    store.ingest(new_delivery("d-1", received_at=1000.0), [new_job()])
    clock = Clock(1000.0 + 86400.0 + 1)
    make(store, Recorder(outcomes=[TargetUnavailable("jenkins is restarting")]), clock).run_once()
    row = job(store)
    assert row["state"] == "dead"
    assert row["last_error"] == "gave up after 24h: jenkins is restarting"


def test_rejected_job_goes_to_the_dead_letter_at_once(store):
    store.ingest(new_delivery("d-1"), [new_job()])
    make(store, Recorder(outcomes=[TargetRejected("job 'api/biuld' not found on target 'ci'")])).run_once()
    row = job(store)
    assert (row["state"], row["last_error"]) == ("dead", "job 'api/biuld' not found on target 'ci'")
    assert store.retry_job(row["id"], now=2000.0)


def test_unexpected_exception_is_retried_and_logged_with_traceback(store, caplog):
    store.ingest(new_delivery("d-1"), [new_job()])
    with caplog.at_level(logging.INFO, logger="bridge.dispatcher"):
        make(store, Recorder(outcomes=[KeyError("parameters")])).run_once()
    row = job(store)
    assert row["state"] == "queued" and row["last_error"] == "'parameters'"
    (rec,) = [r for r in caplog.records if r.exc_info]
    assert rec.delivery == "d-1" and "unexpected error" in rec.getMessage()


def test_job_for_an_unconfigured_target_is_dead(store):
    store.ingest(new_delivery("d-1"), [new_job(target="gone")])
    make(store, Recorder()).run_once()
    assert job(store)["last_error"] == "target 'gone' is not configured"


def test_set_targets_applies_to_later_claims(store):
    store.ingest(new_delivery("d-1"), [new_job(target="new")])
    old, new = Recorder("ci"), Recorder("new")
    dispatcher = make(store, old)
    dispatcher.set_targets({"new": new}, {"new": POLICY})
    dispatcher.run_once()
    assert len(new.jobs) == 1 and old.jobs == []


def test_decide_paths_skips_or_runs_jobs_that_need_files(store):
    store.ingest(new_delivery("d-1"), [new_job("docs", needs_files=True), new_job("api", needs_files=True),
                                       new_job("all")])
    asked = []

    def decide(cj):
        asked.append(cj.rule)
        return (cj.rule == "api", "no changed file matches paths [docs/**]")

    ci = Recorder()
    make(store, ci, decide_paths=decide).run_once()
    assert sorted(asked) == ["api", "docs"]
    assert sorted(j.rule for j in ci.jobs) == ["all", "api"]
    states = {j["rule"]: j for j in store.get_delivery("d-1")["jobs"]}
    assert states["docs"]["state"] == "skipped"
    assert states["docs"]["detail"] == {"reason": "no changed file matches paths [docs/**]"}


def test_failing_decide_paths_is_a_transient_failure(store):
    store.ingest(new_delivery("d-1"), [new_job(needs_files=True)])

    def decide(cj):
        raise TargetUnavailable("git fetch failed")

    make(store, Recorder(), decide_paths=decide).run_once()
    assert (job(store)["state"], job(store)["last_error"]) == ("queued", "git fetch failed")
