"""Dispatcher shutdown: no more claims, in-flight jobs finish, jobs claimed ahead are released, a
command past the grace is interrupted and requeued, the store down gives up within the grace."""
from __future__ import annotations

import contextlib
import logging
import threading
import time

from bridge.dispatch.loop import Dispatcher
from bridge.jobs import Run
from bridge.store import Store
from bridge.targets.base import Target
from bridge.targets.exec import ExecTarget
from helpers.store import new_delivery, new_job, unwritable  # noqa: F401
from helpers.dispatch import POLICY, Recorder, _needs_root, job, store  # noqa: F401  (fixture)


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
