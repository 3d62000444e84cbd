"""Dispatcher tests: a real store, recording targets (fakes of external systems), an injected
clock for retries and backoff, real threads for leases and shutdown."""
from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time

import pytest

from bridge.dispatch.loop import Dispatcher
from bridge.errors import TargetRejected, TargetUnavailable
from bridge.events import Event
from bridge.jobs import Run
from bridge.policies import RetryPolicy
from bridge.store import Store
from bridge.targets.base import Target
from bridge.targets.exec import ExecTarget
from helpers.store import Clock, db_url, new_delivery, new_job, open_store, unwritable  # noqa: F401


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


def test_run_once_starts_jobs_and_records_them(store):
    d = new_delivery("d-1")
    store.ingest(d, [new_job(parameters={"SHA": "abc"}), new_job("other")])
    ci = Recorder()
    assert make(store, ci).run_once() == 2
    (first,) = [j for j in ci.jobs if j.rule == "build"]
    assert (first.delivery, first.rule, first.target, first.attempt) == ("d-1", "build", "ci", 1)
    assert first.request == {"target": "ci", "parameters": {"SHA": "abc"}}
    assert first.event == Event.from_dict(d.event)
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


def test_expired_lease_is_taken_over_and_the_dead_dispatcher_cannot_record(store):
    store.ingest(new_delivery("d-1", received_at=1000.0), [new_job()])
    (cj,) = store.claim("crashed", 1, lease_seconds=60, now=1000.0)
    ci = Recorder()
    assert make(store, ci, Clock(1030.0)).run_once() == 0          # lease still held
    assert make(store, ci, Clock(1061.0)).run_once() == 1
    assert store.record_run(cj.id, "crashed", Run("late", state="started"), now=1062.0) is False
    row = job(store)
    assert row["remote_id"] == f"build-{cj.id}"
    assert [h["outcome"] for h in row["history"]] == ["lost", "started"]
    assert ci.jobs[0].attempt == 2


def test_every_log_line_carries_the_delivery_id(store, caplog):
    store.ingest(new_delivery("d-1"), [new_job("a")])
    store.ingest(new_delivery("d-2"), [new_job("b", needs_files=True)])
    store.ingest(new_delivery("d-3"), [new_job("c")])
    store.ingest(new_delivery("d-4"), [new_job("d")])
    ci = Recorder(outcomes=[Run("x", state="started"), TargetUnavailable("down"), RuntimeError("bug")])
    with caplog.at_level(logging.DEBUG, logger="bridge.dispatcher"):
        make(store, ci, decide_paths=lambda cj: (False, "no match")).run_once()
    records = [r for r in caplog.records if r.name == "bridge.dispatcher"]
    assert len(records) == 8     # 3 starts, started, retry, error + retry, skipped
    assert sum(bool(r.exc_info) for r in records) == 1
    for r in records:
        assert r.delivery in {"d-1", "d-2", "d-3", "d-4"}, r.getMessage()
        assert f"job {r.job} " in r.getMessage()


def test_a_long_job_keeps_its_lease_and_is_never_taken_over(tmp_path):
    url = f"sqlite:///{tmp_path}/bridge.db"
    a_store, b_store = Store.open(url), Store.open(url)
    try:
        a_store.ingest(new_delivery("d-1", received_at=time.time()), [new_job()])
        slow = Recorder(delay=1.0)
        a = Dispatcher(a_store, {"ci": slow}, {"ci": POLICY}, owner="A", lease_seconds=0.3)
        other = Recorder()
        b = Dispatcher(b_store, {"ci": other}, {"ci": POLICY}, owner="B", lease_seconds=0.3,
                       poll_interval=0.02)
        handled = []
        runner = threading.Thread(target=lambda: handled.append(a.run_once()))
        runner.start()
        deadline = time.time() + 10
        while not slow.jobs and time.time() < deadline:
            time.sleep(0.01)
        stop = threading.Event()
        thread = threading.Thread(target=b.run, args=(stop,))
        thread.start()      # B polls all along the 1 s run; A's 0.3 s lease is renewed meanwhile
        try:
            runner.join(10)
        finally:
            stop.set()
            thread.join()
        assert handled == [1]
        assert other.jobs == []
        assert job(a_store)["state"] == "started"
    finally:
        a_store.close()
        b_store.close()


