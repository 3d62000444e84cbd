"""Exec jobs and claim-ahead: results recorded with exit code and output, exec jobs not claimed ahead so
an idle dispatcher runs the next one, quick ones claimed ahead and slow ones released at once."""
from __future__ import annotations

import threading
import time

from bridge.dispatch.loop import Dispatcher
from bridge.store import Store
from bridge.targets.exec import ExecTarget
from helpers.store import new_delivery, new_job  # noqa: F401
from helpers.dispatch import POLICY, job, make, store  # noqa: F401  (fixture)


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
            # In the past (due at once), in this order.
            store.ingest(new_delivery(f"d-{i}", received_at=time.time() - 1 + i * 1e-3),
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
