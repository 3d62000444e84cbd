"""Store connections: one SQLAlchemy engine per database URL, tuned for SQLite or PostgreSQL.

Input: a database URL and the durability setting. Output: an `Engine` plus the writer lock that
every write transaction holds (an flock on SQLite, nothing on PostgreSQL).

SQLite: WAL; every write transaction is `BEGIN IMMEDIATE` (a read that later writes could
otherwise fail with "database is locked"); `synchronous=FULL` for durability "full" (survives power
loss), NORMAL for "normal" (survives kill -9 of any process, may lose the last commits on power
loss). Writers from several processes (gunicorn workers, the dispatcher) queue on an flock of
`<db>.lock` instead of SQLite's busy handler, which sleeps in 1-100 ms steps and wrecks the tail
latency of acks; a blocked flock wakes the moment the holder releases it, and the kernel drops the
lock of a killed process.

PostgreSQL: psycopg 3 and a connection pool per process, sized for one gunicorn worker or one
dispatcher (below); every timeout is short enough that a database that is gone turns into a
`StoreUnavailable` (a 503 for ingest) within seconds rather than a hung worker, and a pre-ping
at checkout replaces connections a restarted server has closed, so service resumes by itself.
"""
from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from bridge.errors import StoreUnavailable

DURABILITY = {"full": "FULL", "normal": "NORMAL"}

# Only a backstop: writers are serialized by the flock, so SQLite waits only for a process that
# writes without it (an operator's sqlite3 shell).
BUSY_TIMEOUT_MS = 5000

# SQLite copies the WAL back into the database file when a commit leaves it over 1,000 pages
# (4 MB): that commit, an acknowledgement's, then spends milliseconds on the copy (and, with
# durability "full", on the database's fsync) while it still holds the writer lock, which is the
# tail of the ack latency. Long-running processes (web workers, the dispatcher) open with
# background_checkpoints: the dispatcher checkpoints ten times a second off the ack path
# (`Store.checkpoint`, PASSIVE: it waits for no reader or writer), and a commit checkpoints
# only past this backstop, when no dispatcher runs or it fell far behind.
CHECKPOINT_BACKSTOP = 32768   # pages: 128 MB of WAL
# `Store.checkpoint` starts the WAL over once it holds this many pages (64 MB: about 1.4 s of
# deliveries at 500/s, each with its job run), holding the writer lock for the copy of the last
# pages and two fsyncs of little (a median 1.8 ms: the bulk is written back before), not
# waiting for readers still in the old WAL (SQLite's busy handler would sleep 1, 2, 5... ms
# with the lock held): it tries again on its next round.
WAL_RESTART_PAGES = 16384
WAL_RESTART_WAIT_MS = 0
# ...and only when PASSIVE left at most this many pages to copy (a reader's snapshot stops it
# short; the rest would then be copied with the lock held).
WAL_RESTART_LEFT = 1024

# PostgreSQL, per process. A gunicorn gthread worker uses at most one connection per thread (4 by
# default) and a dispatcher one per job slot plus its claim loop; `pool_size` connections stay
# open, bursts open up to as many again, closed when returned. A whole instance therefore holds
# about (web workers + 1) x pool_size connections and at most twice that: keep
# instances x that below the server's max_connections (100 by default).
POOL_SIZE = 4
# Waiting for a free connection: a git host gives up after 10 s, so answer 503 well before.
POOL_TIMEOUT = 5.0
# Each connection is replaced after this long, before a load balancer or pgbouncer in between
# drops it silently.
POOL_RECYCLE = 1800
# libpq: connecting to an unreachable host; unacknowledged writes and dead idle peers (a host that
# vanished without closing its sockets) fail after ~10-25 s instead of the kernel's minutes.
_PG_CONNECT_ARGS = {"connect_timeout": 5, "tcp_user_timeout": 10000, "keepalives_idle": 10,
                    "keepalives_interval": 5, "keepalives_count": 3}
# Server side, per session: a statement never outlives gunicorn's 30 s worker timeout (the request
# gets a 503 rather than a killed worker), and a transaction left open by a stuck process is ended
# so its row locks never hold up claims or ingest for long.
_PG_SESSION = "SET statement_timeout = '20s'; SET idle_in_transaction_session_timeout = '60s'"


class WriterLock:
    """An exclusive flock on a file beside the database, held around each write transaction.

    Threads of one process queue on a mutex first, so only one of them sits in flock. The lock
    file is opened lazily, per process (an fd inherited over fork shares the lock and would not
    exclude the parent), and its opening errors surface per write as `OSError`.
    """

    def __init__(self, path: str):
        self.path = path
        self._mutex = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def __enter__(self):
        self._mutex.acquire()
        try:
            if self._fd is None or self._pid != os.getpid():
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                self._pid = os.getpid()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._mutex.release()
            raise
        return self

    def __exit__(self, *exc):
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._mutex.release()

    def after_fork(self) -> None:
        # The parent's mutex may have been held by a thread that does not exist in the child.
        self._mutex = threading.Lock()
        self._fd = None

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None


