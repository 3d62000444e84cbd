"""Dispatcher leases on a real store: an expired lease taken over, long jobs keeping theirs, two
dispatchers never running a job twice, a result retried through a store outage longer than the lease,
and the delivery id on every log line."""
from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time

from bridge.dispatch.loop import Dispatcher
from bridge.errors import TargetUnavailable
from bridge.jobs import Run
from bridge.store import Store
from bridge.targets.base import Target
from helpers.store import Clock, db_url, new_delivery, new_job, open_store, unwritable  # noqa: F401
from helpers.dispatch import POLICY, Recorder, _needs_root, job, make, store  # noqa: F401  (fixture)


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
