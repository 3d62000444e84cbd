"""Store tests on real databases: an SQLite file and a PostgreSQL schema of its own per test."""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import sqlite3
import threading

import pytest

from bridge.store.schema import SCHEMA_VERSION

from bridge.errors import StoreUnavailable
from bridge.jobs import JOB_STATES, Run
from bridge.store import Store
from helpers.store import db_url, open_store, small_disk  # noqa: F401  (fixtures)
from helpers.store import (fill_disk, ingest_many, inject_job_insert_failure, new_delivery, new_job, run_sql,
                           unwritable)


def job_states(store, delivery_id):
    return [j["state"] for j in store.get_delivery(delivery_id)["jobs"]]


# -- ingest and dedupe ------------------------------------------------------------------------

def test_ingest_stores_delivery_event_verdicts_and_jobs(open_store):
    store = open_store()
    d = new_delivery("d-1", body=b'{"raw": "\x00\xffbytes"}')
    got = store.ingest(d, [new_job("build", parameters={"SHA": "abc"}),
                           new_job("docs", needs_files=True,
                                   path_filter={"paths": ["docs/**"], "paths_ignore": [],
                                                "on_unknown_files": "run"})])
    assert got.delivery == "d-1" and got.duplicate_of is None and got.content_duplicate_of is None
    assert len(got.job_ids) == 2

    row = store.get_delivery("d-1")
    assert row["body"] == d.body
    assert row["headers"] == d.headers
    assert row["event"] == d.event
    assert row["verdicts"] == d.verdicts
    assert (row["source"], row["provider"], row["outcome"], row["repo"], row["ref"]) == \
        ("github", "github", "matched", "acme/api", "refs/heads/main")
    assert row["content_key"] == d.content_key and row["rules_version"] == "v1"
    build, docs = row["jobs"]
    assert [build["id"], docs["id"]] == got.job_ids
    assert build["request"] == {"target": "ci", "parameters": {"SHA": "abc"}}
    assert (build["state"], build["attempts"], build["next_attempt_at"]) == ("queued", 0, 1000.0)
    assert build["needs_files"] is False and build["path_filter"] is None
    assert docs["needs_files"] is True and docs["path_filter"]["paths"] == ["docs/**"]
    assert build["history"] == []
    assert store.get_delivery("nope") is None


def test_same_delivery_id_and_body_writes_nothing_and_names_the_first(open_store):
    store = open_store()
    first = store.ingest(new_delivery("d-1", body=b"first"), [new_job()])
    again = store.ingest(new_delivery("d-1", body=b"first"), [new_job(), new_job("x")])
    assert again.duplicate_of == "d-1" and again.job_ids == [] and again.reused_id is None
    row = store.get_delivery("d-1")
    assert row["body"] == b"first"
    assert [j["id"] for j in row["jobs"]] == first.job_ids
    assert store.queue_stats(2000.0)["jobs"]["queued"] == 1


def test_same_push_under_a_new_id_is_stored_as_duplicate_without_jobs(open_store):
    store = open_store()
    store.ingest(new_delivery("d-1", after="a" * 40), [new_job()])
    replayed = store.ingest(new_delivery("d-2", after="a" * 40, received_at=1001.0), [new_job()])
    assert replayed.content_duplicate_of == "d-1"
    assert replayed.duplicate_of is None and replayed.job_ids == []
    row = store.get_delivery("d-2")
    assert row["outcome"] == "duplicate" and row["content_duplicate_of"] == "d-1"
    assert row["jobs"] == [] and row["body"] == new_delivery().body
    assert "d-1" in row["reason"]
    # Another push (new `after`) builds.
    assert store.ingest(new_delivery("d-3", after="b" * 40), [new_job()]).job_ids


def test_a_delivery_without_jobs_does_not_claim_its_content_key(open_store):
    store = open_store()
    store.ingest(new_delivery("d-1", after="a" * 40, outcome="no_match"), [])
    later = store.ingest(new_delivery("d-2", after="a" * 40), [new_job()])
    assert later.content_duplicate_of is None and len(later.job_ids) == 1


def test_ignored_delivery_is_stored_without_event(open_store):
    store = open_store()
    got = store.ingest(new_delivery("ping-1", outcome="ignored"), [])
    assert got.job_ids == [] and got.duplicate_of is None
    row = store.get_delivery("ping-1")
    assert row["event"] is None and row["repo"] is None and row["outcome"] == "ignored"