def test_two_dispatchers_on_one_database_never_run_a_job_twice(open_store):
    feeder = open_store()
    for i in range(60):
        feeder.ingest(new_delivery(f"d-{i}", received_at=time.time()), [new_job(), new_job("b")])
    runs = collections.Counter()
    lock = threading.Lock()

    class Counting(Target):
        def start(self, job):
            with lock:
                runs[job.id] += 1
            time.sleep(0.002)
            return Run(f"r-{job.id}", state="succeeded")

    stop = threading.Event()
    dispatchers = [Dispatcher(open_store(), {"ci": Counting("ci", {}), "b": Counting("b", {})},
                              {}, owner=name, concurrency=3, poll_interval=0.01)
                   for name in ("A", "B")]
    threads = [threading.Thread(target=d.run, args=(stop,)) for d in dispatchers]
    for t in threads:
        t.start()
    try:
        deadline = time.time() + 30
        while feeder.queue_stats(time.time())["jobs"]["succeeded"] < 120 and time.time() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert len(runs) == 120
    assert max(runs.values()) == 1
    assert feeder.queue_stats(time.time())["jobs"]["succeeded"] == 120


def test_shutdown_stops_claiming_and_lets_in_flight_jobs_finish(store):
    store.ingest(new_delivery("d-1", received_at=time.time()), [new_job()])
    entered, release = threading.Event(), threading.Event()

    class Blocking(Target):
        def start(self, job):
            entered.set()
            release.wait(10)
            return Run("done", state="succeeded")

    dispatcher = Dispatcher(store, {"ci": Blocking("ci", {})}, {}, owner="A", poll_interval=0.01)
    stop = threading.Event()
    thread = threading.Thread(target=dispatcher.run, args=(stop,), kwargs={"grace": 10})
    thread.start()
    assert entered.wait(10)
    stop.set()
    store.ingest(new_delivery("d-2", received_at=time.time()), [new_job()])
    release.set()
    thread.join(10)
    assert not thread.is_alive()
    assert job(store, "d-1")["state"] == "succeeded"
    assert job(store, "d-2")["state"] == "queued"       # not claimed after stop


def test_shutdown_releases_jobs_claimed_ahead_but_never_started(store):
    for i in range(3):
        store.ingest(new_delivery(f"d-{i}", received_at=time.time() + i * 1e-3), [new_job()])
    entered, release = threading.Event(), threading.Event()
    started = []

    class Blocking(Target):
        def start(self, job):
            started.append(job.delivery)
            entered.set()
            release.wait(10)
            return Run("done", state="succeeded")

    dispatcher = Dispatcher(store, {"ci": Blocking("ci", {})}, {}, owner="A", concurrency=1,
                            poll_interval=0.01)
    stop = threading.Event()
    thread = threading.Thread(target=dispatcher.run, args=(stop,), kwargs={"grace": 10})
    thread.start()
    assert entered.wait(10)
    deadline = time.time() + 10
    while store.queue_stats(time.time())["jobs"]["running"] < 2 and time.time() < deadline:
        time.sleep(0.01)
    assert job(store, "d-1")["state"] == "running"      # claimed ahead, waiting for the slot
    stop.set()
    while job(store, "d-1")["state"] != "queued" and time.time() < deadline:
        time.sleep(0.01)                                # released while d-0 still runs
    release.set()
    thread.join(10)
    assert started == ["d-0"]
    assert job(store, "d-0")["state"] == "succeeded"
    released = job(store, "d-1")
    assert (released["state"], released["attempts"], released["lease_owner"]) == ("queued", 0, None)
    assert job(store, "d-2")["state"] == "queued"


