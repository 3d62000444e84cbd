"""The store has no length limits on either backend: schema version 3 turns version 2's VARCHAR(n)
columns into TEXT and hash-indexes deliveries.repo on PostgreSQL; tested by upgrading a database
created with version 2's own layout, then storing names PostgreSQL refused before."""
from __future__ import annotations

import random

import pytest
from sqlalchemy import Index, MetaData, String, insert, inspect, text

from bridge.errors import StoreUnavailable
from bridge.store import Store, migrations
from bridge.store.engine import open_engine
from bridge.store.schema import SCHEMA_VERSION, metadata, schema_version
from bridge.store.inbox import claim_key
from helpers.store import db_url, new_delivery, new_job, run_sql  # noqa: F401  (fixture)

# Version 2's declared lengths (schema.py before version 3), table -> column -> length.
V2_LIMITS = {
    "deliveries": {"id": 200, "source": 200, "provider": 50, "repo": 500, "ref": 500, "outcome": 20,
                   "rules_version": 100, "content_duplicate_of": 200},
    "content_keys": {"delivery_id": 200},
    "jobs": {"delivery_id": 200, "rule": 200, "target": 200, "kind": 50, "state": 20, "lease_owner": 200},
    "job_attempts": {"owner": 200, "outcome": 20},
    "follows": {"run_state": 20, "state": 20, "lease_owner": 200},
    "statuses": {"key": 300, "delivery_id": 200, "rule": 200, "source": 200, "provider": 50, "repo": 500,
                 "sha": 100, "ref": 500, "context": 300, "state": 20, "post_state": 20, "lease_owner": 200},
}
NOISE = random.Random(3).randbytes(2000).hex()      # incompressible, 4,000 characters


def make_version_2(url: str) -> None:
    """A database exactly as version 2 of the bridge created it, with one delivery in it."""
    old = MetaData()
    for table in metadata.sorted_tables:
        copy = table.to_metadata(old)
        for name, length in V2_LIMITS.get(table.name, {}).items():
            copy.c[name].type = String(length)
    deliveries = old.tables["deliveries"]
    deliveries.indexes.discard(next(i for i in deliveries.indexes if i.name == "deliveries_repo"))
    Index("deliveries_repo", deliveries.c.repo, deliveries.c.received_at)
    engine, _ = open_engine(url)
    try:
        with engine.begin() as conn:
            old.create_all(conn)
            conn.execute(insert(schema_version), [{"version": 1, "applied_at": 1.0},
                                                  {"version": 2, "applied_at": 2.0}])
    finally:
        engine.dispose()
    store = Store.open(url, check=False)
    try:
        store.ingest(new_delivery("before-upgrade"), [new_job()])
    finally:
        store.close()


def test_version_2_is_upgraded_and_then_takes_any_length(db_url):
    make_version_2(db_url)
    long_repo, long_ref = "acme/" + NOISE, "refs/heads/" + NOISE
    long = {"repo": long_repo, "ref": long_ref, "after": "f" * 40}
    old = Store.open(db_url, check=False)
    try:
        if db_url.startswith("postgresql"):          # the bug, reproduced on version 2's layout
            with pytest.raises(StoreUnavailable, match="character varying"):
                old.ingest(new_delivery("too-long", repo="acme/" + "a" * 501), [new_job()])
            with old.engine.connect() as conn:
                assert ("column deliveries.repo is limited to 500 characters (schema.py: no limit)"
                        in migrations.diff(conn))
    finally:
        old.close()
    store = Store.open(db_url, upgrade=True)
    try:
        st = store.schema_status()
        assert [v for v, _ in st.applied] == list(range(1, SCHEMA_VERSION + 1))
        assert st.drift == [] and st.current
        assert store.get_delivery("before-upgrade")["jobs"][0]["state"] == "queued"
        first = store.ingest(new_delivery("long-1", **long), [new_job()])
        assert first.job_ids and first.content_duplicate_of is None
        again = store.ingest(new_delivery("long-2", **long), [new_job()])
        assert again.content_duplicate_of == "long-1"        # the long key still dedupes
        [row] = store.list_deliveries(repo=long_repo, state="matched")
        assert (row["delivery"], row["repo"], row["ref"]) == ("long-1", long_repo, long_ref)
        assert store.ingest(new_delivery("d" * 1000), [new_job()]).job_ids
    finally:
        store.close()
    if db_url.startswith("postgresql"):
        schema = db_url.split("search_path%3D", 1)[1]
        engine, _ = open_engine(db_url)
        try:
            with engine.connect() as conn:
                assert conn.execute(text(
                    "SELECT table_name || '.' || column_name FROM information_schema.columns "
                    "WHERE table_schema = :s AND character_maximum_length IS NOT NULL"),
                    {"s": schema}).all() == []
                [index] = [i for i in inspect(conn).get_indexes("deliveries")
                           if i["name"] == "deliveries_repo"]
                assert index["dialect_options"].get("postgresql_using") == "hash"
        finally:
            engine.dispose()


def test_a_missed_step_shows_as_drift_on_postgresql(db_url):
    Store.open(db_url).close()
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite never enforces a declared length: there is nothing to drift")
    run_sql(db_url, "ALTER TABLE statuses ALTER COLUMN ref TYPE VARCHAR(500);"
                    "DROP INDEX deliveries_repo; CREATE INDEX deliveries_repo ON deliveries (repo)")
    store = Store.open(db_url)
    try:
        assert sorted(store.schema_status().drift) == [
            "column statuses.ref is limited to 500 characters (schema.py: no limit)",
            "index deliveries_repo is not a hash index"]
    finally:
        store.close()


@pytest.mark.parametrize("key,stored", [
    (None, None),
    ("github|acme/api|refs/heads/main|" + "1" * 40 + "|" + "2" * 40, None),
    ("x" * 2000, None),
    ("é" * 1000, None),                       # exactly 2,000 bytes
    ("é" * 1001, "hash"),
    ("x" * 2001, "hash"),
])
def test_content_keys_too_long_for_an_index_are_hashed(key, stored):
    got = claim_key(key)
    if stored is None:
        assert got == key
    else:
        assert got.startswith("sha256:") and len(got) == 71 and got == claim_key(key)
        assert claim_key(key + "y") != got
