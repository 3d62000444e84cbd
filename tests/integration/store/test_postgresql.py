"""The store on a real PostgreSQL server: claims skip jobs another transaction has locked, connections
the server dropped are replaced unnoticed, session settings bound every statement."""
from __future__ import annotations


import psycopg
from sqlalchemy import text

from bridge.store import Store
from helpers.store import PG_URL, new_delivery, new_job  # noqa: F401
from helpers.pg import _within, pg_db, sql  # noqa: F401  (fixture)


# -- PostgreSQL: claims, pool ------------------------------------------------------------------

def test_claims_skip_jobs_another_transaction_has_locked(pg_db):
    store = Store.open(pg_db)
    try:
        ids = [store.ingest(new_delivery(f"d-{i}", received_at=1000.0 + i), [new_job()]).job_ids[0]
               for i in range(3)]
        with psycopg.connect(pg_db.replace("postgresql+psycopg://", "postgresql://")) as other:
            other.execute("SELECT id FROM jobs WHERE id = %s FOR UPDATE", (ids[0],))
            # Without SKIP LOCKED this claim would wait for `other` (and the test time out).
            claimed = _within(5.0, lambda: store.claim("A", 10, lease_seconds=60, now=2000.0))
            assert sorted(c.id for c in claimed) == ids[1:]
            other.rollback()
        assert [c.id for c in store.claim("B", 10, lease_seconds=60, now=2000.0)] == ids[:1]
    finally:
        store.close()


def test_connections_the_server_dropped_are_replaced_unnoticed(pg_db):
    store = Store.open(pg_db)
    try:
        store.ingest(new_delivery("d-1"), [new_job()])
        name = pg_db.rsplit("/", 1)[1]
        killed = sql(PG_URL, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = %s AND pid <> pg_backend_pid()", name)
        assert killed, "the store held no connection to drop"
        # Each call checks its connection out with a ping, finds it dead and opens another.
        assert store.ingest(new_delivery("d-2"), [new_job()]).job_ids
        assert store.claim("A", 10, lease_seconds=60, now=5000.0)
    finally:
        store.close()


def test_session_settings_bound_every_statement_and_idle_transaction(pg_db):
    store = Store.open(pg_db, durability="normal", pool_size=2)
    try:
        with store.engine.connect() as conn:
            got = [conn.execute(text(f"SHOW {s}")).scalar() for s in
                   ("statement_timeout", "idle_in_transaction_session_timeout", "synchronous_commit")]
        assert got == ["20s", "1min", "off"]
        assert store.engine.pool.size() == 2
    finally:
        store.close()
