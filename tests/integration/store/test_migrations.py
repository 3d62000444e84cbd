"""The store's schema versions on SQLite and PostgreSQL: created at the code version, older schemas
upgraded (or waiting for the operator), newer ones and foreign tables refused, failed steps leave the
previous version, instances starting together create it once, WAL for every opener."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import insert, inspect, text

from bridge.errors import StoreUnavailable
from bridge.store import Store, migrations
from bridge.store.engine import open_engine
from bridge.store.schema import SCHEMA_VERSION, schema_version
from helpers.store import db_url, new_delivery, new_job  # noqa: F401
from helpers.pg import V2_TABLES, make_version_1


# -- schema versions (SQLite and PostgreSQL) ---------------------------------------------------

def test_every_version_after_the_baseline_has_its_step():
    assert [s.version for s in migrations.STEPS] == list(range(2, SCHEMA_VERSION + 1))


def test_a_fresh_database_is_created_at_the_code_version(db_url):
    store = Store.open(db_url)
    try:
        st = store.schema_status()
        assert (st.version, st.code_version, st.pending, st.drift) == (SCHEMA_VERSION, SCHEMA_VERSION, [], [])
        assert [v for v, _ in st.applied] == [SCHEMA_VERSION] and st.current
    finally:
        store.close()


def test_an_older_schema_upgrades_itself_on_sqlite_and_waits_for_the_operator_on_postgresql(db_url):
    make_version_1(db_url)
    if db_url.startswith("postgresql"):
        with pytest.raises(StoreUnavailable, match=rf"schema version 1 is older than this bridge "
                                                   rf"\({SCHEMA_VERSION}\): run `cibridge db upgrade`"):
            Store.open(db_url)
        store = Store.open(db_url, upgrade=True)
    else:
        store = Store.open(db_url)
    try:
        st = store.schema_status()
        assert [v for v, _ in st.applied] == list(range(1, SCHEMA_VERSION + 1))
        assert st.drift == [] and st.current      # the steps built exactly what schema.py says
        store.ingest(new_delivery("d-1"), [new_job()])
    finally:
        store.close()


def test_operator_commands_never_change_the_schema(db_url):
    make_version_1(db_url)
    with pytest.raises(StoreUnavailable, match=r"older than this bridge .* run `cibridge db upgrade`"):
        Store.open(db_url, create=False)
    store = Store.open(db_url, create=False, check=False)
    try:
        assert store.schema_status().version == 1
        assert [s.version for s in store.schema_status().pending] == list(range(2, SCHEMA_VERSION + 1))
    finally:
        store.close()


def test_a_newer_schema_is_refused_even_with_upgrade(db_url):
    Store.open(db_url).close()
    store = Store.open(db_url, check=False)
    try:
        with store.engine.begin() as conn:
            conn.execute(insert(schema_version).values(version=SCHEMA_VERSION + 7, applied_at=2.0))
    finally:
        store.close()
    for kwargs in ({}, {"upgrade": True}, {"create": False}):
        with pytest.raises(StoreUnavailable, match=rf"schema version {SCHEMA_VERSION + 7} is newer than "
                                                   rf"this bridge \({SCHEMA_VERSION}\)"):
            Store.open(db_url, **kwargs)


def test_another_applications_tables_are_not_adopted(db_url):
    engine, _ = open_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE jobs (id INTEGER PRIMARY KEY, payload TEXT)"))
    finally:
        engine.dispose()
    with pytest.raises(StoreUnavailable, match="tables jobs exist but carry no bridge schema version"):
        Store.open(db_url)


def test_a_failed_step_leaves_the_previous_version_intact(db_url):
    make_version_1(db_url)

    def broken(conn):
        migrations.STEPS[0].apply(conn)       # the real step, then a failure
        conn.execute(text("SELECT * FROM no_such_table"))

    store = Store.open(db_url, check=False)
    try:
        with pytest.raises(StoreUnavailable):
            with store._tx() as conn:
                migrations.migrate(conn, create=True, upgrade=True, target=2,
                                   steps=(migrations.Step(2, "broken", broken),))
        st = store.schema_status()
        assert st.version == 1
        with store.engine.connect() as conn:
            assert not set(V2_TABLES) & set(inspect(conn).get_table_names())
    finally:
        store.close()


def test_instances_starting_together_create_the_schema_once(db_url):
    stores, errors = [], []

    def start():
        try:
            stores.append(Store.open(db_url))
        except Exception as exc:  # collected: the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert [v for v, _ in stores[0].schema_status().applied] == [SCHEMA_VERSION]
    finally:
        for s in stores:
            s.close()


def test_processes_opening_a_new_sqlite_file_together_all_get_wal(tmp_path):
    # The switch to WAL on a fresh file answered "database is locked" at once, without the busy
    # handler, to a connection racing another through it (about 1 start in 40 lost a worker).
    for round_ in range(40):
        url = f"sqlite:///{tmp_path}/r{round_}.db"
        modes, errors = [], []

        def connect():
            engine, _ = open_engine(url)
            try:
                with engine.connect() as conn:
                    modes.append(conn.exec_driver_sql("PRAGMA journal_mode").scalar())
            except Exception as exc:  # collected: the assertion below shows it
                errors.append(exc)
            finally:
                engine.dispose()

        threads = [threading.Thread(target=connect) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and modes == ["wal"] * 6, round_
