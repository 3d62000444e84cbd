"""Schema version 5 (per-target policy) on SQLite and PostgreSQL: a version-4 database with a
waiting job is upgraded to exactly schema.py's layout, and its job is claimed under a policy."""
from __future__ import annotations

from dataclasses import replace

from sqlalchemy import MetaData, insert

from bridge.jobs import Run
from bridge.policies import Policies, TargetPolicy
from bridge.store import Store
from bridge.store.engine import open_engine
from bridge.store.schema import SCHEMA_VERSION, metadata, schema_version
from helpers.store import db_url, new_delivery, new_job  # noqa: F401  (fixture)

V5_COLUMNS = ("policy_group", "superseded_by")


def make_version_4(url: str) -> None:
    """A database as version 4 created it (no policy columns or table), one job waiting."""
    old = MetaData()
    for table in metadata.sorted_tables:
        if table.name == "policy_state":
            continue
        copy = table.to_metadata(old)
        if table.name == "jobs":
            for name in V5_COLUMNS:
                copy._columns.remove(copy.c[name])
    engine, _ = open_engine(url)
    try:
        with engine.begin() as conn:
            old.create_all(conn)
            conn.execute(insert(schema_version), [{"version": v, "applied_at": float(v)} for v in (1, 2, 3, 4)])
    finally:
        engine.dispose()
    store = Store.open(url, check=False)
    try:
        jobs = old.tables["jobs"]
        with store.engine.begin() as conn:        # the ingest of version 4: no policy_group column
            from_v3 = new_delivery("before-upgrade", received_at=1000.0)
            conn.execute(insert(old.tables["deliveries"]).values(
                id=from_v3.delivery_id, source="github", provider="github", received_at=1000.0,
                repo="acme/api", ref="refs/heads/main", outcome="matched", reason="", headers={},
                body=b"{}", event=from_v3.event.to_dict(), verdicts=[], rules_version="v1"))
            conn.execute(insert(jobs).values(
                delivery_id=from_v3.delivery_id, rule="build", target="ci", kind="memory",
                request={"target": "ci"}, needs_files=False, state="queued", attempts=0,
                first_queued_at=1000.0, next_attempt_at=1000.0, updated_at=1000.0))
    finally:
        store.close()


def test_version_4_is_upgraded_and_its_waiting_job_runs_under_a_policy(db_url):
    assert SCHEMA_VERSION >= 5
    make_version_4(db_url)
    store = Store.open(db_url, upgrade=True)
    try:
        st = store.schema_status()
        assert [v for v, _ in st.applied] == list(range(1, SCHEMA_VERSION + 1))
        assert st.drift == [] and st.current
        policies = Policies(targets={"ci": TargetPolicy(max_running=1, on_newer="coalesce")})
        (new,) = store.ingest(new_delivery("after-upgrade", received_at=1001.0),
                              [replace(new_job(), group="build/refs/heads/main")]).job_ids
        # The old job has no group: it is a group of its own, never coalesced with the new one.
        (first,) = store.claim("A", 5, lease_seconds=60, now=1002.0, policies=policies)
        assert first.delivery == "before-upgrade" and first.group == ""
        assert store.claim("A", 5, lease_seconds=60, now=1002.0, policies=policies) == []  # max 1
        assert store.record_run(first.id, "A", Run("m-1", state="succeeded"), now=1003.0)
        (second,) = store.claim("A", 5, lease_seconds=60, now=1004.0, policies=policies)
        assert (second.id, second.group) == (new, "build/refs/heads/main")
    finally:
        store.close()