def test_concurrent_ingests_of_one_push_build_it_once(open_store, db_url):
    # One Store per thread: on SQLite each has its own lock file descriptor, as processes do.
    stores = [open_store() for _ in range(6)]
    barrier = threading.Barrier(len(stores))

    def ingest(i):
        barrier.wait()
        return stores[i].ingest(new_delivery(f"d-{i}", after="c" * 40), [new_job(), new_job("b")])

    with concurrent.futures.ThreadPoolExecutor(len(stores)) as pool:
        results = list(pool.map(ingest, range(len(stores))))
    winners = [r for r in results if r.job_ids]
    assert len(winners) == 1 and len(winners[0].job_ids) == 2
    assert {r.content_duplicate_of for r in results if not r.job_ids} == {winners[0].delivery}
    assert stores[0].queue_stats(2000.0)["jobs"]["queued"] == 2


def test_writers_in_several_processes_share_one_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path}/bridge.db"
    Store.open(url).close()
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=ctx) as pool:
        ids = [i for f in [pool.submit(ingest_many, url, f"p{n}", 50) for n in range(4)]
               for i in f.result()]
    assert len(ids) == len(set(ids)) == 200
    store = Store.open(url)
    try:
        assert store.queue_stats(0.0)["jobs"]["queued"] == 200
    finally:
        store.close()


# -- claiming, leases, results ----------------------------------------------------------------

def test_claim_leases_due_jobs_to_one_owner(open_store):
    store = open_store()
    d = new_delivery("d-1", received_at=1000.0)
    first = store.ingest(d, [new_job(), new_job("b")]).job_ids
    later = store.ingest(new_delivery("d-2", received_at=1500.0), [new_job()]).job_ids

    claimed = store.claim("A", 10, lease_seconds=600, now=1200.0)
    assert [c.id for c in claimed] == first
    c = claimed[0]
    assert (c.delivery_id, c.rule, c.target, c.kind, c.attempts, c.first_queued_at) == \
        ("d-1", "build", "ci", "memory", 1, 1000.0)
    assert c.event == d.event
    assert c.request == {"target": "ci"} and c.needs_files is False and c.path_filter is None
    assert store.claim("B", 10, lease_seconds=60, now=1200.0) == []
    assert [c.id for c in store.claim("B", 10, lease_seconds=60, now=1500.0)] == later
    assert store.claim("A", 0, lease_seconds=60, now=9999.0) == []


def test_claim_respects_the_limit_in_queue_order(open_store):
    store = open_store()
    ids = [store.ingest(new_delivery(f"d-{i}", received_at=1000.0 + i), [new_job()]).job_ids[0]
           for i in range(5)]
    assert [c.id for c in store.claim("A", 2, lease_seconds=60, now=2000.0)] == ids[:2]
    assert [c.id for c in store.claim("B", 2, lease_seconds=60, now=2000.0)] == ids[2:4]


def test_expired_lease_is_taken_over_and_the_old_owner_cannot_record(open_store):
    store = open_store()
    (job_id,) = store.ingest(new_delivery("d-1"), [new_job()]).job_ids
    assert store.claim("A", 1, lease_seconds=60, now=1000.0)[0].attempts == 1
    assert store.claim("B", 1, lease_seconds=60, now=1059.0) == []       # still A's
    (taken,) = store.claim("B", 1, lease_seconds=60, now=1061.0)
    assert taken.id == job_id and taken.attempts == 2

    assert store.record_run(job_id, "A", Run("a-1", state="succeeded"), now=1062.0) is False
    assert store.record_retry(job_id, "A", "late", 2000.0, now=1062.0) is False
    assert store.release(job_id, "A") is False
    assert store.record_run(job_id, "B", Run("b-1", url="http://ci/1", state="started"), now=1063.0)
    assert store.record_run(job_id, "B", Run("b-1", state="started"), now=1064.0) is False

    job = store.get_delivery("d-1")["jobs"][0]
    assert (job["state"], job["remote_id"], job["url"], job["lease_owner"]) == \
        ("started", "b-1", "http://ci/1", None)
    assert [(h["attempt"], h["owner"], h["outcome"]) for h in job["history"]] == \
        [(1, "A", "lost"), (2, "B", "started")]
    assert "lease of A expired" in job["history"][0]["error"]


