"""The store's side of reconcile on SQLite and PostgreSQL: the lease that lets one instance run it
at a time, the marks it keeps between runs, the heads of refs from stored pushes, `via`, and the
upgrade of a version-5 database to version 6 (and on) keeping what it holds."""
from __future__ import annotations

from sqlalchemy import text

from bridge.store import Store
from bridge.store.engine import open_engine
from bridge.store.schema import SCHEMA_VERSION
from helpers.store import db_url, new_delivery, new_job, open_store  # noqa: F401  (fixtures)


def test_one_owner_holds_the_lease_until_it_expires(open_store):
    store = open_store()
    assert store.take_lease("reconcile", "a", 60, now=1000.0)
    assert not store.take_lease("reconcile", "b", 60, now=1030.0)
    assert store.take_lease("reconcile", "a", 60, now=1050.0)           # renewed by its owner
    assert store.lease_holder("reconcile", now=1100.0) == "a"
    assert not store.take_lease("reconcile", "b", 60, now=1100.0)
    assert store.take_lease("reconcile", "b", 60, now=1111.0)           # expired at 1110
    store.release_lease("reconcile", "a")                               # not a's any more: no-op
    assert store.lease_holder("reconcile", now=1112.0) == "b"
    store.release_lease("reconcile", "b")
    assert store.lease_holder("reconcile", now=1112.0) is None


def test_marks_keep_json_values_and_are_replaced(open_store):
    store = open_store()
    assert store.get_mark("log:github:x") is None
    store.set_marks({"log:github:x": {"watermark": 12.5}, "watch:github:acme/api": {"refs/heads/main": "a" * 40}},
                    now=1.0)
    store.set_marks({"log:github:x": {"watermark": 20.0}}, now=2.0)
    assert store.get_mark("log:github:x") == {"watermark": 20.0}
    assert store.get_mark("watch:github:acme/api") == {"refs/heads/main": "a" * 40}


def test_ref_heads_come_from_stored_pushes_newest_first_of_any_case(open_store):
    store = open_store()
    for i, (ref, after) in enumerate([("refs/heads/main", "1" * 40), ("refs/heads/main", "2" * 40),
                                      ("refs/tags/v1", "3" * 40)]):
        store.ingest(new_delivery(f"d-{i}", received_at=1000.0 + i, repo="Acme/API", ref=ref, after=after),
                     [new_job()])
    store.ingest(new_delivery("ignored", received_at=2000.0, outcome="ignored", repo="Acme/API"), [])
    repo, key_head, heads = store.ref_heads("acme/api", fold=True)
    assert (repo, key_head) == ("Acme/API", "github")
    assert heads == {"refs/heads/main": ["2" * 40, "1" * 40], "refs/tags/v1": ["3" * 40]}
    assert store.ref_heads("acme/api", fold=False) == (None, None, {})


def test_via_marks_only_unmarked_deliveries(open_store):
    store = open_store()
    store.ingest(new_delivery("d-1"), [new_job()])
    store.ingest(new_delivery("d-2"), [new_job()])
    assert store.stored_ids(["d-1", "d-2", "d-3"]) == {"d-1", "d-2"}
    assert store.mark_via(["d-1", "d-3"], "redelivery") == 1
    assert store.mark_via(["d-1"], "reconcile") == 0
    assert {r["delivery"]: r["via"] for r in store.list_deliveries()} == {"d-1": "redelivery", "d-2": None}


def test_a_version_5_database_upgrades_to_6_keeping_its_deliveries(db_url):
    store = Store.open(db_url)
    store.ingest(new_delivery("kept"), [new_job()])
    store.close()
    engine, _ = open_engine(db_url)
    with engine.begin() as conn:       # the layout version 5 left
        conn.execute(text("DROP TABLE leases"))
        conn.execute(text("DROP TABLE reconcile_marks"))
        conn.execute(text("ALTER TABLE deliveries DROP COLUMN via"))
        conn.execute(text("DROP TABLE refusals"))              # version 7's
        conn.execute(text(f"UPDATE schema_version SET version = 5 WHERE version = {SCHEMA_VERSION}"))
    engine.dispose()
    store = Store.open(db_url, upgrade=True)
    try:
        status = store.schema_status()
        assert [v for v, _ in status.applied] == [5, *range(6, SCHEMA_VERSION + 1)]
        assert status.version == SCHEMA_VERSION and status.drift == [] and status.current
        assert [(r["delivery"], r["via"]) for r in store.list_deliveries()] == [("kept", None)]
        assert store.take_lease("reconcile", "a", 60, now=1.0)
    finally:
        store.close()
