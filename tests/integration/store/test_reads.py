"""The delivery page's reads (store/reads.py) on SQLite and PostgreSQL: keyset pages that never
repeat or skip a row, every filter, the chart's counts, and schema version 4's indexes."""
from __future__ import annotations

import pytest
from sqlalchemy import insert, text
from helpers.store import db_url, new_delivery, open_store  # noqa: F401  (fixtures)
from helpers.ui import SCRIPT_BRANCH, fill

from bridge.store import Store
from bridge.store import migrations
from bridge.store.reads import DeliveryFilter, stored_jobs
from bridge.store.schema import SCHEMA_VERSION, schema_version
from bridge.web.ui import chart


def all_pages(store, f=DeliveryFilter(), limit=7):
    seen, cursor = [], None
    while True:
        page = store.delivery_page(f, after=cursor, limit=limit)
        seen += [r["delivery"] for r in page.rows]
        if page.next is None:
            return seen
        cursor = page.next


def test_keyset_pages_cover_every_delivery_once_newest_first(open_store):
    store = open_store()
    filled = fill(store, 60, step=0)   # every delivery at the same second: the id breaks ties
    got = all_pages(store)
    assert len(got) == 60 == len(set(got))
    assert got == sorted(got, reverse=True)
    assert filled.newest in got


def test_filters(open_store):
    store = open_store()
    filled = fill(store, 80)
    rows = store.delivery_page(DeliveryFilter(repo="ACME/API"), limit=100).rows
    assert rows and {r["repo"] for r in rows} == {"acme/api"}            # any case, exact
    glob = all_pages(store, DeliveryFilter(repo="acme/*"))
    every = store.delivery_page(limit=100).rows
    assert glob == [r["delivery"] for r in every if (r["repo"] or "").lower().startswith("acme/")]
    assert len(glob) > 20
    dead = store.delivery_page(DeliveryFilter(job_state="dead"), limit=100).rows
    assert {r["delivery"] for r in dead} == {d for d in filled.by_outcome["matched"]
                                            if any(j["state"] == "dead" for j in
                                                   store.get_delivery(d)["jobs"])}
    assert all(r["outcome"] == "no_match"
               for r in store.delivery_page(DeliveryFilter(outcome="no_match"), limit=100).rows)
    assert len(all_pages(store, DeliveryFilter(outcome="duplicate"))) == len(filled.by_outcome["duplicate"])
    dev = store.delivery_page(DeliveryFilter(ref="dev"), limit=100).rows
    assert dev and {r["ref"] for r in dev} == {"refs/heads/dev"}
    script = store.delivery_page(DeliveryFilter(ref=SCRIPT_BRANCH), limit=5).rows
    assert [r["delivery"] for r in script] == [filled.script_delivery]
    assert len(all_pages(store, DeliveryFilter(rule="build"))) == len(filled.by_outcome["matched"])
    recent = store.delivery_page(DeliveryFilter(since=1_000_000.0 + 70 * 30), limit=100).rows
    assert len(recent) == 10
    with pytest.raises(ValueError):
        store.delivery_page(DeliveryFilter(outcome="accepted"))


def test_a_page_row_has_what_the_list_shows(open_store):
    store = open_store()
    filled = fill(store, 8)
    row = store.delivery_page(limit=1).rows[0]
    assert row["delivery"] == filled.newest and row["matched"] == ["build"]
    assert len(row["sha"]) == 12 and row["jobs"][0]["state"] == "dead"


def test_outcome_counts_by_minute(open_store):
    store = open_store()
    fill(store, 40, start=6000.0, step=15.0)     # four a minute
    counts = store.outcome_counts(since=6000.0, until=6000.0 + 600)
    assert sum(n for _, _, n in counts) == 40
    assert {slot for slot, _, _ in counts} == {6000 + 60 * i for i in range(10)}
    assert {o for _, o, _ in counts} == {"matched", "no_match", "ignored", "duplicate"}


def test_stored_jobs_drop_the_rerun_count(open_store):
    store = open_store()
    filled = fill(store, 4)
    d = store.get_delivery(filled.by_outcome["matched"][0])
    d["jobs"][0]["request"]["bridge_rerun"] = 2
    (job,) = stored_jobs(d)
    assert "bridge_rerun" not in job.request and job.rule == "build"


def test_version_3_gets_the_page_indexes(db_url):
    store = Store.open(db_url)
    with store.engine.begin() as conn:
        conn.execute(text("DROP INDEX deliveries_repo_lower"))
        conn.execute(text("DROP INDEX deliveries_outcome"))
        conn.execute(text("DELETE FROM schema_version"))
        conn.execute(insert(schema_version), [{"version": v, "applied_at": 1.0} for v in (1, 2, 3)])
        assert "index deliveries_repo_lower is missing" in migrations.diff(conn)
    store.close()
    store = Store.open(db_url, upgrade=True)
    try:
        st = store.schema_status()
        assert [v for v, _ in st.applied] == list(range(1, SCHEMA_VERSION + 1))
        assert st.drift == [] and st.current
    finally:
        store.close()


def test_the_charts_counts_read_each_minute_once_and_stay_exact(open_store):
    store = open_store()
    now = 2_000_000_000.0 + 30                      # half a minute into a minute
    fill(store, 30, start=now - 3000, step=100.0)  # the last at now - 100
    counts = chart.Counts()
    first = counts.chart(store, now)
    assert sum(first.totals.values()) == 30
    store.ingest(new_delivery("late", received_at=now + 5), [])      # this minute
    second = counts.chart(store, now + 10)
    assert sum(second.totals.values()) == 31 and second.totals["matched"] == first.totals["matched"] + 1
    store.ingest(new_delivery("next", received_at=now + 40), [])     # the next minute
    third = counts.chart(store, now + 45)
    assert sum(third.totals.values()) == 32
    assert chart.build(store.outcome_counts(since=now - 86400, until=now + 46), now + 45).paths == third.paths


def test_a_globs_literal_start_is_matched_in_sql_with_like_characters_escaped(open_store):
    store = open_store()
    for i, repo in enumerate(["a_b/x", "aXb/x", "A_B/Y", "a%b/z", "other/x"]):
        store.ingest(new_delivery(f"g-{i}", received_at=100.0 + i, repo=repo), [])
    assert [r["repo"] for r in store.delivery_page(DeliveryFilter(repo="a_b/*")).rows] == ["A_B/Y", "a_b/x"]
    assert [r["repo"] for r in store.delivery_page(DeliveryFilter(repo="a%b/*")).rows] == ["a%b/z"]
    assert len(store.delivery_page(DeliveryFilter(repo="**/x")).rows) == 3