def test_record_retry_dead_skipped_and_release(open_store):
    store = open_store()
    ids = store.ingest(new_delivery("d-1"), [new_job("r1"), new_job("r2"), new_job("r3"),
                                             new_job("r4"), new_job("r5")]).job_ids
    store.claim("A", 5, lease_seconds=60, now=1000.0)
    assert store.record_retry(ids[0], "A", "connection refused", 1030.0, now=1001.0)
    assert store.record_dead(ids[1], "A", "job 'api/x' not found", now=1001.0)
    assert store.record_skipped(ids[2], "A", "no file matches paths [src/**]", now=1001.0)
    assert store.record_run(ids[3], "A", Run("pid-1", state="failed",
                                             detail={"exit_code": 2, "output": "boom"}), now=1002.0)
    assert store.release(ids[4], "A")

    jobs = {j["id"]: j for j in store.get_delivery("d-1")["jobs"]}
    retry = jobs[ids[0]]
    assert (retry["state"], retry["next_attempt_at"], retry["last_error"]) == \
        ("queued", 1030.0, "connection refused")
    assert jobs[ids[1]]["state"] == "dead" and jobs[ids[1]]["last_error"] == "job 'api/x' not found"
    assert jobs[ids[2]]["state"] == "skipped"
    assert jobs[ids[2]]["detail"] == {"reason": "no file matches paths [src/**]"}
    failed = jobs[ids[3]]
    assert failed["state"] == "failed" and failed["detail"]["exit_code"] == 2
    assert failed["history"][0]["detail"] == {"exit_code": 2, "output": "boom"}
    assert (failed["history"][0]["started_at"], failed["history"][0]["finished_at"]) == (1000.0, 1002.0)
    released = jobs[ids[4]]
    assert (released["state"], released["attempts"], released["history"]) == ("queued", 0, [])
    assert [h["outcome"] for h in retry["history"]] == ["retry"]
    assert retry["history"][0]["error"] == "connection refused"

    # The retry is due at 1030, the released job at once.
    assert [c.id for c in store.claim("A", 5, lease_seconds=60, now=1010.0)] == [ids[4]]
    (again,) = store.claim("A", 5, lease_seconds=60, now=1030.0)
    assert again.id == ids[0] and again.attempts == 2


def test_results_with_nul_bytes_and_long_errors_are_kept(open_store):
    store = open_store()
    ok, bad = store.ingest(new_delivery("d-1"), [new_job(), new_job("b")]).job_ids
    store.claim("A", 2, lease_seconds=60, now=1000.0)
    output = "\0" * 10 + "tail \ufffd"
    assert store.record_run(ok, "A", Run("pid-1", state="succeeded", detail={"output": output}), now=1001.0)
    assert store.record_dead(bad, "A", "bad\0" + "x" * 10000, now=1001.0)
    good, dead = store.get_delivery("d-1")["jobs"]
    assert good["detail"]["output"] == output
    assert dead["last_error"].startswith("bad\\0xxx") and len(dead["last_error"]) == 4000


def test_renew_leases_keeps_a_long_job(open_store):
    store = open_store()
    (job_id,) = store.ingest(new_delivery("d-1"), [new_job()]).job_ids
    store.claim("A", 1, lease_seconds=60, now=1000.0)
    assert store.renew_leases("A", [job_id], lease_seconds=60, now=1050.0) == [job_id]
    assert store.claim("B", 1, lease_seconds=60, now=1100.0) == []
    assert store.renew_leases("B", [job_id], lease_seconds=60, now=1100.0) == []
    assert [c.id for c in store.claim("B", 1, lease_seconds=60, now=1111.0)] == [job_id]


# -- operator views ---------------------------------------------------------------------------

def test_list_deliveries_filters_and_shows_job_states(open_store):
    store = open_store()
    store.ingest(new_delivery("d-1", received_at=1000.0, repo="acme/api"), [new_job()])
    store.ingest(new_delivery("d-2", received_at=1001.0, repo="acme/web", source="gitlab"), [new_job()])
    store.ingest(new_delivery("d-3", received_at=1002.0, outcome="no_match"), [])
    (c,) = store.claim("A", 1, lease_seconds=60, now=1003.0)
    store.record_dead(c.id, "A", "403", now=1004.0)

    rows = store.list_deliveries()
    assert [r["delivery"] for r in rows] == ["d-3", "d-2", "d-1"]
    assert rows[2]["jobs"][0]["state"] == "dead" and rows[2]["matched"] == ["build"]
    assert rows[0]["jobs"] == [] and rows[0]["outcome"] == "no_match"
    assert [r["delivery"] for r in store.list_deliveries(repo="acme/web")] == ["d-2"]
    assert [r["delivery"] for r in store.list_deliveries(source="gitlab")] == ["d-2"]
    assert [r["delivery"] for r in store.list_deliveries(state="dead")] == ["d-1"]
    assert [r["delivery"] for r in store.list_deliveries(state="no_match")] == ["d-3"]
    assert [r["delivery"] for r in store.list_deliveries(limit=1)] == ["d-3"]
    with pytest.raises(ValueError, match="unknown state 'deadd'"):
        store.list_deliveries(state="deadd")


