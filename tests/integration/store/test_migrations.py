"""Several bridge instances on one PostgreSQL database, and the store's schema versions.

Real parts only: the PostgreSQL server at 127.0.0.1:5432 (a fresh database per test, dropped
after; skipped when the server is down), SQLite files, `cibridge serve` processes on 127.0.0.1 fed
signed copies of a real GitHub push, a real SIGKILL of one instance's whole process tree and a
real restart of the server. A ledger file, one line per build the exec target runs, is the truth.
"""
from __future__ import annotations

import collections
import hashlib
import itertools
import os
import queue
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import insert, inspect, text

from bridge.cli.db import db
from bridge.errors import StoreUnavailable
from bridge.store import Store, migrations
from bridge.store.engine import open_engine
from bridge.store.schema import SCHEMA_VERSION, metadata, schema_version
from helpers.payloads import load_payload, sign_github
from helpers.process import BridgeProcess, children, wait_for
from helpers.store import PG_CONNINFO, PG_URL, db_url, new_delivery, new_job, pg_down_reason  # noqa: F401

SECRET = "pg-cluster-secret-51c2"
PAYLOAD = "github/push__f110-single-commit.json"
PG_CLUSTER = os.environ.get("BRIDGE_TEST_PG_CLUSTER", "15 main")   # pg_ctlcluster VERSION NAME
# What version 2 added; a version-1 database is schema.py without these.
V2_TABLES = ("follows", "statuses")


# -- fixtures ---------------------------------------------------------------------------------

@pytest.fixture
def pg_db():
    """A database of its own on the real server; yields its store URL, dropped afterwards."""
    reason = pg_down_reason()
    if reason:
        pytest.skip(reason)
    name = f"bridge_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_CONNINFO, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        _ensure_pg_running()
        with psycopg.connect(PG_CONNINFO, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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


def test_bridge_db_status_and_upgrade(pg_db):
    url = pg_db.replace("postgres@", "postgres:hunter2@")    # trust auth ignores it; never shown
    runner = CliRunner()
    out = runner.invoke(db, ["status", "--database-url", url])
    assert out.exit_code == 1, out.output
    assert "schema version: none" in out.output and "hunter2" not in out.output

    make_version_1(pg_db)
    out = runner.invoke(db, ["status", "--database-url", url])
    assert out.exit_code == 1
    assert f"schema version: 1 (this bridge: {SCHEMA_VERSION})" in out.output
    assert "2  pending: " in out.output and "run `cibridge db upgrade`" in out.output

    out = runner.invoke(db, ["upgrade", "--database-url", url])
    assert out.exit_code == 0, out.output
    assert f"schema version 1 -> {SCHEMA_VERSION}" in out.output
    out = runner.invoke(db, ["upgrade", "--database-url", url])
    assert out.exit_code == 0 and "already current" in out.output

    out = runner.invoke(db, ["status", "--database-url", url])
    assert out.exit_code == 0, out.output
    assert "hunter2" not in out.output and "***" in out.output

    sql(pg_db, "ALTER TABLE jobs DROP COLUMN url")
    out = runner.invoke(db, ["status", "--database-url", url])
    assert out.exit_code == 1 and "drift: column jobs.url is missing" in out.output


def test_bridge_db_reads_the_database_from_rules_and_environment(tmp_path, pg_db, monkeypatch):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(lease=2, ledger=tmp_path / "ledger"), encoding="utf-8")
    monkeypatch.setenv("GH_SECRET", SECRET)
    monkeypatch.setenv("BRIDGE_DATABASE_URL", pg_db)
    out = CliRunner().invoke(db, ["upgrade", "--rules", str(rules), "--state-dir", str(tmp_path)])
    assert out.exit_code == 0 and f"schema version none -> {SCHEMA_VERSION}" in out.output
    assert sql(pg_db, "SELECT max(version) FROM schema_version") == [(SCHEMA_VERSION,)]


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


# -- several `cibridge serve` instances on one database -------------------------------------------

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


def deliveries(count: int) -> list[tuple[str, bytes, dict]]:
    """`count` distinct pushes: the real payload with a fresh `after`, signed, each its own id."""
    body, headers = load_payload(PAYLOAD)
    original = b"002ab36d7679fb3f5b1502063ae06b273b9f897c"
    assert body.count(original) >= 1
    run = uuid.uuid4().hex
    out = []
    for i in range(count):
        sha = hashlib.sha1(f"{run}-{i}".encode()).hexdigest().encode()
        b = body.replace(original, sha)
        h = {**headers, "X-GitHub-Delivery": str(uuid.uuid4()), **sign_github(b, SECRET)}
        out.append((h["X-GitHub-Delivery"], b, h))
    return out


