"""The store's engine room: connections, transactions (SQLAlchemy's or the driver's own), group
commit, and the helpers every noun of the store shares.

Input: an engine and the SQLite writer lock (`Tx.open` makes both from a URL). Output: `Tx`, the
base of the store's mixins (inbox, queue, follows, outbox); `StoreUnavailable` on any failure.
"""
from __future__ import annotations

import json
import os
import time
import weakref
from contextlib import contextmanager, nullcontext, suppress

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from bridge.errors import StoreUnavailable
from bridge.events import Event
from bridge.store import migrations
from bridge.store.engine import (BUSY_TIMEOUT_MS, WAL_RESTART_LEFT, WAL_RESTART_PAGES, WAL_RESTART_WAIT_MS,
                                 open_engine)
from bridge.store.schema import schema_version

_MAX_ERROR = 4000


class Tx:
    """Engine, transactions and group commit (see the package docstring for `Store`).

    Every method of the store is one short transaction (prune: a few), safe to call from several
    threads and processes at once. Any database failure raises `StoreUnavailable`; the
    transaction is rolled back and the connection discarded, so the next call starts afresh (the
    store recovers by itself once the disk has room or the server is back).

    The mixins build their statements in `_compile` and their group commits in `_group_commits`,
    each calling `super()` first.
    """

    def __init__(self, engine, writer_lock):
        self.engine = engine
        self._writer = writer_lock
        self._restarted_at = -1          # the WAL's frames when `checkpoint` last restarted it
        self._pg = engine.dialect.name == "postgresql"
        self._dbapi_error = engine.dialect.loaded_dbapi.Error
        self._compile(engine.dialect)
        self._group_commits()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (s := ref()) is not None and s._after_fork())

    def _compile(self, dialect) -> None:
        """Statements built once per store (a mixin's own, after `super()._compile`)."""

    def _group_commits(self) -> None:
        """The GroupCommits of this process (again in a forked child)."""

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str, *, durability: str = "full", create: bool = True,
             upgrade: bool | None = None, check: bool = True, pool_size: int | None = None,
             background_checkpoints: bool = False):
        """Connect to `url` (sqlite:///path or postgresql://...) and check the schema version.

        `create`: install the schema in an empty database (safe when several processes start at
        once); False refuses an empty one. `upgrade`: bring an older schema up to this code's
        version; None means "on SQLite when `create`" (one host owns the file), never on
        PostgreSQL, whose instances may run two releases during a rolling deploy: there it takes
        `cibridge db upgrade` (upgrade=True). A schema newer than the code is always refused.
        `check=False` opens without any of this (`cibridge db status`). `pool_size`: connections
        kept per process on PostgreSQL (see engine.py). `background_checkpoints`: SQLite's commits
        leave the WAL to `checkpoint()` (engine.py). Failures are `StoreUnavailable`.
        """
        try:
            engine, lock = open_engine(url, durability, create_dir=create, pool_size=pool_size,
                                       background_checkpoints=background_checkpoints)
        except OSError as exc:
            raise StoreUnavailable(f"store unavailable: cannot create the state directory: "
                                   f"{exc.strerror}") from exc
        store = cls(engine, lock)
        if upgrade is None:
            upgrade = create and not store._pg
        try:
            if check:
                store._prepare(create, upgrade)
        except BaseException:
            store.close()
            raise
        return store

    def _prepare(self, create: bool, upgrade: bool) -> None:
        # A read first: the common case (schema current) takes no lock at all.
        with self._tx(read=True) as conn:
            found = migrations.current_version(conn)
        if migrations.needs_change(found, create=create, upgrade=upgrade):
            with self._tx() as conn:
                migrations.migrate(conn, create=create, upgrade=upgrade)

    def schema_status(self) -> "migrations.Status":
        """The schema's version, history, pending steps and drift (`cibridge db status`)."""
        with self._tx(read=True) as conn:
            return migrations.status(conn)

    def close(self) -> None:
        self.engine.dispose()
        if self._writer is not None:
            self._writer.close()

    def _after_fork(self) -> None:
        # Connections and the lock fd belong to the parent; the child opens its own.
        self.engine.dispose(close=False)
        if self._writer is not None:
            self._writer.after_fork()
        self._group_commits()

    def checkpoint(self) -> int:
        """SQLite: copy what the WAL holds back into the database file, waiting for no reader or
        writer (PASSIVE) and outside the writer lock; the WAL frames still to copy. PostgreSQL: 0.

        Under steady writes that is not enough: SQLite starts the WAL over from its beginning only
        when a writer finds all of it copied back, and writers that commit while a PASSIVE
        checkpoint copies always leave some behind, so the WAL grew without end (50,000 pages in
        10 s at 500 deliveries/s), until each commit copied it back itself (the backstop) with the
        writer lock held: the tail of the ack latency. So once it holds WAL_RESTART_PAGES, the
        rest (a few pages: PASSIVE just copied the bulk) is copied under the writer lock and
        SQLite told to start over (RESTART; what it must sync is written back first, off the
        lock: `_write_back`), waiting at most WAL_RESTART_WAIT_MS for readers
        (busy: the next call tries again)."""
        if self._pg:
            return 0
        try:
            with self.engine.connect() as conn:
                driver = conn.connection.driver_connection
                busy, frames, copied = driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                # Only with little left to copy (a reader's snapshot can stop PASSIVE short: the
                # rest would be copied with the lock held), and not again before a new write.
                if (frames >= WAL_RESTART_PAGES and not busy and frames - copied <= WAL_RESTART_LEFT
                        and frames != self._restarted_at and self._writer is not None):
                    self._write_back()
                    with self._writer:
                        try:
                            driver.execute(f"PRAGMA busy_timeout = {WAL_RESTART_WAIT_MS}")
                            busy, frames, copied = driver.execute(
                                "PRAGMA wal_checkpoint(RESTART)").fetchone()
                            driver.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                        except BaseException:
                            conn.invalidate()        # never back to the pool without its timeout
                            raise
                    if not busy:
                        self._restarted_at = frames
        except (SQLAlchemyError, self._dbapi_error, OSError) as exc:    # OSError: the lock's file
            raise _unavailable(exc) from exc
        return max(frames - copied, 0) if frames >= 0 else 0

    def _write_back(self) -> None:
        """fdatasync the WAL and the database file, before RESTART takes the writer lock.

        RESTART syncs both, and what the PASSIVE rounds wrote since the last sync (the WAL's
        newest frames, every page they copied into the database: megabytes at 500 deliveries/s)
        was still in the page cache, so those fsyncs held the lock 5-10 ms; written back here, off
        the lock, they leave it a median 1.8 ms (5.3 ms before)."""
        path = self.engine.url.database       # the file SQLite opened (engine.py)
        for name in (path + "-wal", path):
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)

    def ping(self) -> None:
        """Readiness: a real write (and commit) that touches no delivery; raises StoreUnavailable."""
        with self._tx() as conn:
            conn.execute(update(schema_version).values(checked_at=time.time()))

    # -- transactions ---------------------------------------------------------------------

    @contextmanager
    def _tx(self, *, read: bool = False):
        """One transaction; the writer lock around it for writes on SQLite."""
        try:
            # Check out the connection before queueing for the lock: the lock is held only for
            # the transaction itself.
            with self.engine.connect() as conn:
                try:
                    if read:
                        conn.execution_options(bridge_read=True)
                    with nullcontext() if read or self._writer is None else self._writer:
                        with conn.begin():
                            yield conn
                except (DBAPIError, self._dbapi_error):
                    # A connection that saw "readonly" or "disk full" may stay that way: drop it.
                    conn.invalidate()
                    raise
        except (SQLAlchemyError, self._dbapi_error) as exc:
            raise _unavailable(exc) from exc
        except OSError as exc:
            raise _unavailable(exc) from exc

    @contextmanager
    def _tx_cursor(self):
        """`_tx()` and the driver's cursor on it: yields (conn, cursor)."""
        with self._tx() as conn, _cursor(conn) as cur:
            yield conn, cur

    @contextmanager
    def _driver_tx(self):
        """A write transaction on the driver's own connection: yields (cursor,). For ingest,
        where SQLAlchemy's connect/begin/commit machinery costs several times the three
        statements themselves. The same guarantees as `_tx`: the writer lock around it, a
        rollback and a discarded connection on any failure, which surfaces as StoreUnavailable."""
        try:
            raw = self.engine.raw_connection()
        except (SQLAlchemyError, self._dbapi_error) as exc:
            raise _unavailable(exc) from exc
        try:
            with nullcontext() if self._writer is None else self._writer:
                cur = raw.cursor()
                try:
                    if not self._pg:      # psycopg begins by itself on the first statement
                        cur.execute("BEGIN IMMEDIATE")
                    yield (cur,)
                    raw.commit()
                except BaseException:
                    with suppress(Exception):
                        raw.rollback()
                    raise
                finally:
                    cur.close()
        except self._dbapi_error as exc:
            raw.invalidate()      # a connection that saw "readonly" or "disk full" may stay so
            raise _unavailable(exc) from exc
        except OSError as exc:
            raise _unavailable(exc) from exc
        finally:
            raw.close()

    @contextmanager
    def _driver_read(self):
        """A read on the driver's own connection, without the writer lock: yields a cursor.
        Each statement sees the latest commit (the transaction, if the driver opened one, is
        rolled back at the end). Failures surface as StoreUnavailable."""
        try:
            raw = self.engine.raw_connection()
        except (SQLAlchemyError, self._dbapi_error) as exc:
            raise _unavailable(exc) from exc
        try:
            cur = raw.cursor()
            try:
                yield cur
            finally:
                cur.close()
                if self._pg:
                    raw.rollback()
        except self._dbapi_error as exc:
            raw.invalidate()
            raise _unavailable(exc) from exc
        finally:
            raw.close()

    def _write_batch(self, items, one, tx) -> list:
        """`one(*tx_values, *item)` for the items of concurrent callers in one transaction (group
        commit); `items` a list, or GroupCommit's `take`, called once the transaction began (the
        writer lock held). If it fails, each is tried again alone, so one cannot take the others
        with it; not when the transaction never began (database or lock unreachable): every item
        would only meet the same wait again, one after the other."""
        began = False
        try:
            with tx() as values:
                began = True
                if callable(items):
                    items = items()
                return [one(*values, *item) for item in items]
        except Exception as exc:
            if not began:
                raise            # GroupCommit gives it to every caller of the batch
            if len(items) == 1:
                return [exc]
        return [r for item in items for r in self._write_batch([item], one, tx)]

    def _dialect_insert(self, table):
        return (postgresql.insert if self._pg else sqlite.insert)(table)