def test_retry_job_requeues_only_dead_jobs(open_store):
    store = open_store()
    dead, alive = store.ingest(new_delivery("d-1"), [new_job(), new_job("b")]).job_ids
    store.claim("A", 2, lease_seconds=60, now=1000.0)
    store.record_run(alive, "A", Run("r-2", state="started"), now=1001.0)
    store.record_dead(dead, "A", "404", now=1001.0)
    assert store.retry_job(alive, now=5000.0) is False
    assert store.retry_job(dead, now=5000.0) is True
    assert store.retry_job(dead, now=5000.0) is False
    job = store.get_delivery("d-1")["jobs"][0]
    assert (job["state"], job["next_attempt_at"], job["first_queued_at"]) == ("queued", 5000.0, 5000.0)
    assert [c.id for c in store.claim("A", 2, lease_seconds=60, now=5000.0)] == [dead]


def test_add_jobs_queues_more_work_for_a_stored_delivery(open_store):
    store = open_store()
    store.ingest(new_delivery("d-1", outcome="no_match"), [])
    store.ingest(new_delivery("ping", outcome="ignored"), [])
    ids = store.add_jobs("d-1", [new_job("new-rule")], now=3000.0)
    assert [j["id"] for j in store.get_delivery("d-1")["jobs"]] == ids
    assert [c.id for c in store.claim("A", 5, lease_seconds=60, now=3000.0)] == ids
    with pytest.raises(LookupError, match="no delivery 'nope'"):
        store.add_jobs("nope", [new_job()], now=3000.0)
    with pytest.raises(ValueError, match="ignored"):
        store.add_jobs("ping", [new_job()], now=3000.0)


def test_prune_deletes_old_finished_deliveries_and_keeps_content_keys(open_store):
    store = open_store()
    store.ingest(new_delivery("old-done", received_at=100.0, after="a" * 40), [new_job()])
    store.ingest(new_delivery("old-open", received_at=100.0), [new_job()])
    store.ingest(new_delivery("old-ignored", received_at=100.0, outcome="ignored"), [])
    store.ingest(new_delivery("new", received_at=5000.0), [new_job()])
    claimed = {c.delivery_id: c for c in store.claim("A", 5, lease_seconds=60, now=200.0)}
    assert set(claimed) == {"old-done", "old-open"}
    store.record_run(claimed["old-done"].id, "A", Run("x", state="succeeded"), now=201.0)
    store.release(claimed["old-open"].id, "A")

    assert store.prune(older_than=1000.0) == 2
    assert store.get_delivery("old-done") is None and store.get_delivery("old-ignored") is None
    assert store.get_delivery("old-open") is not None and store.get_delivery("new") is not None
    # The pruned push's content key still stops a replay of it.
    replayed = store.ingest(new_delivery("replayed", after="a" * 40), [new_job()])
    assert replayed.content_duplicate_of == "old-done"
    assert store.prune(older_than=1000.0) == 0


def test_queue_stats(open_store):
    store = open_store()
    store.ingest(new_delivery("d-1", received_at=1000.0), [new_job(), new_job("b")])
    store.ingest(new_delivery("d-2", received_at=1100.0), [new_job()])
    (c,) = store.claim("A", 1, lease_seconds=60, now=1100.0)
    store.record_retry(c.id, "A", "down", 1500.0, now=1101.0)
    stats = store.queue_stats(1200.0)
    assert stats["jobs"] == {**{s: 0 for s in JOB_STATES}, "queued": 3}
    assert stats["due"] == 2
    assert stats["oldest_queued_age"] == 200.0


# -- failures ---------------------------------------------------------------------------------

def test_a_failure_mid_transaction_leaves_nothing(open_store, db_url):
    store = open_store()
    inject_job_insert_failure(db_url, rule="boom")
    secret_body = b'{"marker": "body-must-not-leak"}'
    d = new_delivery("d-1", body=secret_body, after="e" * 40)
    with pytest.raises(StoreUnavailable) as err:
        store.ingest(d, [new_job("fine"), new_job("boom")])
    assert "injected failure" in str(err.value)
    assert "body-must-not-leak" not in str(err.value)
    assert store.get_delivery("d-1") is None
    assert store.list_deliveries() == []
    # The content key was not claimed either: the redelivery builds.
    got = store.ingest(d, [new_job("fine")])
    assert got.content_duplicate_of is None and len(got.job_ids) == 1


