"""The record of refused deliveries (store/refusals.py) on SQLite and PostgreSQL: what a row keeps
(clipped, printable), the cap and the age prune, the list's keyset pages with refusals among the
deliveries (every row once, in order, ties included), the filters that keep or drop them, the
chart's counts, and the upgrade of a version-6 database to version 7."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from bridge.store import NewRefusal, Store
from bridge.store import refusals as refusals_module
from bridge.store.engine import open_engine
from bridge.store.reads import DeliveryFilter
from bridge.store.schema import SCHEMA_VERSION, refusals
from helpers.store import db_url, new_delivery, new_job, open_store, run_sql  # noqa: F401  (fixtures)
from helpers.ui import fill


def refusal(at: float, **kw) -> NewRefusal:
    return NewRefusal(**{"received_at": at, "source": "github", "status": 401,
                         "reason": "X-Hub-Signature-256 does not match the body", **kw})


def count(store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(refusals)).scalar()


def all_pages(store, f=DeliveryFilter(), limit=7):
    seen, cursor = [], None
    while True:
        page = store.delivery_page(f, after=cursor, limit=limit)
        seen += page.rows
        if page.next is None:
            return seen
        cursor = page.next


def key(row) -> tuple:
    return ("r", row["refusal"]) if row["outcome"] == "refused" else ("d", row["delivery"])


def test_a_row_keeps_only_clipped_printable_text(open_store):
    store = open_store()
    rid = store.record_refusal(refusal(1000.0, source="x\x00y\n" + "s" * 500, reason="r" * 1000,
                                       delivery="id\x1b[31m", peer="203.0.113.9", dropped=3))
    got = store.get_refusal(rid)
    assert got["source"].startswith("x\\x00y\\n") and len(got["source"]) == 100
    assert len(got["reason"]) == 300 and got["reason"].endswith("...")
    assert got["host_delivery"] == "id\\x1b[31m"
    assert (got["status"], got["peer"], got["dropped"], got["outcome"]) == (401, "203.0.113.9", 3, "refused")
    assert store.get_refusal(rid + 1) is None


def test_the_record_keeps_the_newest_rows_and_prune_drops_old_ones(open_store):
    store = open_store()
    for i in range(refusals_module.TRIM_EVERY * 2 + 5):
        store.record_refusal(refusal(1000.0 + i), keep=50)
    # trimmed at ids 100 and 200 to the newest 50; 5 written since
    assert count(store) == 55
    assert store.prune_refusals(1000.0 + 180, keep=50) == 180 - 150     # ids 151..180 (times 1150..1179)
    assert count(store) == 25
    assert store.prune_refusals(0.0, keep=10) == 15 and count(store) == 10


def test_pages_list_refusals_among_deliveries_each_once_in_order(open_store):
    store = open_store()
    filled = fill(store, 40, step=10.0, refused=15)
    # ties: a refusal at the very time of a delivery comes after it, whichever page it falls on
    tie = store.get_delivery(filled.by_outcome["matched"][2])["received_at"]
    tied = [store.record_refusal(refusal(tie)) for _ in range(3)]
    for limit in (1, 4, 7, 50):
        rows = all_pages(store, limit=limit)
        assert len(rows) == 40 + 15 + 3 == len({key(r) for r in rows}), limit
        order = [(r["received_at"], r["outcome"] != "refused") for r in rows]
        assert order == sorted(order, reverse=True), limit
    at_tie = [key(r) for r in all_pages(store, limit=3) if r["received_at"] == tie]
    assert at_tie == [("d", filled.by_outcome["matched"][2])] + [("r", t) for t in reversed(tied)]


def test_filters_keep_or_drop_refusals(open_store):
    store = open_store()
    filled = fill(store, 40, step=10.0, refused=8)
    only = all_pages(store, DeliveryFilter(outcome="refused"), limit=3)
    assert [r["refusal"] for r in only] == list(reversed(filled.refused))
    assert all(r["reason"] and r["status"] in (400, 401, 404, 413) for r in only)
    nope = all_pages(store, DeliveryFilter(source="nope"))
    assert nope and {r["outcome"] for r in nope} == {"refused"}
    for f in (DeliveryFilter(repo="acme/api"), DeliveryFilter(repo="acme/*"), DeliveryFilter(ref="main"),
              DeliveryFilter(rule="build"), DeliveryFilter(job_state="dead"),
              DeliveryFilter(outcome="matched")):
        assert all(r["outcome"] != "refused" for r in all_pages(store, f)), f
    recent = all_pages(store, DeliveryFilter(since=1_000_000.0 + 200))
    assert {r["outcome"] for r in recent} >= {"refused", "matched"}
    assert all(r["received_at"] >= 1_000_000.0 + 200 for r in recent)
    with pytest.raises(ValueError):
        store.delivery_page(DeliveryFilter(outcome="accepted"))


def test_the_chart_counts_refusals_with_those_not_recorded(open_store):
    store = open_store()
    store.ingest(new_delivery("d-1", received_at=6000.0), [new_job()])
    store.record_refusal(refusal(6001.0, dropped=4))
    store.record_refusal(refusal(6010.0))
    store.record_refusal(refusal(6070.0, dropped=1))
    counts = sorted(store.outcome_counts(since=5940.0, until=6120.0))
    assert counts == [(6000, "matched", 1), (6000, "refused", 6), (6060, "refused", 2)]


def test_a_version_6_database_upgrades_to_7_and_records_refusals(db_url):
    store = Store.open(db_url)
    store.ingest(new_delivery("kept"), [new_job()])
    store.close()
    engine, _ = open_engine(db_url)
    with engine.begin() as conn:       # the layout version 6 left
        conn.execute(text("DROP TABLE refusals"))
        conn.execute(text(f"UPDATE schema_version SET version = 6 WHERE version = {SCHEMA_VERSION}"))
    engine.dispose()
    if db_url.startswith("postgresql"):
        with pytest.raises(Exception, match="run `cibridge db upgrade`"):
            Store.open(db_url)
    store = Store.open(db_url, upgrade=True)
    try:
        status = store.schema_status()
        assert [v for v, _ in status.applied][:2] == [6, 7]
        assert status.version == SCHEMA_VERSION and status.drift == [] and status.current
        assert [r["delivery"] for r in store.delivery_page().rows] == ["kept"]
        rid = store.record_refusal(refusal(2000.0))
        assert [r.get("refusal") for r in store.delivery_page().rows] == [rid, None]
    finally:
        store.close()


def test_ids_beyond_the_columns_range_find_nothing_and_break_nothing(open_store):
    """A cursor or a page address is typed by whoever holds the URL: an id no integer column can
    hold is no row (get_refusal None) and no reason for an error (a page after it, on either
    backend: SQLite raised OverflowError, PostgreSQL 'integer out of range')."""
    store = open_store()
    rid = store.record_refusal(refusal(1000.0))
    for huge in (2 ** 31, -(2 ** 31) - 1, 2 ** 63, 10 ** 30):
        assert store.get_refusal(huge) is None
    assert [r["refusal"] for r in store.delivery_page(after=(1000.0, 10 ** 30, "refused")).rows] == [rid]
    assert store.delivery_page(after=(1000.0, -(10 ** 30), "refused")).rows == []
    assert store.get_refusal(rid)["refusal"] == rid        # the store still answers


def test_pages_keep_the_databases_order_of_deliveries_of_one_time(db_url):
    """Deliveries of the same time are paged in the database's order of their ids (its
    collation: en_US and ICU ones put 'a' before 'B', Python's str order does not); merging the
    refusals in must keep that order, or the next page's cursor skips and repeats rows."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite compares ids as Python does (BINARY)")
    store = Store.open(db_url)
    try:
        try:
            run_sql(db_url, 'ALTER TABLE deliveries ALTER COLUMN id TYPE text COLLATE "en-x-icu"')
        except Exception as exc:       # noqa: BLE001 - a server built without ICU
            pytest.skip(f"no ICU collation on this server: {exc}")
        for did in ("a", "B", "c", "D", "e"):
            store.ingest(new_delivery(did, received_at=1000.0), [])
        rid = store.record_refusal(refusal(500.0))
        for limit in (1, 2, 3, 4):
            rows = all_pages(store, limit=limit)
            assert [key(r) for r in rows] == [("d", d) for d in ("e", "D", "c", "B", "a")] + [("r", rid)], limit
    finally:
        store.close()


def test_a_count_of_dropped_refusals_beyond_the_column_is_kept_at_its_top(open_store):
    """The recorder adds up every refusal it could not write (a flood while the store was down
    for long): a sum past the INTEGER column must not make every later row fail to write."""
    store = open_store()
    rid = store.record_refusal(refusal(1000.0, dropped=2 ** 40))
    assert store.get_refusal(rid)["dropped"] == 2 ** 31 - 1
