"""`Store.ingest_all`: the events of one host delivery (Bitbucket: one per change) stored in ONE
transaction on both backends: all rows and jobs, or, when the database refuses any part, none;
each row deduplicated on its own (a repeat finds them all, a push already built is marked)."""
from __future__ import annotations

import pytest
from helpers.store import db_url, inject_job_insert_failure, new_delivery, new_job, open_store  # noqa: F401

from bridge.errors import StoreUnavailable


def three(prefix="u", *, boom=False):
    rows = [new_delivery(f"{prefix}{suffix}", ref=f"refs/heads/b{i}") for i, suffix in
            enumerate(("", "+2", "+3"))]
    return [(rows[0], [new_job()]), (rows[1], [new_job()]),
            (rows[2], [new_job("boom" if boom else "build")])]


def test_all_stored_with_their_jobs_and_a_repeat_is_a_duplicate(open_store):
    store = open_store()
    items = three()
    first = store.ingest_all(items)
    assert [i.delivery for i in first] == ["u", "u+2", "u+3"]
    assert all(len(i.job_ids) == 1 and not i.duplicate_of for i in first)
    assert [i.duplicate_of for i in store.ingest_all(items)] == ["u", "u+2", "u+3"]
    assert len(store.list_deliveries()) == 3


def test_a_change_already_built_is_marked_alone(open_store):
    store = open_store()
    items = three()
    store.ingest(new_delivery("earlier", content_key=items[1][0].content_key), [new_job()])
    result = store.ingest_all(items)
    assert [i.content_duplicate_of for i in result] == [None, "earlier", None]
    assert [len(i.job_ids) for i in result] == [1, 0, 1]


def test_nothing_is_stored_when_any_part_fails(open_store, db_url):
    store = open_store()
    inject_job_insert_failure(db_url)
    with pytest.raises(StoreUnavailable):
        store.ingest_all(three(boom=True))
    assert store.list_deliveries() == []