class _Raw:
    """A statement compiled once for the engine's dialect, to run on the driver's cursor.

    Parameters go in already serialized (JSON as text; the columns read back through
    SQLAlchemy's JSON type). `keys` is the positional order for qmark drivers (sqlite3), None
    for named ones (psycopg).
    """

    def __init__(self, stmt, dialect):
        compiled = stmt.compile(dialect=dialect)
        self.sql = compiled.string
        self.keys = compiled.positiontup
        # Literals in the statement (state == "running", lease_owner = None) are binds too.
        self.defaults = {k: v for k, v in compiled.params.items() if not compiled.binds[k].required}

    def params(self, values: dict):
        values = {**self.defaults, **values} if self.defaults else values
        return values if self.keys is None else tuple(values[k] for k in self.keys)


@contextmanager
def _cursor(conn):
    cur = conn.connection.cursor()
    try:
        yield cur
    finally:
        cur.close()


def _loads(value):
    """A JSON column read on the driver's cursor: text on SQLite, already parsed by psycopg."""
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def _dumps(value) -> str | None:
    return None if value is None else json.dumps(value)


def _event(raw: dict | None) -> Event | None:
    """A stored event as the value it was (parsed here, once per row handed out). None for an
    ignored delivery's, or one that cannot be read: its job then fails to start, as a
    transient error, as it did when the dispatcher parsed it."""
    if raw is None:
        return None
    try:
        return Event.from_dict(raw)
    except (TypeError, ValueError, KeyError, AttributeError):
        return None


def _clip(message: str) -> str:
    # PostgreSQL text cannot hold NUL; an error message is no reason to lose a result.
    message = str(message).replace("\x00", "\\0")
    return message if len(message) <= _MAX_ERROR else message[:_MAX_ERROR - 3] + "..."


def _row_dict(row, exclude=()) -> dict:
    return {k: v for k, v in row._mapping.items() if k not in exclude}


def _unavailable(exc: BaseException) -> StoreUnavailable:
    """The one StoreUnavailable for a database error or an OSError (the writer's lock file)."""
    if isinstance(exc, OSError):
        return StoreUnavailable(f"store unavailable: {exc.strerror or exc} "
                                f"({getattr(exc, 'filename', '') or 'lock file'})")
    return StoreUnavailable(f"store unavailable: {_describe(exc)}")


def _describe(exc: SQLAlchemyError) -> str:
    """The driver's own short message: SQLAlchemy's str() would carry the statement and its
    parameters (bodies, headers) into logs and replies."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines() if not isinstance(orig, SQLAlchemyError) else []
    return lines[0] if lines else type(orig).__name__