def test_shutdown_interrupts_a_command_past_the_grace_and_requeues_it(store, tmp_path):
    store.ingest(new_delivery("d-1", received_at=time.time()), [new_job(target="local", kind="exec",
                                                                        command=["sleep", "30"])])
    local = ExecTarget("local", {})
    dispatcher = Dispatcher(store, {"local": local}, {"local": POLICY}, owner="A",
                            poll_interval=0.01, rand=lambda: 0.0)
    stop = threading.Event()
    thread = threading.Thread(target=dispatcher.run, args=(stop,), kwargs={"grace": 0.3})
    thread.start()
    deadline = time.time() + 10
    while job(store)["state"] != "running" and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    stop.set()
    thread.join(15)
    assert not thread.is_alive()
    row = job(store)
    assert row["state"] == "queued"
    assert "shutting down" in row["last_error"]


def test_exec_results_are_recorded_with_exit_code_and_output(store):
    store.ingest(new_delivery("d-1"), [new_job(target="local", kind="exec",
                                               command=["sh", "-c", "echo building $BRIDGE_BRANCH; exit 3"])])
    make(store, ExecTarget("local", {})).run_once()
    row = job(store)
    assert row["state"] == "failed"
    assert row["detail"]["exit_code"] == 3
    assert row["detail"]["output"] == "building main\n"
    assert row["history"][0]["outcome"] == "failed"


def test_exec_jobs_are_not_claimed_ahead_so_an_idle_dispatcher_runs_the_next_one(tmp_path):
    """Two dispatchers of concurrency 1 on one SQLite file, two slow exec jobs queued: each
    dispatcher runs one, at the same time. Each build waits until both have started, so it can
    only succeed if neither job is held by a dispatcher whose one slot is busy (claimed ahead)."""
    url = f"sqlite:///{tmp_path}/bridge.db"
    marks = tmp_path / "started"
    marks.mkdir()
    wait_for_both = ('touch "$MARKS/$BRIDGE_JOB_ID"; i=0; '
                     'while [ "$(ls "$MARKS" | wc -l)" -lt 2 ]; do '
                     'i=$((i+1)); [ $i -gt 400 ] && exit 1; sleep 0.05; done')
    stores = [Store.open(url) for _ in range(3)]
    feeder, *mine = stores
    for i in range(2):
        feeder.ingest(new_delivery(f"d-{i}", received_at=time.time()),
                      [new_job(target="local", kind="exec", command=["sh", "-c", wait_for_both])])
    dispatchers = [Dispatcher(s, {"local": ExecTarget("local", {"env": {"MARKS": str(marks)}})},
                              {"local": POLICY}, owner=name, concurrency=1, poll_interval=0.01)
                   for name, s in zip("AB", mine)]
    stop = threading.Event()
    threads = [threading.Thread(target=d.run, args=(stop,)) for d in dispatchers]
    try:
        for t in threads:
            t.start()
        deadline = time.time() + 60
        while time.time() < deadline:
            jobs = feeder.queue_stats(time.time())["jobs"]
            if not jobs.get("queued") and not jobs.get("running"):
                break
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        rows = [job(feeder, f"d-{i}") for i in range(2)]
        for s in stores:
            s.close()
    assert [r["state"] for r in rows] == ["succeeded", "succeeded"], [r["detail"] for r in rows]
    assert sorted(r["history"][0]["owner"] for r in rows) == ["A", "B"]



def _needs_root():
    if os.geteuid() != 0:
        pytest.skip("an unwritable file an open connection cannot write needs chattr +i (root)")


def test_a_result_is_retried_through_a_store_outage_longer_than_the_lease(tmp_path):
    """The database unwritable (chattr +i) when the job's result comes: the dispatcher keeps
    retrying with backoff well past its 60 s lease (an injected clock: nobody waits), and the
    write lands once the store is back."""
    _needs_root()
    store = Store.open(f"sqlite:///{tmp_path}/bridge.db", durability="normal")
    try:
        store.ingest(new_delivery("d-1", received_at=1000.0), [new_job()])
        clock = Clock(1000.0)
        with contextlib.ExitStack() as outage:
            class FinishesIntoAnOutage(Recorder):
                def start(self, job):
                    outage.enter_context(unwritable(tmp_path / "bridge.db"))
                    outage.enter_context(unwritable(tmp_path / "bridge.db-wal"))
                    return super().start(job)

            def sleep(seconds):
                clock.sleep(seconds)
                if clock.t - 1000.0 > 3 * 60:   # three lease periods later: writable again
                    outage.close()

            ci = FinishesIntoAnOutage(outcomes=[Run("r-1", state="succeeded")])
            dispatcher = Dispatcher(store, {"ci": ci}, {"ci": POLICY}, owner="d1", now=clock,
                                    sleep=sleep, rand=lambda: 0.5, lease_seconds=60.0)
            assert dispatcher.run_once() == 1
        row = job(store)
        assert (row["state"], [h["outcome"] for h in row["history"]]) == ("succeeded", ["succeeded"])
        assert len(ci.jobs) == 1
        assert max(clock.sleeps) == 5.0 and sum(clock.sleeps) > 3 * 60   # backed off, never gave up
    finally:
        store.close()


