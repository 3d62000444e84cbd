"""Store claims and results at the store level, on SQLite and PostgreSQL: a claim never takes
more than `limit` jobs when expired leases and queued jobs coexist, and a result is recorded
together with its statuses and (for a started build) its follow; claims hand out the `Job`
with its stored `Event` parsed, a followed build the same `Job`."""
from dataclasses import replace

from bridge.events import ZERO_SHA
from bridge.store import NewStatus
from bridge.jobs import Run
from helpers.store import db_url, new_delivery, new_job, open_store  # noqa: F401  (fixtures)


def _jobs(store, count, prefix="d"):
    ids = []
    for i in range(count):
        ids += store.ingest(new_delivery(f"{prefix}-{i}", after=f"{i:040x}"), [new_job()]).job_ids
    return ids


def test_claim_respects_limit_with_expired_leases_and_queued_jobs(open_store):
    store = open_store()
    ids = _jobs(store, 6)
    assert store.claim("a", 0, lease_seconds=10, now=1000.0) == []
    first = store.claim("a", 3, lease_seconds=10, now=1000.0)
    assert len(first) == 3 and all(j.attempt == 1 for j in first)
    # Three leases expired, three jobs queued: each claim takes exactly `limit`, expired first.
    second = store.claim("b", 2, lease_seconds=10, now=1020.0)
    assert len(second) == 2
    assert {j.id for j in second} <= {j.id for j in first}
    assert all(j.attempt == 2 for j in second)
    third = store.claim("b", 3, lease_seconds=10, now=1020.0)
    assert len(third) == 3
    got = {j.id for j in second} | {j.id for j in third}
    assert len(got) == 5 and got <= set(ids)
    fourth = store.claim("b", 10, lease_seconds=10, now=1020.0)
    assert len(fourth) == 1
    assert {j.id for j in second + third + fourth} == set(ids)
    assert store.claim("c", 10, lease_seconds=10, now=1020.0) == []


def test_a_taken_over_lease_is_recorded_as_lost(open_store):
    store = open_store()
    [job_id] = _jobs(store, 1)
    [mine] = store.claim("a", 1, lease_seconds=10, now=1000.0)
    assert store.claim("b", 1, lease_seconds=10, now=1005.0) == []       # lease still a's
    [theirs] = store.claim("b", 1, lease_seconds=10, now=1011.0)
    assert (mine.id, theirs.id, theirs.attempt, theirs.lease_expires_at) == (job_id, job_id, 2, 1021.0)
    [job] = store.get_delivery("d-0")["jobs"]
    assert [(h["outcome"], h["owner"], h["attempt"]) for h in job["history"]] == [("lost", "a", 1)]
    assert store.record_run(job_id, "a", Run("r-1", state="succeeded"), now=1012.0) is False


def _status(job_id, delivery="d-0", phase="accepted"):
    return NewStatus(key=f"job:{job_id}:1:{phase}", delivery_id=delivery, job_id=job_id, rule="build",
                     source="github", provider="github", repo="acme/api", sha="b" * 40, ref="main",
                     context="bridge/build", rank=1, state="pending", description="queued")


def test_a_started_build_is_recorded_with_its_statuses_and_follow(open_store):
    store = open_store()
    [job_id] = _jobs(store, 1)
    store.claim("a", 1, lease_seconds=10, now=1000.0)
    run = Run("build-7", url="http://ci/7", state="started", detail={"n": 7})
    assert store.record_run(job_id, "a", run, now=1001.0, statuses=[_status(job_id)], follow_at=1031.0)
    [job] = store.get_delivery("d-0")["jobs"]
    assert (job["state"], job["remote_id"], job["url"]) == ("started", "build-7", "http://ci/7")
    follow = store.follow_of(job_id)
    assert follow is not None
    assert (follow["remote_id"], follow["state"], follow["next_check_at"]) == ("build-7", "following", 1031.0)
    [status] = store.statuses_of("d-0")
    assert (status["key"], status["state"], status["job_id"]) == (f"job:{job_id}:1:accepted", "pending", job_id)


def test_a_finished_run_has_statuses_and_no_follow(open_store):
    store = open_store()
    [job_id] = _jobs(store, 1)
    store.claim("a", 1, lease_seconds=10, now=1000.0)
    assert store.record_run(job_id, "a", Run("pid-1", state="succeeded"), now=1001.0,
                            statuses=[_status(job_id, phase="done")])
    [job] = store.get_delivery("d-0")["jobs"]
    assert job["state"] == "succeeded"
    assert store.follow_of(job_id) is None
    assert [s["key"] for s in store.statuses_of("d-0")] == [f"job:{job_id}:1:done"]


def test_a_started_build_without_follow_at_is_checked_at_once(open_store):
    store = open_store()
    [job_id] = _jobs(store, 1)
    store.claim("a", 1, lease_seconds=10, now=1000.0)
    assert store.record_run(job_id, "a", Run("build-8"), now=1002.0)
    assert store.follow_of(job_id)["next_check_at"] == 1002.0
    assert store.statuses_of("d-0") == []


def test_a_followed_build_carries_the_job_and_its_event(open_store):
    store = open_store()
    d = new_delivery("d-1")
    deleted = replace(new_delivery("d-2").event, ref="refs/tags/v1", ref_name="v1", kind="delete",
                      after=ZERO_SHA, sha=None, deleted=True)
    store.ingest(d, [new_job()])
    store.ingest(replace(new_delivery("d-2"), event=deleted), [new_job("cleanup")])
    claimed = {j.delivery: j for j in store.claim("a", 5, lease_seconds=10, now=1000.0)}
    assert claimed["d-1"].event == d.event and claimed["d-2"].event == deleted
    for job in claimed.values():
        assert store.record_run(job.id, "a", Run("r", url="http://ci/1"), now=1001.0)
    follows = {cf.job.delivery: cf for cf in store.claim_follows("b", ["ci"], 5, lease_seconds=10,
                                                                now=1001.0)}
    assert {k: (cf.job.id, cf.job.rule, cf.job.attempt, cf.job.event) for k, cf in follows.items()} == {
        k: (j.id, j.rule, 1, j.event) for k, j in claimed.items()}
    assert follows["d-2"].job.event.sha is None          # a deletion names no commit
    assert (follows["d-1"].run.remote_id, follows["d-1"].checks) == ("r", 1)


def test_a_claim_without_the_first_look_takes_the_same_jobs(open_store):
    """look_first=False (the dispatcher's last claim was full) skips only the lock-free look:
    the same due jobs are leased, and none when none is due."""
    store = open_store()
    ids = _jobs(store, 3)
    assert store.claim("a", 5, lease_seconds=10, now=0.0, look_first=False) == []   # not due yet
    got = store.claim("a", 2, lease_seconds=10, now=1000.0, look_first=False)
    assert len(got) == 2
    rest = store.claim("a", 5, lease_seconds=10, now=1000.0, look_first=False)
    assert {j.id for j in got + rest} == set(ids)
    assert store.claim("a", 5, lease_seconds=10, now=1000.0, look_first=False) == []