def test_ping(open_store):
    open_store().ping()


def test_postgresql_down_is_store_unavailable():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]           # nothing listens on it once closed
    with pytest.raises(StoreUnavailable, match="store unavailable"):
        Store.open(f"postgresql://postgres@127.0.0.1:{port}/test?connect_timeout=2")


def test_schema_of_another_version_is_refused(open_store, db_url):
    open_store()
    run_sql(db_url, "UPDATE schema_version SET version = 99")
    with pytest.raises(StoreUnavailable, match=rf"schema version 99 is newer than this bridge \({SCHEMA_VERSION}\)"):
        Store.open(db_url)


def test_create_false_refuses_an_empty_database(tmp_path):
    with pytest.raises(StoreUnavailable, match="schema version none"):
        Store.open(f"sqlite:///{tmp_path}/bridge.db", create=False)


@pytest.mark.parametrize("durability,expected", [("full", 2), ("normal", 1)])
def test_sqlite_durability_sets_synchronous_and_wal(tmp_path, durability, expected):
    store = Store.open(f"sqlite:///{tmp_path}/bridge.db", durability=durability)
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == expected
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        store.close()
    with pytest.raises(ValueError, match="durability"):
        Store.open(f"sqlite:///{tmp_path}/bridge.db", durability="fast")


def test_unwritable_database_file_fails_cleanly_and_recovers(tmp_path):
    url = f"sqlite:///{tmp_path}/bridge.db"
    Store.open(url).close()
    store = Store.open(url)
    try:
        store.engine.dispose()      # the fault hits new connections, as after a restart
        with unwritable(tmp_path / "bridge.db"):
            with pytest.raises(StoreUnavailable, match="is not writable"):
                store.ingest(new_delivery("d-1"), [new_job()])
            with pytest.raises(StoreUnavailable):
                store.ping()
            # SQLite would open the file read-only and a read would pool that connection, to
            # fail every write after the file is writable again: no connection is made at all.
            with pytest.raises(StoreUnavailable, match="is not writable"):
                store.get_delivery("d-0")
        assert store.get_delivery("d-1") is None
        # Writable again: the same Store recovers by itself.
        assert store.ingest(new_delivery("d-1"), [new_job()]).job_ids
        store.ping()
    finally:
        store.close()


def test_unwritable_state_directory_is_store_unavailable(tmp_path):
    state = tmp_path / "state"
    url = f"sqlite:///{state}/bridge.db"
    Store.open(url).close()     # leaves bridge.db and bridge.db.lock; -wal/-shm go with the last close
    assert not (state / "bridge.db-wal").exists()
    with unwritable(state):
        with pytest.raises(StoreUnavailable):
            Store.open(url)
    store = Store.open(url)
    try:
        assert store.ingest(new_delivery("d-1"), [new_job()]).job_ids
    finally:
        store.close()


def test_missing_lock_file_in_an_unwritable_directory_is_store_unavailable(tmp_path):
    state = tmp_path / "state"
    url = f"sqlite:///{state}/bridge.db"
    store = Store.open(url)
    try:
        os.unlink(state / "bridge.db.lock")
        store._writer.after_fork()      # as in a freshly forked worker: reopens the lock file
        with unwritable(state):
            with pytest.raises(StoreUnavailable, match="lock"):
                store.ingest(new_delivery("d-1"), [new_job()])
        assert store.ingest(new_delivery("d-1"), [new_job()]).job_ids
    finally:
        store.close()


def test_full_disk_fails_cleanly_and_recovers_when_space_returns(small_disk):
    url = f"sqlite:///{small_disk}/bridge.db"
    store = Store.open(url)
    try:
        store.ingest(new_delivery("before"), [new_job()])
        filler = fill_disk(small_disk)
        big = new_delivery("big", body=os.urandom(512 * 1024))
        with pytest.raises(StoreUnavailable, match="full"):
            store.ingest(big, [new_job()])
        filler.unlink()
        assert store.get_delivery("big") is None
        assert store.ingest(big, [new_job()]).job_ids
        assert store.get_delivery("before") is not None
    finally:
        store.close()
    # The file is intact.
    conn = sqlite3.connect(small_disk / "bridge.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
