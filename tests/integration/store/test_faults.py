"""Store faults on real SQLite files and PostgreSQL: a failure mid-transaction leaves nothing, ping, the
server down, other schema versions and empty databases refused, durability, unwritable files and
directories, a full disk, each failing cleanly and recovering."""
from __future__ import annotations

import os
import sqlite3

import pytest

from bridge.store.schema import SCHEMA_VERSION

from bridge.errors import StoreUnavailable
from bridge.store import Store
from helpers.store import db_url, open_store, small_disk  # noqa: F401  (fixtures)
from helpers.store import fill_disk, inject_job_insert_failure, new_delivery, new_job, run_sql, unwritable


# -- failures ---------------------------------------------------------------------------------

def test_a_failure_mid_transaction_leaves_nothing(open_store, db_url):
    store = open_store()
    inject_job_insert_failure(db_url, rule="boom")
    secret_body = b'{"marker": "body-must-not-leak"}'
    d = new_delivery("d-1", body=secret_body, after="e" * 40)
    with pytest.raises(StoreUnavailable) as err:
        store.ingest(d, [new_job("fine"), new_job("boom")])
    assert "injected failure" in str(err.value)
    assert "body-must-not-leak" not in str(err.value)
    assert store.get_delivery("d-1") is None
    assert store.list_deliveries() == []
    # The content key was not claimed either: the redelivery builds.
    got = store.ingest(d, [new_job("fine")])
    assert got.content_duplicate_of is None and len(got.job_ids) == 1


def test_ping(open_store):
    open_store().ping()


def test_postgresql_down_is_store_unavailable():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]           # nothing listens on it once closed
    with pytest.raises(StoreUnavailable, match="store unavailable"):
        Store.open(f"postgresql://postgres@127.0.0.1:{port}/test?connect_timeout=2")


def test_schema_of_another_version_is_refused(open_store, db_url):
    open_store()
    run_sql(db_url, "UPDATE schema_version SET version = 99")
    with pytest.raises(StoreUnavailable, match=rf"schema version 99 is newer than this bridge \({SCHEMA_VERSION}\)"):
        Store.open(db_url)


def test_create_false_refuses_an_empty_database(tmp_path):
    with pytest.raises(StoreUnavailable, match="schema version none"):
        Store.open(f"sqlite:///{tmp_path}/bridge.db", create=False)


@pytest.mark.parametrize("durability,expected", [("full", 2), ("normal", 1)])
def test_sqlite_durability_sets_synchronous_and_wal(tmp_path, durability, expected):
    store = Store.open(f"sqlite:///{tmp_path}/bridge.db", durability=durability)
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == expected
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        store.close()
    with pytest.raises(ValueError, match="durability"):
        Store.open(f"sqlite:///{tmp_path}/bridge.db", durability="fast")


def test_unwritable_database_file_fails_cleanly_and_recovers(tmp_path):
    url = f"sqlite:///{tmp_path}/bridge.db"
    Store.open(url).close()
    store = Store.open(url)
    try:
        store.engine.dispose()      # the fault hits new connections, as after a restart
        with unwritable(tmp_path / "bridge.db"):
            with pytest.raises(StoreUnavailable, match="is not writable"):
                store.ingest(new_delivery("d-1"), [new_job()])
            with pytest.raises(StoreUnavailable):
                store.ping()
            # SQLite would open the file read-only and a read would pool that connection, to
            # fail every write after the file is writable again: no connection is made at all.
            with pytest.raises(StoreUnavailable, match="is not writable"):
                store.get_delivery("d-0")
        assert store.get_delivery("d-1") is None
        # Writable again: the same Store recovers by itself.
        assert store.ingest(new_delivery("d-1"), [new_job()]).job_ids
        store.ping()
    finally:
        store.close()


def test_unwritable_state_directory_is_store_unavailable(tmp_path):
    state = tmp_path / "state"
    url = f"sqlite:///{state}/bridge.db"
    Store.open(url).close()     # leaves bridge.db and bridge.db.lock; -wal/-shm go with the last close
    assert not (state / "bridge.db-wal").exists()
    with unwritable(state):
        with pytest.raises(StoreUnavailable):
            Store.open(url)
    store = Store.open(url)
    try:
        assert store.ingest(new_delivery("d-1"), [new_job()]).job_ids
    finally:
        store.close()


def test_missing_lock_file_in_an_unwritable_directory_is_store_unavailable(tmp_path):
    state = tmp_path / "state"
    url = f"sqlite:///{state}/bridge.db"
    store = Store.open(url)
    try:
        os.unlink(state / "bridge.db.lock")
        store._writer.after_fork()      # as in a freshly forked worker: reopens the lock file
        with unwritable(state):
            with pytest.raises(StoreUnavailable, match="lock"):
                store.ingest(new_delivery("d-1"), [new_job()])
        assert store.ingest(new_delivery("d-1"), [new_job()]).job_ids
    finally:
        store.close()


def test_full_disk_fails_cleanly_and_recovers_when_space_returns(small_disk):
    url = f"sqlite:///{small_disk}/bridge.db"
    store = Store.open(url)
    try:
        store.ingest(new_delivery("before"), [new_job()])
        filler = fill_disk(small_disk)
        big = new_delivery("big", body=os.urandom(512 * 1024))
        with pytest.raises(StoreUnavailable, match="full"):
            store.ingest(big, [new_job()])
        filler.unlink()
        assert store.get_delivery("big") is None
        assert store.ingest(big, [new_job()]).job_ids
        assert store.get_delivery("before") is not None
    finally:
        store.close()
    # The file is intact.
    conn = sqlite3.connect(small_disk / "bridge.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
