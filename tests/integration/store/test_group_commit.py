"""Group commit: concurrent writers of one process share transactions, each caller still gets its
own result only after the commit, and a failure stays with the caller it belongs to.

Real threads; the store tests run on a real SQLite file and PostgreSQL schema."""
from __future__ import annotations

import threading
import time

import pytest

from bridge.errors import StoreUnavailable
from bridge.store.group import GroupCommit
from helpers.store import db_url, inject_job_insert_failure, new_delivery, new_job, open_store  # noqa: F401


def run_threads(n, fn):
    """Start n threads at once on fn(i); returns {i: result or exception}."""
    out = {}
    barrier = threading.Barrier(n)

    def body(i):
        barrier.wait()
        try:
            out[i] = fn(i)
        except Exception as exc:       # the test looks at which caller got what
            out[i] = exc

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def test_callers_arriving_during_a_batch_share_the_next_and_get_their_own_results():
    batches = []

    def write_batch(take):
        items = take()
        batches.append(list(items))
        time.sleep(0.02)                # a commit taking a while: others queue meanwhile
        return [f"done {item}" for item in items]

    group = GroupCommit(write_batch)
    out = run_threads(16, lambda i: group.submit(i))
    assert out == {i: f"done {i}" for i in range(16)}
    assert sorted(i for b in batches for i in b) == list(range(16))   # each written once
    assert max(len(b) for b in batches) > 1


def test_a_caller_alone_is_written_at_once():
    group = GroupCommit(lambda take: [x * 2 for x in take()])
    t0 = time.monotonic()
    assert group.submit(21) == 42
    assert time.monotonic() - t0 < 0.5


def test_a_failed_batch_fails_its_callers_only_and_the_next_batch_proceeds():
    calls = []

    def write_batch(take):
        items = take()
        calls.append(list(items))
        time.sleep(0.02)
        if len(calls) == 1:
            raise StoreUnavailable("store unavailable: disk I/O error")
        return list(items)

    group = GroupCommit(write_batch)
    out = run_threads(8, lambda i: group.submit(i))
    first = set(calls[0])
    for i, got in out.items():
        if i in first:
            assert isinstance(got, StoreUnavailable)
        else:
            assert got == i
    assert len(calls) > 1 or len(first) == 8


def test_a_result_that_is_an_exception_is_raised_to_its_own_caller():
    group = GroupCommit(lambda take: [ValueError(f"bad {x}") if x == 3 else x for x in take()])
    out = run_threads(6, lambda i: group.submit(i))
    assert isinstance(out[3], ValueError) and str(out[3]) == "bad 3"
    assert all(out[i] == i for i in (0, 1, 2, 4, 5))


def test_callers_arriving_while_the_leader_waits_for_the_transaction_join_its_batch():
    """The leader takes the batch once its transaction has begun (the writer lock held): who
    came while it waited for another process's commit rides along, not in a batch of its own."""
    began = threading.Event()
    release = threading.Event()
    batches = []

    def write_batch(take):
        began.set()
        release.wait(10)                # waiting for the writer lock
        items = take()
        batches.append(items)
        return items

    group = GroupCommit(write_batch)
    leader = threading.Thread(target=group.submit, args=(0,))
    leader.start()
    assert began.wait(10)
    others = [threading.Thread(target=group.submit, args=(i,)) for i in range(1, 6)]
    for t in others:
        t.start()
    deadline = time.monotonic() + 10
    while len(group._pending) < 6 and time.monotonic() < deadline:
        time.sleep(0.005)
    release.set()
    for t in [leader, *others]:
        t.join(10)
    assert batches == [[0, 1, 2, 3, 4, 5]]


def test_a_batch_that_never_began_fails_every_caller_pending_then():
    def write_batch(take):
        raise StoreUnavailable("store unavailable: the writer lock cannot be opened")

    group = GroupCommit(write_batch)
    out = run_threads(4, lambda i: group.submit(i))
    assert all(isinstance(v, StoreUnavailable) for v in out.values())
    assert not group._busy and not group._pending
    with pytest.raises(StoreUnavailable):       # the next caller leads again, not stuck behind
        group.submit(9)


# --- the store's ingest on top of it ---------------------------------------------------------

def test_concurrent_ingests_each_get_their_own_jobs(open_store):
    store = open_store()
    out = run_threads(24, lambda i: store.ingest(new_delivery(f"d-{i}"), [new_job("build"), new_job("docs")]))
    ids = []
    for i, got in out.items():
        assert got.delivery == f"d-{i}" and got.duplicate_of is None and len(got.job_ids) == 2
        jobs = store.get_delivery(f"d-{i}")["jobs"]
        assert [j["id"] for j in jobs] == got.job_ids and [j["rule"] for j in jobs] == ["build", "docs"]
        ids += got.job_ids
    assert len(set(ids)) == 48


def test_one_bad_delivery_does_not_take_its_batch_with_it(open_store, db_url):
    store = open_store()
    inject_job_insert_failure(db_url, rule="boom")

    def ingest(i):
        return store.ingest(new_delivery(f"d-{i}"), [new_job("boom" if i == 5 else "build")])

    out = run_threads(16, ingest)
    assert isinstance(out[5], StoreUnavailable) and "injected failure" in str(out[5])
    assert store.get_delivery("d-5") is None                     # nothing half-written
    for i in set(range(16)) - {5}:
        assert out[i].job_ids, out[i]
        assert [j["state"] for j in store.get_delivery(f"d-{i}")["jobs"]] == ["queued"]


def test_same_delivery_id_or_same_push_at_once_is_stored_once(open_store):
    store = open_store()
    same_id = run_threads(8, lambda i: store.ingest(new_delivery("twice"), [new_job()]))
    assert sum(1 for r in same_id.values() if r.duplicate_of is None) == 1
    assert all(r.duplicate_of == "twice" for r in same_id.values() if not r.job_ids)

    after = "a" * 40
    same_push = run_threads(8, lambda i: store.ingest(new_delivery(f"p-{i}", after=after), [new_job()]))
    built = [i for i, r in same_push.items() if r.job_ids]
    assert len(built) == 1
    for i, r in same_push.items():
        if i != built[0]:
            assert r.content_duplicate_of == f"p-{built[0]}"
            assert store.get_delivery(f"p-{i}")["outcome"] == "duplicate"


@pytest.mark.parametrize("durability", ["full", "normal"])
def test_results_of_concurrent_jobs_are_recorded_each_once(open_store, durability):
    from bridge.jobs import Run
    store = open_store(durability=durability)
    for i in range(12):
        store.ingest(new_delivery(f"d-{i}"), [new_job()])
    claimed = store.claim("me", 12, lease_seconds=60, now=time.time())
    assert len(claimed) == 12
    out = run_threads(12, lambda i: store.record_run(claimed[i].id, "me", Run(remote_id=f"r{i}", state="succeeded"),
                                                     now=time.time()))
    assert set(out.values()) == {True}
    for cj in claimed:
        job = store.get_delivery(cj.delivery)["jobs"][0]
        assert job["state"] == "succeeded" and [a["outcome"] for a in job["history"]] == ["succeeded"]
    # Recording again under a lease that is gone writes nothing.
    assert store.record_run(claimed[0].id, "me", Run(remote_id="x", state="succeeded"), now=time.time()) is False
