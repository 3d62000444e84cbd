"""PostgreSQL parts of the store tests: a fresh database of its own per test on the real server
(`pg_db`, dropped after), one statement run directly, a version-1 database, and starting, stopping
and waiting for the server's cluster."""
from __future__ import annotations

import os
import subprocess
import threading
import uuid

import psycopg
import pytest
from sqlalchemy import insert

from bridge.store.engine import open_engine
from bridge.store.schema import metadata, schema_version
from helpers.process import wait_for
from helpers.store import PG_CONNINFO, PG_URL, pg_down_reason, pg_scratch  # noqa: F401


SECRET = "pg-cluster-secret-51c2"
PAYLOAD = "github/push__f110-single-commit.json"
PG_CLUSTER = os.environ.get("BRIDGE_TEST_PG_CLUSTER", "15 main")   # pg_ctlcluster VERSION NAME
# What version 2 added; a version-1 database is schema.py without these.
V2_TABLES = ("follows", "statuses")


# -- fixtures ---------------------------------------------------------------------------------

@pytest.fixture
def pg_db():
    """A database of its own on the real server; yields its store URL, dropped afterwards."""
    name = f"bridge_t_{uuid.uuid4().hex[:12]}"
    with pg_scratch(f'CREATE DATABASE "{name}"', f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                    PG_URL.rsplit("/", 1)[0] + f"/{name}", before_drop=_ensure_pg_running) as url:
        yield url


def sql(url: str, statement: str, *params):
    """Run one statement on the test's database directly; returns the rows, if any."""
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        cur = conn.execute(statement, params or None)
        return cur.fetchall() if cur.description else None


def make_version_1(url: str) -> None:
    """A database as version 1 of the bridge left it."""
    engine, _ = open_engine(url)
    try:
        with engine.begin() as conn:
            metadata.create_all(conn, tables=[t for t in metadata.sorted_tables if t.name not in V2_TABLES])
            conn.execute(insert(schema_version).values(version=1, applied_at=1.0))
    finally:
        engine.dispose()


RULES = """\
sources:
  github:
    provider: github
    secrets: ["${{env:GH_SECRET}}"]
targets:
  build:
    kind: exec
rules:
  - name: build
    on: {{repo: "**", branches: ["**"]}}
    run:
      target: build
      command: ["sh", "-c", "sleep 0.2; echo \\"$BRIDGE_DELIVERY $BRIDGE_JOB_ID $BRIDGE_ATTEMPT\\" >> {ledger}"]
settings:
  lease_seconds: {lease}
  dispatcher_concurrency: 4
  workers: 2
"""


# -- helpers ---------------------------------------------------------------------------------------

def _within(seconds: float, fn):
    result: list = []
    t = threading.Thread(target=lambda: result.append(fn()), daemon=True)
    t.start()
    t.join(seconds)
    assert result, f"still waiting after {seconds}s"
    return result[0]


def _pg_ctl(*args: str) -> None:
    version, name = PG_CLUSTER.split()
    done = subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, name, *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def _ensure_pg_running() -> None:
    """Leave the server up for everyone else, whatever happened in the test."""
    if _pg_answers():
        return
    version, name = PG_CLUSTER.split()
    status = subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "status"],
                            capture_output=True, timeout=30)
    if status.returncode == 3:      # not running (pg_ctl's code); else it is starting up
        _pg_ctl("start")
    wait_for(_pg_answers, timeout=60, what="PostgreSQL to accept connections again")


def _pg_answers() -> bool:
    try:
        psycopg.connect(PG_CONNINFO, connect_timeout=2).close()
        return True
    except psycopg.Error:
        return False