def start_cluster(tmp_path, url: str, n: int, lease: float) -> tuple[list[BridgeProcess], Path]:
    ledger = tmp_path / "ledger"
    ledger.touch()
    text_ = RULES.format(lease=lease, ledger=ledger)
    env = {"GH_SECRET": SECRET, "BRIDGE_DATABASE_URL": url}
    nodes = [BridgeProcess(tmp_path / f"node{i}", text_, env=env) for i in range(n)]
    errors = []

    def start(node):
        try:
            node.start(timeout=60)
        except Exception as exc:  # reported below, with the node's log
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(node,)) for node in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        for node in nodes:
            node.stop()
        raise errors[0]
    return nodes, ledger


class Stream:
    """Posts deliveries over the live instances (a load balancer's round robin), a few at a time,
    at a steady pace; records each answer: a status code, or None for no answer at all."""

    def __init__(self, nodes, items, *, clients=4, pace=0.1):
        self.nodes, self.items, self.clients, self.pace = nodes, items, clients, pace
        self.dead: set[int] = set()
        self.answers: dict[str, int | None] = {}
        self.sent = 0
        self._lock = threading.Lock()
        self._rr = itertools.count()

    def node(self) -> BridgeProcess:
        live = [n for i, n in enumerate(self.nodes) if i not in self.dead]
        return live[next(self._rr) % len(live)]

    def post(self, node, body, headers) -> int | None:
        try:
            return node.post("github", body, headers, timeout=15).status_code
        except requests.RequestException:
            return None

    def run(self, at_third=None) -> None:
        work = queue.Queue()
        for item in self.items:
            work.put(item)
        fault = None

        def client():
            nonlocal fault
            while True:
                try:
                    delivery, body, headers = work.get_nowait()
                except queue.Empty:
                    return
                status = self.post(self.node(), body, headers)
                with self._lock:
                    self.answers[delivery] = status
                    self.sent += 1
                    if at_third and fault is None and self.sent >= len(self.items) // 3:
                        fault = threading.Thread(target=at_third)
                        fault.start()
                time.sleep(self.pace)

        threads = [threading.Thread(target=client) for _ in range(self.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if fault is not None:
            fault.join()

    def redeliver_refused(self, deadline: float = 60.0) -> None:
        """What GitHub's redelivery does for a delivery that got no 2xx: the same bytes again."""
        by_id = {d: (b, h) for d, b, h in self.items}
        end = time.monotonic() + deadline
        for delivery, status in list(self.answers.items()):
            while status not in (200, 202):
                assert time.monotonic() < end, f"delivery {delivery} never accepted: last {status}"
                status = self.post(self.node(), *by_id[delivery])
                if status not in (200, 202):
                    time.sleep(0.2)


def tree(pid: int) -> list[int]:
    """pid and all its descendants, parents first."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo += children(p)
    return out


def sigkill_tree(node: BridgeProcess) -> list[int]:
    pids = tree(node.proc.pid)      # supervisor, gunicorn master and workers, dispatcher, builds
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    node.proc.wait(10)
    return pids


def wait_until_built(url: str, ledger: Path, expected: int, timeout: float) -> None:
    def done():
        rows = sql(url, "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')")
        return rows == [(0,)] and sql(url, "SELECT count(*) FROM jobs") == [(expected,)]
    wait_for(done, timeout=timeout, interval=0.2, what="every job to finish")


def check_ledger(url: str, ledger: Path, stream: Stream, *, lost_owner: str | None = None) -> dict:
    """sent = acknowledged + refused; every delivery, once acknowledged (at first or on
    redelivery), built exactly once. The one exception DESIGN.md allows: a build whose dispatcher
    died after starting it and before recording it runs again, and its job shows the lost lease."""
    answers = stream.answers
    acked = [d for d, s in answers.items() if s in (200, 202)]
    refused = [d for d, s in answers.items() if s not in (200, 202)]
    assert len(answers) == len(stream.items) == len(acked) + len(refused)
    assert {s for s in answers.values()} <= {202, 503, None}, collections.Counter(answers.values())

    lines = ledger.read_text().split()
    builds = collections.Counter(lines[0::3])
    sent = {d for d, _, _ in stream.items}
    assert set(builds) == sent, f"built but never sent: {set(builds) - sent}; " \
                                f"sent, never built: {sent - set(builds)}"
    jobs = dict(sql(url, "SELECT delivery_id, state FROM jobs"))
    assert set(jobs) == sent and set(jobs.values()) == {"succeeded"}
    twice = {d for d, n in builds.items() if n > 1}
    if twice:
        assert lost_owner is not None and max(builds.values()) == 2, builds.most_common(3)
        lost = {r[0] for r in sql(url, "SELECT j.delivery_id FROM job_attempts a JOIN jobs j "
                                       "ON j.id = a.job_id WHERE a.outcome = 'lost' AND a.owner = %s",
                                  lost_owner)}
        assert twice <= lost, f"built twice without a lost lease: {twice - lost}"
    return {"sent": len(answers), "acked_first": len(acked), "refused_first": len(refused),
            "built_twice": len(twice)}


@pytest.mark.slow
def test_an_instance_killed_mid_stream_loses_nothing_and_builds_nothing_twice(tmp_path, pg_db):
    # Three supervisors find the database empty at once: one creates the schema.
    nodes, ledger = start_cluster(tmp_path, pg_db, 3, lease=2)
    victim = nodes[1]
    try:
        dispatcher = victim.child("dispatch")
        owner = f"{socket.gethostname()}:{dispatcher}"
        stream = Stream(nodes, deliveries(150), clients=6, pace=0.1)

        def kill():
            # Strike while the victim's dispatcher holds leases: those jobs must be taken over.
            wait_for(lambda: sql(pg_db, "SELECT count(*) FROM jobs WHERE state = 'running' "
                                        "AND lease_owner = %s", owner)[0][0] > 0,
                     timeout=20, interval=0.01, what="the victim to hold a lease")
            sigkill_tree(victim)
            stream.dead.add(1)

        stream.run(at_third=kill)
        assert victim.proc.returncode == -signal.SIGKILL
        stream.redeliver_refused()
        wait_until_built(pg_db, ledger, len(stream.items), timeout=60)
        figures = check_ledger(pg_db, ledger, stream, lost_owner=owner)
        taken = sql(pg_db, "SELECT count(*) FROM job_attempts WHERE outcome = 'lost' AND owner = %s", owner)
        assert taken[0][0] >= 1, "no job of the killed instance was taken over"
        print(f"ledger: {figures}, leases taken over: {taken[0][0]}")
    finally:
        for node in nodes:
            node.stop()


@pytest.mark.slow
def test_a_postgresql_restart_mid_stream_loses_nothing_and_everything_resumes(tmp_path, pg_db):
    # Leases outlast the outage, so no job changes hands while the server is away.
    nodes, ledger = start_cluster(tmp_path, pg_db, 2, lease=15)
    try:
        pids = [(n.child("web"), n.child("dispatch")) for n in nodes]
        stream = Stream(nodes, deliveries(120), clients=4, pace=0.1)

        def restart():
            _pg_ctl("stop", "-m", "fast")
            time.sleep(2.0)        # deliveries keep coming meanwhile: each must get a 503
            _pg_ctl("start")

        stream.run(at_third=restart)
        refused = [s for s in stream.answers.values() if s != 202]
        assert refused and set(refused) == {503}, collections.Counter(stream.answers.values())
        stream.redeliver_refused()
        wait_until_built(pg_db, ledger, len(stream.items), timeout=90)
        figures = check_ledger(pg_db, ledger, stream)
        assert figures["built_twice"] == 0
        # Recovered in place: no process was restarted to get there.
        assert [(n.child("web"), n.child("dispatch")) for n in nodes] == pids
        for node in nodes:
            assert requests.get(f"{node.url}/readyz", timeout=5).status_code == 200
        print(f"ledger: {figures}")

        # One push raced at both instances at once, under one id and under fresh ids (a second
        # hook, a replayed capture): the unique keys let exactly one in.
        delivery, body, headers = deliveries(1)[0]
        copies = [headers] * 3 + [{**headers, "X-GitHub-Delivery": str(uuid.uuid4())} for _ in range(3)]
        statuses = []
        threads = [threading.Thread(target=lambda n=nodes[i % 2], h=h: statuses.append(
            n.post("github", body, h).status_code)) for i, h in enumerate(copies)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses) == [200] * 5 + [202]
        wait_until_built(pg_db, ledger, len(stream.items) + 1, timeout=30)
        assert ledger.read_text().split()[0::3].count(delivery) + sum(
            ledger.read_text().split()[0::3].count(h["X-GitHub-Delivery"]) for h in copies[3:]) == 1
    finally:
        _ensure_pg_running()
        for node in nodes:
            node.stop()


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