def normalize_url(url: str):
    """`postgresql://` means psycopg 3 here (SQLAlchemy would pick psycopg2, not installed)."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u


def open_engine(url: str, durability: str = "full", *, create_dir: bool = True,
                pool_size: int | None = None, background_checkpoints: bool = False):
    """Return (engine, WriterLock or None) for `url`; None where the database serializes itself.
    `pool_size`: PostgreSQL connections kept per process (default POOL_SIZE).
    `background_checkpoints`: SQLite's WAL is copied back into the database by the dispatcher's
    `Store.checkpoint()`, not by whichever commit crosses 1,000 pages (see CHECKPOINT_BACKSTOP)."""
    if durability not in DURABILITY:
        raise ValueError(f"durability must be one of {', '.join(DURABILITY)}, not '{durability}'")
    u = normalize_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(u, durability, create_dir, background_checkpoints)
    if backend == "postgresql":
        return _postgresql_engine(u, durability, pool_size or POOL_SIZE), None
    raise ValueError(f"unsupported database '{backend}' (use sqlite:/// or postgresql://)")


def _require_psycopg() -> None:
    """psycopg is the `postgres` extra: a SQLite install does not have it. Say how to get it
    instead of SQLAlchemy's bare ModuleNotFoundError."""
    try:
        import psycopg  # noqa: F401 - delayed: only PostgreSQL needs it
    except ImportError as exc:
        raise StoreUnavailable(
            "database_url is postgresql:// but psycopg is not installed in this environment: "
            "install the postgres extra (pip install 'bridge[postgres]', or deploy/install.sh "
            "--postgres, which installs requirements/postgres.lock)") from exc


def _sqlite_engine(u, durability: str, create_dir: bool, background_checkpoints: bool):
    path = u.database
    if not path or path == ":memory:" or u.query.get("mode") == "memory":
        raise ValueError("the store needs an SQLite file (sqlite:///path/bridge.db), not a memory database")
    if create_dir:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(u)
    synchronous = DURABILITY[durability]

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # SQLite opens a file it cannot write read-only instead of failing, and the pool would
        # keep that connection after the file is writable again (every write on it: "attempt to
        # write a readonly database"). Refuse it: the next checkout connects afresh.
        if not os.access(path, os.W_OK):
            dbapi_conn.close()
            raise sqlite3.OperationalError(f"the database file {path} is not writable")
        # SQLAlchemy emits BEGIN itself (below); sqlite3's own transaction handling stays out.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _enter_wal(cur)
            cur.execute(f"PRAGMA synchronous = {synchronous}")
            cur.execute("PRAGMA foreign_keys = ON")
            # Index pages of random delivery ids and content keys stay cached (default is 2 MB).
            cur.execute("PRAGMA cache_size = -32768")
            if background_checkpoints:
                cur.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_BACKSTOP}")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # Reads take no lock at all under WAL; writes take the write lock up front. Straight on
        # the driver: SQLAlchemy's statement machinery would cost more than the BEGIN itself.
        read = conn.get_execution_options().get("bridge_read", False)
        conn.connection.driver_connection.execute("BEGIN DEFERRED" if read else "BEGIN IMMEDIATE")

    return engine, WriterLock(path + ".lock")


def _enter_wal(cur) -> None:
    """`PRAGMA journal_mode = WAL`, retried while another process does the same.

    WAL is a property of the file and sticks once set, but the switch on a fresh file needs an
    exclusive lock, and SQLite answers "database is locked" at once, without its busy handler, to
    a connection that races another one through it: gunicorn workers and the dispatcher opening
    a new state directory together. The retry is bounded by the busy timeout.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.001
    while True:
        try:
            cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _postgresql_engine(u, durability: str, pool_size: int) -> Engine:
    _require_psycopg()
    # Options in the URL (e.g. ?connect_timeout=2) win over our defaults.
    connect_args = {k: v for k, v in _PG_CONNECT_ARGS.items() if k not in u.query}
    engine = create_engine(u, pool_size=pool_size, max_overflow=pool_size, pool_timeout=POOL_TIMEOUT,
                           pool_recycle=POOL_RECYCLE, pool_pre_ping=True, connect_args=connect_args)
    session = _PG_SESSION
    if durability == "normal":
        # The PostgreSQL analogue of synchronous=NORMAL: a server crash may lose the last
        # commits, never corrupts; a killed bridge process loses nothing.
        session += "; SET synchronous_commit = off"

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        with dbapi_conn.cursor() as cur:
            cur.execute(session)
        dbapi_conn.commit()

    return engine
