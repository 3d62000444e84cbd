"""The policed claim reads the queue page by page (64 rows for a small limit) past the jobs that
must wait: a job that may start behind more than a page of waiting ones is still found, with
jobs queued at the same instant told apart by id, on SQLite and PostgreSQL."""
from __future__ import annotations

from dataclasses import replace

import pytest

from bridge.policies import Policies, TargetPolicy
from helpers.store import db_url, open_store  # noqa: F401  (fixtures)
from helpers.store import new_delivery, new_job

LEASE = 60


def queue(store, n: int, *, group: str, at: float, prefix: str, step: float = 0.0) -> list[int]:
    ids = []
    for i in range(n):
        d = new_delivery(f"{prefix}-{i}", received_at=at + i * step)
        ids += store.ingest(d, [replace(new_job("build", "ci"), group=group)]).job_ids
    return ids


@pytest.mark.parametrize("step", [0.0, 1.0], ids=["same-instant", "one-a-second"])
def test_a_job_that_may_start_behind_two_pages_of_waiting_ones_is_found(open_store, step):
    store = open_store()
    pol = Policies(targets={"ci": TargetPolicy(max_running_per_group=1)})
    busy = queue(store, 150, group="busy", at=1000, prefix="b", step=step)
    free = queue(store, 1, group="free", at=1000 + 150 * step, prefix="f")
    got = store.claim("A", 2, lease_seconds=LEASE, now=5000, policies=pol)
    assert [j.id for j in got] == [busy[0], free[0]]
    # Nothing else may start: the busy group has its one build.
    assert store.claim("A", 2, lease_seconds=LEASE, now=5000, policies=pol) == []


def test_a_page_ends_where_the_next_begins_no_job_is_taken_twice(open_store):
    # ci is full after its first job (target-wide: the next pages leave it out); the 64th row,
    # the last of the first page, starts and the next page must begin after it.
    store = open_store()
    pol = Policies(targets={"ci": TargetPolicy(max_running=1), "cd": TargetPolicy(max_running=100)})
    ci = []
    for i in range(63):
        d = new_delivery(f"ci-{i}", received_at=1000 + i)
        ci += store.ingest(d, [new_job("build", "ci")]).job_ids
    cd = []
    for i in range(3):
        d = new_delivery(f"cd-{i}", received_at=1063 + i)
        cd += store.ingest(d, [new_job("deploy", "cd")]).job_ids
    got = store.claim("A", 3, lease_seconds=LEASE, now=5000, policies=pol)
    assert [j.id for j in got] == [ci[0], cd[0], cd[1]]


def test_a_policed_claim_records_a_taken_over_lease_as_lost(open_store):
    # A dead instance's lease, taken over by a policed claim: its attempt is lost, the fresh
    # job beside it has no history.
    store = open_store()
    pol = Policies(targets={"ci": TargetPolicy(max_running=5)})
    first = queue(store, 1, group="a", at=1000, prefix="a")
    [mine] = store.claim("A", 1, lease_seconds=10, now=1001, policies=pol)
    fresh = queue(store, 1, group="b", at=1002, prefix="b")
    got = store.claim("B", 5, lease_seconds=10, now=1020, policies=pol)
    assert sorted(j.id for j in got) == sorted(first + fresh) and mine.id == first[0]
    history = {j["id"]: j["history"] for d in ("a-0", "b-0") for j in store.get_delivery(d)["jobs"]}
    assert [(h["outcome"], h["owner"], h["attempt"]) for h in history[first[0]]] == [("lost", "A", 1)]
    assert history[fresh[0]] == []
