"""Test support for the store and the dispatcher: a fresh database per test, builders, faults.

Input: pytest's tmp_path. Output: `db_url` (a parametrized fixture: an SQLite file, and a
PostgreSQL schema of its own, skipped cleanly when PostgreSQL is down), `open_store`, delivery
and job builders, and real faults: an unwritable file or directory, a full disk (tmpfs).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
import shutil
import subprocess
import time
import uuid
from contextlib import contextmanager

import psycopg
import pytest

from bridge.events import Event
from bridge.jobs import Job
from bridge.store import NewDelivery, Store

PG_URL = os.environ.get("BRIDGE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PG_CONNINFO = PG_URL.replace("postgresql+psycopg://", "postgresql://")


@functools.lru_cache(maxsize=None)
def pg_down_reason() -> str | None:
    try:
        psycopg.connect(PG_CONNINFO, connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"PostgreSQL not reachable at {PG_CONNINFO}: {str(exc).strip().splitlines()[0]}"
    return None


@contextmanager
def pg_scratch(create: str, drop: str, url: str, *, before_drop=lambda: None):
    """Run `create` on the real server, yield `url`, then `before_drop()` and `drop`; skips the
    test cleanly when PostgreSQL is down. One place for a schema or a database of a test's own."""
    reason = pg_down_reason()
    if reason:
        pytest.skip(reason)
    with psycopg.connect(PG_CONNINFO, autocommit=True) as conn:
        conn.execute(create)
    try:
        yield url
    finally:
        before_drop()
        with psycopg.connect(PG_CONNINFO, autocommit=True) as conn:
            conn.execute(drop)


def pg_schema():
    """A schema of its own, dropped afterwards; yields the store URL that uses it."""
    schema = f"test_{uuid.uuid4().hex[:16]}"
    return pg_scratch(f'CREATE SCHEMA "{schema}"', f'DROP SCHEMA "{schema}" CASCADE',
                      f"{PG_URL}?options=-csearch_path%3D{schema}")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state/bridge.db"
    else:
        with pg_schema() as url:
            yield url


@pytest.fixture
def open_store(db_url):
    """Open stores on this test's database; all are closed at teardown."""
    stores = []

    def _open(url=None, **kwargs) -> Store:
        store = Store.open(url or db_url, **kwargs)
        stores.append(store)
        return store

    yield _open
    for store in stores:
        store.close()


def run_sql(url: str, sql: str) -> None:
    """Run SQL on the test database directly (to set up faults the store must survive)."""
    if url.startswith("sqlite"):
        import sqlite3
        conn = sqlite3.connect(url.split("sqlite:///", 1)[1], isolation_level=None)
        try:
            conn.executescript(sql)
        finally:
            conn.close()
    else:
        schema = url.split("search_path%3D", 1)[1]
        with psycopg.connect(PG_CONNINFO, autocommit=True, options=f"-csearch_path={schema}") as conn:
            conn.execute(sql)


def inject_job_insert_failure(url: str, rule: str = "boom") -> None:
    """Make the database itself refuse to insert a job for `rule`, mid-transaction."""
    if url.startswith("sqlite"):
        run_sql(url, f"""CREATE TRIGGER boom BEFORE INSERT ON jobs WHEN NEW.rule = '{rule}'
                         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;""")
    else:
        run_sql(url, f"""
            CREATE FUNCTION boom() RETURNS trigger AS $$
            BEGIN IF NEW.rule = '{rule}' THEN RAISE EXCEPTION 'injected failure'; END IF;
                  RETURN NEW; END $$ LANGUAGE plpgsql;
            CREATE TRIGGER boom BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION boom();""")


def push_event(delivery_id: str, *, repo="acme/api", ref="refs/heads/main", after=None,
               before="1" * 40) -> Event:
    after = after or uuid.uuid4().hex + "0" * 8
    return Event(provider="github", source="github", delivery_id=delivery_id, kind="push",
                 repo=repo, ref=ref, ref_name=ref.split("/", 2)[2], before=before, after=after,
                 sha=after, pusher="octocat")


def new_delivery(delivery_id: str | None = None, *, received_at: float = 1000.0,
                 outcome: str = "matched", content_key: str | None = "auto", body: bytes | None = None,
                 repo="acme/api", ref="refs/heads/main", after=None, source="github") -> NewDelivery:
    delivery_id = delivery_id or str(uuid.uuid4())
    event = None if outcome == "ignored" else push_event(delivery_id, repo=repo, ref=ref, after=after)
    if content_key == "auto":
        content_key = None if event is None else "|".join(
            ("github", event.repo, event.ref, event.before, event.after))
    return NewDelivery(
        source=source, provider="github", delivery_id=delivery_id, received_at=received_at,
        headers={"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery_id},
        body=body if body is not None else b'{"ref": "refs/heads/main"}', event=event,
        outcome=outcome, reason="" if outcome == "matched" else "no rule matched",
        verdicts=[{"rule": "build", "matched": outcome == "matched", "reason": "", "needs_files": False}],
        rules_version="v1", content_key=content_key)


def new_job(rule: str = "build", target: str = "ci", kind: str = "memory", **request) -> Job:
    needs_files = request.pop("needs_files", False)
    path_filter = request.pop("path_filter", None)
    return Job(rule=rule, target=target, kind=kind, request={"target": target, **request},
               needs_files=needs_files, path_filter=path_filter)


@contextmanager
def unwritable(path):
    """Make a file or directory unwritable, even for root (chattr +i) - a real fault."""
    path = str(path)
    if os.geteuid() != 0:
        mode = os.stat(path).st_mode
        os.chmod(path, 0o555 if os.path.isdir(path) else 0o444)
        try:
            yield
        finally:
            os.chmod(path, mode)
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: cannot make a file unwritable")
    done = subprocess.run(["chattr", "+i", path], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i not supported here: {done.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", path], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs: a disk that really fills up (needs root; skipped otherwise)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def fill_disk(directory: Path) -> Path:
    """Write zeros under `directory` until the disk is full; returns the file (unlink to free)."""
    filler = directory / "filler"
    # Unbuffered: a write cut short by the full disk leaves nothing behind for close() to flush
    # (which would raise ENOSPC again, from outside the try).
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def ingest_many(url: str, prefix: str, count: int) -> list[int]:
    """Run in a separate process: ingest `count` distinct deliveries, return their job ids."""
    store = Store.open(url)
    try:
        ids = []
        for i in range(count):
            ids += store.ingest(new_delivery(f"{prefix}-{i}", received_at=time.time()), [new_job()]).job_ids
        return ids
    finally:
        store.close()


class Clock:
    """An injected clock whose sleep advances time instead of waiting."""

    def __init__(self, t: float = 1000.0):
        self.t = t
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