def test_shutdown_with_the_store_down_gives_up_recording_within_the_grace(tmp_path, caplog):
    _needs_root()
    store = Store.open(f"sqlite:///{tmp_path}/bridge.db", durability="normal")
    try:
        store.ingest(new_delivery("d-1", received_at=time.time()), [new_job()])
        with contextlib.ExitStack() as outage:
            class FinishesIntoAnOutage(Recorder):
                def start(self, job):
                    outage.enter_context(unwritable(tmp_path / "bridge.db"))
                    outage.enter_context(unwritable(tmp_path / "bridge.db-wal"))
                    return super().start(job)

            ci = FinishesIntoAnOutage(outcomes=[Run("r-1", state="succeeded")])
            dispatcher = Dispatcher(store, {"ci": ci}, {"ci": POLICY}, owner="d1",
                                    poll_interval=0.01, lease_seconds=60.0)
            stop = threading.Event()
            thread = threading.Thread(target=dispatcher.run, args=(stop,), kwargs={"grace": 2.0})
            with caplog.at_level(logging.INFO, logger="bridge.dispatcher"):
                thread.start()
                deadline = time.time() + 20
                while "retrying until the store is back" not in caplog.text and time.time() < deadline:
                    time.sleep(0.02)
                stop.set()
                thread.join(30)
                assert not thread.is_alive()
        assert "shutting down with the store still unavailable" in caplog.text
        row = job(store)
        assert (row["state"], row["lease_owner"]) == ("running", "d1")   # runs again after its lease
    finally:
        store.close()


def test_quick_exec_jobs_are_claimed_ahead_slow_ones_released_at_once(tmp_path):
    """Claim-ahead follows how long a target's builds take: after a quick command (under
    _QUICK_START) the next exec jobs of that target are claimed ahead of a free slot; a job of
    a target whose builds are slow (or not yet known) is released again at once, so another
    dispatcher can run it."""
    from bridge.dispatch.loop import _QUICK_START
    store = Store.open(f"sqlite:///{tmp_path}/bridge.db")
    try:
        quick = ExecTarget("quick", {})
        slow = ExecTarget("slow", {})
        d = Dispatcher(store, {"quick": quick, "slow": slow}, {"quick": POLICY, "slow": POLICY},
                       owner="A", concurrency=1, poll_interval=0.01)
        d._start_seconds["quick"] = _QUICK_START / 10      # as after a few /bin/true builds
        for i, target in enumerate(["quick", "quick", "slow"]):
            store.ingest(new_delivery(f"d-{i}", received_at=time.time() + i * 1e-3),
                         [new_job(target=target, kind="exec", command=["sleep", "0.5"])])
        first = d._claim_and_submit(1, free=1)
        assert [cj.target for cj, _ in first] == ["quick"]
        d._start_seconds["quick"] = _QUICK_START / 10
        ahead = d._claim_and_submit(2, free=0)             # the slot is busy: all of it is ahead
        assert [cj.target for cj, _ in ahead] == ["quick"]  # the quick one waits here
        assert job(store, "d-2")["state"] == "queued"       # the slow one went back at once
        assert job(store, "d-2")["attempts"] == 0 and job(store, "d-2")["lease_owner"] is None
        assert d._ahead_blocked                              # no claim/release loop meanwhile
        for _, fut in first + ahead:
            fut.result(timeout=10)
        assert not d._ahead_blocked
        d._pool.shutdown(wait=True)
    finally:
        store.close()
