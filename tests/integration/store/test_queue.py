"""The job queue in a real store (SQLite and PostgreSQL): claims leased to one owner in queue order,
expired leases taken over, results recorded (retry, dead, skipped, released), long jobs renewed, and
queue statistics."""
from __future__ import annotations

from bridge.jobs import JOB_STATES, Run
from helpers.store import db_url, open_store  # noqa: F401  (fixtures)
from helpers.store import new_delivery, new_job


# -- claiming, leases, results ----------------------------------------------------------------

def test_claim_leases_due_jobs_to_one_owner(open_store):
    store = open_store()
    d = new_delivery("d-1", received_at=1000.0)
    first = store.ingest(d, [new_job(), new_job("b")]).job_ids
    later = store.ingest(new_delivery("d-2", received_at=1500.0), [new_job()]).job_ids

    claimed = store.claim("A", 10, lease_seconds=600, now=1200.0)
    assert [c.id for c in claimed] == first
    c = claimed[0]
    assert (c.delivery, c.rule, c.target, c.kind, c.attempt, c.first_queued_at) == \
        ("d-1", "build", "ci", "memory", 1, 1000.0)
    assert c.event == d.event            # the Event, parsed by the store
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
    assert store.claim("A", 1, lease_seconds=60, now=1000.0)[0].attempt == 1
    assert store.claim("B", 1, lease_seconds=60, now=1059.0) == []       # still A's
    (taken,) = store.claim("B", 1, lease_seconds=60, now=1061.0)
    assert taken.id == job_id and taken.attempt == 2

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
    assert again.id == ids[0] and again.attempt == 2


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
