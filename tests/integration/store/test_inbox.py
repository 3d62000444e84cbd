"""Deliveries into a real store (SQLite and PostgreSQL): ingest and dedupe by delivery id and content,
concurrent writers in threads and processes, and the operator views (list, retry, add jobs, prune)."""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import threading

import pytest

from bridge.jobs import Run
from bridge.store import Store
from helpers.store import db_url, open_store  # noqa: F401  (fixtures)
from helpers.store import ingest_many, new_delivery, new_job


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
    assert row["event"] == d.event.to_dict()
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
    claimed = {c.delivery: c for c in store.claim("A", 5, lease_seconds=60, now=200.0)}
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
