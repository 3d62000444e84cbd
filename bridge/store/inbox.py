"""The durable inbox and job queue: `Store`, over SQLite or PostgreSQL through one code path.

Input: deliveries with their jobs (ingress), claims and results (dispatcher), operator queries
(CLI). Output: committed rows, `ClaimedJob`s, plain dicts; `StoreUnavailable` on any database
failure, with nothing half-written.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import weakref
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field, replace

from sqlalchemy import (Double, Integer, Text, and_, bindparam, delete, exists, func, insert, or_,
                        select, update)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from bridge.errors import StoreUnavailable
from bridge.jobs import JOB_STATES, OPEN_STATES, OUTCOMES, Run
from bridge.store import migrations
from bridge.store.engine import open_engine
from bridge.store.group import GroupCommit
from bridge.store.operators import OperatorQueries, is_glob, repo_matcher
from bridge.store.schema import (content_keys, deliveries, follows, job_attempts, jobs, schema_version,
                                 statuses)

# Run.state -> job state. A target that only queued or started a build leaves the job "started".
_RUN_STATES = {"succeeded": "succeeded", "failed": "failed", "started": "started", "queued": "started"}

_MAX_ERROR = 4000
_MAX_KEY_BYTES = 2000
_PRUNE_BATCH = 500


@dataclass(frozen=True)
class NewDelivery:
    """A verified delivery as ingress hands it to `Store.ingest`."""
    source: str
    provider: str
    delivery_id: str
    received_at: float              # epoch seconds
    headers: dict[str, str]         # already stripped of signature/token headers by the caller
    body: bytes
    event: dict | None              # Event.to_dict(), or None for ignored deliveries
    outcome: str                    # "matched" | "no_match" | "ignored"
    reason: str
    verdicts: list[dict]            # [{"rule", "matched", "reason", "needs_files"}]
    rules_version: str
    content_key: str | None         # "provider|repo|ref|before|after" for pushes


@dataclass(frozen=True)
class NewJob:
    """One rendered `run:` of a matched rule."""
    rule: str
    target: str
    kind: str
    request: dict
    needs_files: bool = False
    path_filter: dict | None = None  # {"paths", "paths_ignore", "on_unknown_files": "run"|"skip"}


@dataclass(frozen=True)
class Ingested:
    delivery: str                    # the id it is stored under (see `reused_id`)
    duplicate_of: str | None         # same delivery id and body already stored: nothing was written
    content_duplicate_of: str | None  # same push already accepted: stored, no jobs
    job_ids: list[int] = field(default_factory=list)
    #: The host's id when it already named a delivery with another body: this one is not a
    #: redelivery, and is stored as its own delivery under `delivery` (`reused_delivery_id`).
    reused_id: str | None = None


#: Between a reused delivery id and the hash of the new body (`reused_delivery_id`).
REUSED_ID_SEPARATOR = "~"


def reused_delivery_id(delivery_id: str, body: bytes) -> str:
    """The id a delivery is stored under when the host's `delivery_id` already names another
    body: `<id>~<16 hex digits of sha256(body)>`, within the 200 characters of the id column.
    The same id and body always give the same one, so a repeat of it is still a duplicate."""
    digest = hashlib.sha256(body).hexdigest()[:16]
    return f"{delivery_id[:200 - 1 - len(digest)]}{REUSED_ID_SEPARATOR}{digest}"


@dataclass(frozen=True)
class NewStatus:
    """One commit status to post (dispatch/statuses.py builds it). Stored once per `key`, however often
    it is offered; a higher `rank` of the same job supersedes one not yet posted."""
    key: str                        # job:<id>:<attempt>:<phase> | skip:<delivery>:<rule>
    delivery_id: str
    job_id: int | None
    rule: str
    source: str
    provider: str
    repo: str
    sha: str
    ref: str                        # branch or tag name
    context: str
    rank: int
    state: str                      # pending | running | success | failure | canceled | error
    description: str
    target_url: str | None = None


@dataclass(frozen=True)
class ClaimedStatus(NewStatus):
    """A status leased to one dispatcher for one post."""
    id: int = 0
    attempts: int = 1               # this post's number
    created_at: float = 0.0         # the give-up clock starts here


@dataclass(frozen=True)
class ClaimedFollow:
    """A started build leased to one dispatcher for one look at its progress."""
    job_id: int
    delivery_id: str
    rule: str
    target: str
    run: Run
    since: float                    # when the follow began (the give-up clock)
    checks: int                     # looks so far, this one included
    source: str
    provider: str
    repo: str
    sha: str
    ref: str                        # branch or tag name
    attempt: int = 0                # the job's attempt that started this build


@dataclass(frozen=True)
class ClaimedJob:
    """A job leased to one dispatcher until `lease_expires_at`."""
    id: int
    delivery_id: str
    rule: str
    target: str
    kind: str
    request: dict
    event: dict
    attempts: int                   # this attempt's number: 1 on the first try
    first_queued_at: float
    needs_files: bool
    path_filter: dict | None
    lease_expires_at: float = 0.0


class Store(OperatorQueries):
    """Deliveries, jobs and their attempts in one database (see the package docstring).

    Every method is one short transaction (prune: a few), safe to call from several threads and
    processes at once. Any database failure raises `StoreUnavailable`; the transaction is rolled
    back and the connection discarded, so the next call starts afresh (the store recovers by
    itself once the disk has room or the server is back).
    """

    def __init__(self, engine, writer_lock):
        self.engine = engine
        self._writer = writer_lock
        self._pg = engine.dialect.name == "postgresql"
        self._dbapi_error = engine.dialect.loaded_dbapi.Error
        ins = postgresql.insert if self._pg else sqlite.insert
        dialect = engine.dialect
        self._insert_delivery = _Raw(ins(deliveries).on_conflict_do_nothing(index_elements=["id"]), dialect)
        self._claim_key = _Raw(ins(content_keys).on_conflict_do_nothing(index_elements=["key"]), dialect)
        self._key_owner = _Raw(select(content_keys.c.delivery_id)
                               .where(content_keys.c.key == bindparam("key")), dialect)
        self._stored_body = _Raw(select(deliveries.c.body)
                                 .where(deliveries.c.id == bindparam("id")), dialect)
        self._mark_duplicate = _Raw(update(deliveries).where(deliveries.c.id == bindparam("delivery"))
                                    .values(outcome="duplicate", content_duplicate_of=bindparam("first"),
                                            reason=bindparam("why")), dialect)
        self._insert_job = _Raw(insert(jobs).values({c: bindparam(c) for c in _JOB_COLUMNS})
                                .returning(jobs.c.id), dialect)
        self._q = _Statements()
        self._finish_job = _Raw(self._q.finish, dialect)
        self._insert_attempt = _Raw(insert(job_attempts).values(
            {c: bindparam(c) for c in _ATTEMPT_COLUMNS}), dialect)
        self._group_commits()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (s := ref()) is not None and s._after_fork())

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str, *, durability: str = "full", create: bool = True,
             upgrade: bool | None = None, check: bool = True, pool_size: int | None = None) -> "Store":
        """Connect to `url` (sqlite:///path or postgresql://...) and check the schema version.

        `create`: install the schema in an empty database (safe when several processes start at
        once); False refuses an empty one. `upgrade`: bring an older schema up to this code's
        version; None means "on SQLite when `create`" (one host owns the file), never on
        PostgreSQL, whose instances may run two releases during a rolling deploy: there it takes
        `cibridge db upgrade` (upgrade=True). A schema newer than the code is always refused.
        `check=False` opens without any of this (`cibridge db status`). `pool_size`: connections
        kept per process on PostgreSQL (see engine.py). Failures are `StoreUnavailable`.
        """
        try:
            engine, lock = open_engine(url, durability, create_dir=create, pool_size=pool_size)
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

    def _group_commits(self) -> None:
        # Ingests and job results each share commits among the threads of one process.
        self._ingests = GroupCommit(lambda items: self._write_batch(items, self._ingest_one,
                                                                    self._driver_tx))
        self._finishes = GroupCommit(lambda items: self._write_batch(items, self._finish_one,
                                                                     self._tx_cursor))

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

    def ping(self) -> None:
        """Readiness: a real write (and commit) that touches no delivery; raises StoreUnavailable."""
        with self._tx() as conn:
            conn.execute(update(schema_version).values(checked_at=time.time()))

    # -- ingress --------------------------------------------------------------------------

    def ingest(self, d: NewDelivery, new_jobs: list[NewJob]) -> Ingested:
        """Store a delivery and its jobs in ONE transaction.

        The same delivery id already stored with the same body (a redelivery): nothing is
        written, `duplicate_of` names it. The id already stored with another body: not a
        redelivery; this one is stored as its own delivery under `reused_delivery_id()` and
        `reused_id` names the host's id. A content key already claimed by an earlier delivery
        with jobs: this delivery is stored with outcome "duplicate" and no jobs,
        `content_duplicate_of` names the first. All are decided by unique constraints inside the
        transaction, never by a read before the write. Concurrent calls in one process share
        that transaction and its commit (`GroupCommit`); each returns only once it is committed.
        """
        return self._ingests.submit((d, new_jobs, *self._ingest_params(d, new_jobs)))

    def _ingest_params(self, d: NewDelivery, new_jobs: list[NewJob]) -> tuple:
        # Everything is serialized before the transaction begins, and the three statements run
        # on the driver's cursor: SQLAlchemy's per-statement work would double the time the
        # writer lock is held, and every ingest of every worker queues on that lock.
        event = d.event or {}
        row = self._insert_delivery.params({
            "id": d.delivery_id, "source": d.source, "provider": d.provider,
            "received_at": d.received_at, "repo": event.get("repo"), "ref": event.get("ref"),
            "outcome": d.outcome, "reason": d.reason, "headers": _dumps(d.headers), "body": d.body,
            "event": _dumps(d.event), "verdicts": _dumps(d.verdicts), "rules_version": d.rules_version,
            "content_key": d.content_key, "content_duplicate_of": None,
        })
        key = self._claim_key.params({"key": claim_key(d.content_key), "delivery_id": d.delivery_id,
                                      "claimed_at": d.received_at})
        return row, key, self._job_rows(d.delivery_id, new_jobs, d.received_at)

    def _write_batch(self, items: list, one, tx) -> list:
        """`one(*tx_values, *item)` for the items of concurrent callers in one transaction (group
        commit). If it fails, each is tried again alone, so one cannot take the others with it;
        not when the transaction never began (database or lock unreachable): every item would
        only meet the same wait again, one after the other."""
        began = False
        try:
            with tx() as values:
                began = True
                return [one(*values, *item) for item in items]
        except Exception as exc:
            if not began:
                raise            # GroupCommit gives it to every caller of the batch
            if len(items) == 1:
                return [exc]
        return [r for item in items for r in self._write_batch([item], one, tx)]

    def _ingest_one(self, cur, d: NewDelivery, new_jobs, row, key, job_rows, *,
                    reused: str | None = None) -> Ingested:
        cur.execute(self._insert_delivery.sql, row)
        if cur.rowcount == 0:
            # The id is taken (the row is committed, or ours in this transaction: on PostgreSQL
            # the insert waited for the other writer, and each statement sees what it committed).
            cur.execute(self._stored_body.sql, self._stored_body.params({"id": d.delivery_id}))
            found = cur.fetchone()
            if reused is not None or found is None or bytes(found[0]) == d.body:
                return Ingested(d.delivery_id, duplicate_of=d.delivery_id, content_duplicate_of=None,
                                reused_id=reused)
            other = replace(d, delivery_id=reused_delivery_id(d.delivery_id, d.body))
            return self._ingest_one(cur, other, new_jobs, *self._ingest_params(other, new_jobs),
                                    reused=d.delivery_id)
        if not job_rows:
            return Ingested(d.delivery_id, None, None, reused_id=reused)
        if d.content_key is not None:
            cur.execute(self._claim_key.sql, key)
            if cur.rowcount == 0:
                cur.execute(self._key_owner.sql, self._key_owner.params({"key": claim_key(d.content_key)}))
                first = cur.fetchone()[0]
                cur.execute(self._mark_duplicate.sql, self._mark_duplicate.params({
                    "delivery": d.delivery_id, "first": first,
                    "why": f"the same push was already accepted as delivery {first}"}))
                return Ingested(d.delivery_id, None, content_duplicate_of=first, reused_id=reused)
        return Ingested(d.delivery_id, None, None, self._insert_jobs(cur, job_rows), reused_id=reused)

    def _job_rows(self, delivery_id: str, new_jobs: list[NewJob], now: float) -> list:
        return [self._insert_job.params({
            "delivery_id": delivery_id, "rule": j.rule, "target": j.target, "kind": j.kind,
            "request": _dumps(j.request), "needs_files": bool(j.needs_files),
            "path_filter": _dumps(j.path_filter), "state": "queued", "attempts": 0,
            "first_queued_at": now, "next_attempt_at": now, "updated_at": now}) for j in new_jobs]

    def _insert_jobs(self, cur, job_rows: list) -> list[int]:
        # One INSERT ... RETURNING per job (rarely more than one): executemany cannot return the
        # ids on either driver, and a driver-level execute costs some 20 us.
        ids = []
        for params in job_rows:
            cur.execute(self._insert_job.sql, params)
            ids.append(cur.fetchone()[0])
        return ids

    # -- dispatcher -----------------------------------------------------------------------

    def claim(self, owner: str, limit: int, *, lease_seconds: float, now: float) -> list[ClaimedJob]:
        """Lease up to `limit` due jobs to `owner`: queued ones whose time has come, and running
        ones whose lease expired (their dispatcher died; the lost attempt is recorded).

        A read without any lock comes first, so an idle dispatcher polling often costs nothing.
        """
        if limit <= 0:
            return []
        q = self._q
        with self._tx(read=True) as conn:
            if (conn.execute(q.any_queued, {"now": now}).first() is None
                    and conn.execute(q.any_expired, {"now": now}).first() is None):
                return []
        expires = now + lease_seconds
        with self._tx() as conn:
            # Two index range scans, each stopping at `limit`: one ORDER BY over an OR would
            # sort every due job (and read its event) on each claim of a long queue.
            rows = conn.execute(q.pick_expired, {"now": now, "limit": limit}).all()
            if len(rows) < limit:
                rows += conn.execute(q.pick_queued, {"now": now, "limit": limit - len(rows)}).all()
            if not rows:
                return []
            lost = [{"job_id": r.id, "attempt": r.attempts, "owner": r.lease_owner or "",
                     "started_at": r.leased_at, "finished_at": now, "outcome": "lost",
                     "error": f"lease of {r.lease_owner} expired; taken over by {owner}"}
                    for r in rows if r.state == "running"]
            if lost:
                conn.execute(q.insert_attempt, lost)
            conn.execute(q.lease, {"ids": [r.id for r in rows], "owner": owner, "now": now,
                                   "expires": expires})
        return [ClaimedJob(id=r.id, delivery_id=r.delivery_id, rule=r.rule, target=r.target,
                           kind=r.kind, request=r.request, event=r.event, attempts=r.attempts + 1,
                           first_queued_at=r.first_queued_at, needs_files=bool(r.needs_files),
                           path_filter=r.path_filter, lease_expires_at=expires) for r in rows]

    def renew_leases(self, owner: str, job_ids: list[int], *, lease_seconds: float,
                     now: float) -> list[int]:
        """Extend the leases `owner` still holds; returns those ids (a missing id was taken over)."""
        if not job_ids:
            return []
        with self._tx() as conn:
            return list(conn.execute(self._q.renew, {"ids": list(job_ids), "owner": owner,
                                                     "now": now, "expires": now + lease_seconds}).scalars())

    def _finish(self, job_id: int, owner: str, now: float, outcome: str, *, state: str,
                next_attempt_at: float | None = None, remote_id: str | None = None,
                url: str | None = None, detail: dict | None = None, error: str | None = None,
                after=None) -> bool:
        """End `owner`'s lease on a job and log the attempt; False (nothing written) if the lease
        is no longer `owner`'s, so a taken-over job is never recorded twice."""
        # On the driver's cursor, like ingest: a dispatcher records every job it runs.
        detail_json = _dumps(detail)
        finish = self._finish_job.params({
            "job_id": job_id, "owner": owner, "now": now, "new_state": state,
            "next_at": next_attempt_at, "new_remote_id": remote_id, "new_url": url,
            "new_detail": detail_json, "new_error": error})
        attempt = {"job_id": job_id, "owner": owner, "finished_at": now, "outcome": outcome,
                   "error": error, "remote_id": remote_id, "url": url, "detail": detail_json}
        return self._finishes.submit((finish, attempt, after))

    def _finish_one(self, conn, cur, finish, attempt: dict, after) -> bool:
        cur.execute(self._finish_job.sql, finish)
        row = cur.fetchone()
        if row is None:
            return False
        cur.execute(self._insert_attempt.sql, self._insert_attempt.params(
            {**attempt, "attempt": row[0], "started_at": row[1]}))
        if after is not None:
            after(conn)          # same transaction: statuses and follows go with the result
        return True

    def record_run(self, job_id: int, owner: str, run: Run, *, now: float,
                   statuses: list[NewStatus] = (), follow_at: float | None = None) -> bool:
        """The target accepted the job: started (remote build) or finished (exec, memory).
        A started build is followed from `follow_at` (default now) until it ends; `statuses`
        are stored with the result."""
        state = _RUN_STATES.get(run.state, "started")

        def after(conn):
            if state == "started":
                self._start_follow(conn, job_id, run, now, follow_at)
            self._insert_statuses(conn, statuses, now)
        return self._finish(job_id, owner, now, state, state=state, remote_id=run.remote_id,
                            url=run.url or None, detail=run.detail, after=after)

    def record_retry(self, job_id: int, owner: str, error: str, retry_at: float, *, now: float) -> bool:
        """A transient failure: queued again for `retry_at`."""
        return self._finish(job_id, owner, now, "retry", state="queued", next_attempt_at=retry_at,
                            error=_clip(error))

    def record_dead(self, job_id: int, owner: str, error: str, *, now: float,
                    statuses: list[NewStatus] = ()) -> bool:
        """A permanent failure (or retries exhausted): the dead letter, until `retry_job`."""
        return self._finish(job_id, owner, now, "dead", state="dead", error=_clip(error),
                            after=lambda conn: self._insert_statuses(conn, statuses, now))

    def record_skipped(self, job_id: int, owner: str, reason: str, *, now: float,
                       statuses: list[NewStatus] = ()) -> bool:
        """The push touches no file the rule cares about."""
        return self._finish(job_id, owner, now, "skipped", state="skipped",
                            detail={"reason": _clip(reason)},
                            after=lambda conn: self._insert_statuses(conn, statuses, now))

    def release(self, job_id: int, owner: str) -> bool:
        """Give back a claimed job that was never started (shutdown): queued again at once."""
        with self._tx() as conn:
            return conn.execute(self._q.release, {"job_id": job_id, "owner": owner}).rowcount == 1

    # -- operators ------------------------------------------------------------------------

    def list_deliveries(self, *, source: str | None = None, repo: str | None = None,
                        state: str | None = None, limit: int = 50) -> list[dict]:
        """Newest first. `repo` is a glob of the rules' syntax, of any case (`acme/*`,
        `**/api`); `state` is a delivery outcome (OUTCOMES) or a job state (JOB_STATES:
        deliveries with at least one job in it)."""
        d = deliveries.c
        q = (select(d.id, d.source, d.provider, d.received_at, d.repo, d.ref, d.outcome, d.reason,
                    d.verdicts, d.content_duplicate_of)
             .order_by(d.received_at.desc(), d.id.desc()))
        if source is not None:
            q = q.where(d.source == source)
        if state in OUTCOMES:
            q = q.where(d.outcome == state)
        elif state in JOB_STATES:
            q = q.where(exists().where(jobs.c.delivery_id == d.id, jobs.c.state == state))
        elif state is not None:
            raise ValueError(f"unknown state '{state}': use one of {', '.join(OUTCOMES + JOB_STATES)}")
        if repo is not None and not is_glob(repo):
            q = q.where(func.lower(d.repo) == repo.lower())
        elif repo is not None:
            # The glob is matched here, on the ids and repos only, then the page is read in full.
            matches = repo_matcher(repo)
            with self._tx(read=True) as conn:
                ids = [r.id for r in conn.execute(q.with_only_columns(d.id, d.repo))
                       if matches(r.repo)][:limit]
            q = q.where(d.id.in_(ids))
        q = q.limit(limit)
        with self._tx(read=True) as conn:
            rows = conn.execute(q).all()
            by_delivery: dict[str, list[dict]] = {r.id: [] for r in rows}
            if rows:
                for j in conn.execute(
                        select(jobs.c.id, jobs.c.delivery_id, jobs.c.rule, jobs.c.target, jobs.c.state,
                               jobs.c.attempts, jobs.c.last_error)
                        .where(jobs.c.delivery_id.in_(list(by_delivery))).order_by(jobs.c.id)):
                    by_delivery[j.delivery_id].append(
                        {"id": j.id, "rule": j.rule, "target": j.target, "state": j.state,
                         "attempts": j.attempts, "last_error": j.last_error})
        return [{"delivery": r.id, "source": r.source, "provider": r.provider,
                 "received_at": r.received_at, "repo": r.repo, "ref": r.ref, "outcome": r.outcome,
                 "reason": r.reason, "content_duplicate_of": r.content_duplicate_of,
                 "matched": [v["rule"] for v in r.verdicts if v.get("matched")],
                 "jobs": by_delivery[r.id]} for r in rows]

    def get_delivery(self, delivery_id: str) -> dict | None:
        """Everything stored about one delivery: headers, raw body, event, verdicts, and every job
        with its full `history` of attempts."""
        with self._tx(read=True) as conn:
            d = conn.execute(select(deliveries).where(deliveries.c.id == delivery_id)).first()
            if d is None:
                return None
            job_rows = conn.execute(select(jobs).where(jobs.c.delivery_id == delivery_id)
                                    .order_by(jobs.c.id)).all()
            history: dict[int, list[dict]] = {j.id: [] for j in job_rows}
            if job_rows:
                for a in conn.execute(select(job_attempts).where(job_attempts.c.job_id.in_(list(history)))
                                      .order_by(job_attempts.c.id)):
                    history[a.job_id].append(_row_dict(a, exclude=("id", "job_id")))
        out = _row_dict(d, exclude=("id",))
        out["delivery"] = d.id
        out["body"] = bytes(d.body)
        out["jobs"] = [{**_row_dict(j, exclude=("delivery_id",)), "needs_files": bool(j.needs_files),
                        "history": history[j.id]} for j in job_rows]
        return out

    def retry_job(self, job_id: int, *, now: float) -> bool:
        """Re-queue a dead or failed job now, with a fresh give-up clock (`retry_jobs`). False
        if it is in another state."""
        return self.retry_jobs([job_id], now=now) == [job_id]

    def add_jobs(self, delivery_id: str, new_jobs: list[NewJob], *, now: float) -> list[int]:
        """Queue more jobs for a stored delivery (`cibridge replay`); content keys are not consulted:
        a replay is an explicit request to build again."""
        with self._tx() as conn:
            found = conn.execute(select(deliveries.c.event).where(deliveries.c.id == delivery_id)).first()
            if found is None:
                raise LookupError(f"no delivery '{delivery_id}'")
            if found.event is None:
                raise ValueError(f"delivery '{delivery_id}' was ignored and has no event to build")
            with _cursor(conn) as cur:
                return self._insert_jobs(cur, self._job_rows(delivery_id, new_jobs, now))

    def prune(self, older_than: float) -> int:
        """Delete deliveries received before `older_than` (epoch seconds), with their jobs and
        attempts, unless a job is still queued or running. Content keys stay (see schema).
        Works in small transactions so ingest never waits long. Returns deliveries deleted."""
        total = 0
        open_job = exists().where(jobs.c.delivery_id == deliveries.c.id, jobs.c.state.in_(OPEN_STATES))
        while True:
            with self._tx() as conn:
                ids = conn.execute(select(deliveries.c.id)
                                   .where(deliveries.c.received_at < older_than, ~open_job)
                                   .limit(_PRUNE_BATCH)).scalars().all()
                if not ids:
                    return total
                job_ids = select(jobs.c.id).where(jobs.c.delivery_id.in_(ids)).scalar_subquery()
                conn.execute(delete(job_attempts).where(job_attempts.c.job_id.in_(job_ids)))
                conn.execute(delete(follows).where(follows.c.job_id.in_(job_ids)))
                conn.execute(delete(statuses).where(statuses.c.delivery_id.in_(ids)))
                conn.execute(delete(jobs).where(jobs.c.delivery_id.in_(ids)))
                total += conn.execute(delete(deliveries).where(deliveries.c.id.in_(ids))).rowcount

    def queue_stats(self, now: float) -> dict:
        """{"jobs": {state: count}, "due": queued jobs whose time has come,
        "oldest_queued_age": seconds since the oldest queued job was first queued (0 if none)}."""
        with self._tx(read=True) as conn:
            counts = dict(conn.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state)).all())
            due, oldest = conn.execute(
                select(func.count().filter(jobs.c.next_attempt_at <= now),
                       func.min(jobs.c.first_queued_at))
                .where(jobs.c.state == "queued")).one()
        return {"jobs": {s: int(counts.get(s, 0)) for s in JOB_STATES}, "due": int(due or 0),
                "oldest_queued_age": max(0.0, now - oldest) if oldest is not None else 0.0}

    # -- feedback: builds followed to their end, commit statuses (bridge/dispatch/statuses.py) -----------

    def _dialect_insert(self, table):
        return (postgresql.insert if self._pg else sqlite.insert)(table)

    def _insert_statuses(self, conn, rows, now: float) -> None:
        if rows:
            conn.execute(self._dialect_insert(statuses).on_conflict_do_nothing(index_elements=["key"]),
                         [{**_status_values(r), "post_state": "waiting", "attempts": 0,
                           "created_at": now, "next_attempt_at": now, "updated_at": now} for r in rows])

    def add_statuses(self, rows: list[NewStatus], *, now: float) -> None:
        """Store statuses to post (a key already stored is left as it is)."""
        if rows:
            with self._tx() as conn:
                self._insert_statuses(conn, rows, now)

    def claim_statuses(self, owner: str, limit: int, *, lease_seconds: float,
                       now: float) -> list[ClaimedStatus]:
        """Lease up to `limit` statuses that are due. Of one job's statuses only the highest rank
        is ever posted (lower ones still waiting are marked superseded), and never while another
        of its statuses is being posted, so the git host sees them in order."""
        if limit <= 0:
            return []
        s = statuses.c
        due = or_(and_(s.post_state == "waiting", s.next_attempt_at <= now),
                  and_(s.post_state == "sending", s.lease_expires_at <= now))
        with self._tx(read=True) as conn:
            if conn.execute(select(s.id).where(due).limit(1)).first() is None:
                return []
        newer, busy = statuses.alias("newer"), statuses.alias("busy")
        superseded = exists().where(newer.c.job_id == s.job_id, newer.c.rank > s.rank)
        sending = exists().where(busy.c.job_id == s.job_id, busy.c.id != s.id,
                                 busy.c.post_state == "sending", busy.c.lease_expires_at > now)
        with self._tx() as conn:
            conn.execute(update(statuses).where(due, s.job_id.is_not(None), superseded)
                         .values(post_state="superseded", lease_owner=None, lease_expires_at=None,
                                 updated_at=now))
            rows = conn.execute(select(statuses).where(due, ~sending)
                                .order_by(s.next_attempt_at, s.id).limit(limit)
                                .with_for_update(of=statuses, skip_locked=True)).all()
            if not rows:
                return []
            conn.execute(update(statuses).where(s.id.in_([r.id for r in rows]))
                         .values(post_state="sending", lease_owner=owner,
                                 lease_expires_at=now + lease_seconds, attempts=s.attempts + 1,
                                 updated_at=now))
        return [ClaimedStatus(**{k: getattr(r, k) for k in _STATUS_FIELDS}, id=r.id,
                              attempts=r.attempts + 1, created_at=r.created_at) for r in rows]

    def record_status(self, status_id: int, owner: str, *, outcome: str, now: float,
                      code: int | None = None, answer: str = "", retry_at: float | None = None) -> bool:
        """The answer to one post. `outcome`: sent | done (the host says it is so already, or
        can never be: not retried) | failed | dropped (nobody to post to), or retry (waiting
        again until `retry_at`). False if the lease is no longer `owner`'s."""
        s = statuses.c
        values = {"post_state": "waiting" if outcome == "retry" else outcome, "answer_code": code,
                  "answer": _clip(answer)[:1000], "lease_owner": None, "lease_expires_at": None,
                  "updated_at": now}
        if retry_at is not None:
            values["next_attempt_at"] = retry_at
        if outcome == "sent":
            values["sent_at"] = now
        with self._tx() as conn:
            return conn.execute(update(statuses).where(s.id == status_id, s.post_state == "sending",
                                                       s.lease_owner == owner)
                                .values(**values)).rowcount == 1

    def statuses_of(self, delivery_id: str) -> list[dict]:
        """Every status of one delivery, oldest first, with the git host's answer."""
        with self._tx(read=True) as conn:
            rows = conn.execute(select(statuses).where(statuses.c.delivery_id == delivery_id)
                                .order_by(statuses.c.id)).all()
        return [_row_dict(r, exclude=("lease_owner", "lease_expires_at")) for r in rows]

    def recent_deliveries(self, *, since: float, sources: list[str], limit: int = 500,
                          seen=frozenset()) -> tuple[list[dict], int, float | None]:
        """Deliveries with an event from `sources` received after `since` (epoch seconds), oldest
        first, each with its jobs (id, rule, state, needs_files): what needs a first status.
        Returns (those not in `seen`, how many matched in all, the last one's received_at): the
        ids come first, so the rows a scan has already seen are never read again in full."""
        d = deliveries.c
        with self._tx(read=True) as conn:
            keys = conn.execute(select(d.id, d.received_at)
                                .where(d.received_at > since, d.source.in_(list(sources)),
                                       d.outcome.in_(("matched", "no_match")))
                                .order_by(d.received_at, d.id).limit(limit)).all()
            new = [k.id for k in keys if k.id not in seen]
            rows = conn.execute(select(d.id, d.source, d.provider, d.received_at, d.event, d.verdicts)
                                .where(d.id.in_(new))
                                .order_by(d.received_at, d.id)).all() if new else []
            by_delivery: dict[str, list[dict]] = {r.id: [] for r in rows}
            if rows:
                for j in conn.execute(select(jobs.c.id, jobs.c.delivery_id, jobs.c.rule, jobs.c.state,
                                             jobs.c.needs_files)
                                      .where(jobs.c.delivery_id.in_(list(by_delivery))).order_by(jobs.c.id)):
                    by_delivery[j.delivery_id].append({"id": j.id, "rule": j.rule, "state": j.state,
                                                       "needs_files": bool(j.needs_files)})
        return ([{"delivery": r.id, "source": r.source, "provider": r.provider,
                  "received_at": r.received_at, "event": r.event, "verdicts": r.verdicts,
                  "jobs": by_delivery[r.id]} for r in rows],
                len(keys), keys[-1].received_at if keys else None)

    def _start_follow(self, conn, job_id: int, run: Run, now: float, follow_at: float | None) -> None:
        values = {"run_state": run.state, "remote_id": run.remote_id, "url": run.url or None,
                  "detail": run.detail, "state": "following", "since": now, "checks": 0,
                  "next_check_at": now if follow_at is None else follow_at, "lease_owner": None,
                  "lease_expires_at": None, "last_error": None, "updated_at": now}
        conn.execute(self._dialect_insert(follows).values(job_id=job_id, **values)
                     .on_conflict_do_update(index_elements=["job_id"], set_=values))

    def claim_follows(self, owner: str, targets, limit: int, *, lease_seconds: float,
                      now: float) -> list[ClaimedFollow]:
        """Lease up to `limit` started builds of `targets` (names) that are due for a look. The
        follow lease is the job's own for this stage: an expired one is taken over."""
        targets = list(targets)
        if limit <= 0 or not targets:
            return []
        f = follows.c
        due = and_(f.state == "following", f.next_check_at <= now,
                   or_(f.lease_expires_at.is_(None), f.lease_expires_at <= now))
        with self._tx(read=True) as conn:
            if conn.execute(select(f.job_id).where(due).limit(1)).first() is None:
                return []
        ev = deliveries.c.event
        q = (select(follows, jobs.c.delivery_id, jobs.c.rule, jobs.c.target, jobs.c.attempts,
                    deliveries.c.source,
                    deliveries.c.provider, ev["repo"].as_string().label("repo"),
                    ev["sha"].as_string().label("sha"), ev["ref_name"].as_string().label("ref_name"))
             .join(jobs, jobs.c.id == f.job_id).join(deliveries, deliveries.c.id == jobs.c.delivery_id)
             .where(due, jobs.c.target.in_(targets)).order_by(f.next_check_at, f.job_id).limit(limit)
             .with_for_update(of=follows, skip_locked=True))
        with self._tx() as conn:
            rows = conn.execute(q).all()
            if not rows:
                return []
            conn.execute(update(follows).where(f.job_id.in_([r.job_id for r in rows]))
                         .values(lease_owner=owner, lease_expires_at=now + lease_seconds,
                                 checks=f.checks + 1, updated_at=now))
        return [ClaimedFollow(job_id=r.job_id, delivery_id=r.delivery_id, rule=r.rule, target=r.target,
                              run=Run(remote_id=r.remote_id, url=r.url or "", state=r.run_state,
                                      detail=r.detail or {}),
                              since=r.since, checks=r.checks + 1, source=r.source, provider=r.provider,
                              repo=r.repo or "", sha=r.sha or "", ref=r.ref_name or "",
                              attempt=r.attempts) for r in rows]

    def _my_follow(self, job_id: int, owner: str):
        f = follows.c
        return and_(f.job_id == job_id, f.state == "following", f.lease_owner == owner)

    def follow_checked(self, job_id: int, owner: str, run: Run, *, next_check_at: float, now: float,
                       error: str | None = None, statuses: list[NewStatus] = ()) -> bool:
        """Still building (or the look failed: `error`): look again at `next_check_at`. A run that
        moved on (a queue item became a build) updates the job's remote id and URL too."""
        with self._tx() as conn:
            if conn.execute(update(follows).where(self._my_follow(job_id, owner)).values(
                    run_state=run.state, remote_id=run.remote_id, url=run.url or None,
                    detail=run.detail, next_check_at=next_check_at,
                    last_error=_clip(error) if error else None, lease_owner=None,
                    lease_expires_at=None, updated_at=now)).rowcount != 1:
                return False
            conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.state == "started", or_(
                jobs.c.remote_id.is_distinct_from(run.remote_id),
                jobs.c.url.is_distinct_from(run.url or None)))
                .values(remote_id=run.remote_id, url=run.url or None, detail=run.detail, updated_at=now))
            self._insert_statuses(conn, statuses, now)
        return True

    def finish_follow(self, job_id: int, owner: str, run: Run, *, now: float,
                      statuses: list[NewStatus] = ()) -> bool:
        """The build ended (`run.state` succeeded or failed): the job moves from started to that
        state under the follow lease (its claim lease ended when it started), with one more
        attempt row for its history. False if the follow lease is no longer `owner`'s."""
        state = _RUN_STATES[run.state]
        with self._tx() as conn:
            since = conn.execute(update(follows).where(self._my_follow(job_id, owner)).values(
                state="done", run_state=run.state, remote_id=run.remote_id, url=run.url or None,
                detail=run.detail, lease_owner=None, lease_expires_at=None, last_error=None,
                updated_at=now).returning(follows.c.since)).scalar()
            if since is None:
                return False
            attempt = conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.state == "started")
                                   .values(state=state, remote_id=run.remote_id, url=run.url or None,
                                           detail=run.detail, updated_at=now)
                                   .returning(jobs.c.attempts)).scalar()
            if attempt is not None:
                conn.execute(insert(job_attempts).values(
                    job_id=job_id, attempt=attempt, owner=owner, started_at=since, finished_at=now,
                    outcome=state, remote_id=run.remote_id, url=run.url or None, detail=run.detail))
            self._insert_statuses(conn, statuses, now)
        return True

    def give_up_follow(self, job_id: int, owner: str, reason: str, *, now: float,
                       statuses: list[NewStatus] = ()) -> bool:
        """Stop following a build that runs too long; the job stays started."""
        with self._tx() as conn:
            if conn.execute(update(follows).where(self._my_follow(job_id, owner)).values(
                    state="gave_up", last_error=_clip(reason), lease_owner=None,
                    lease_expires_at=None, updated_at=now)).rowcount != 1:
                return False
            self._insert_statuses(conn, statuses, now)
        return True

    def follow_of(self, job_id: int) -> dict | None:
        """The follow row of one job (operators, tests)."""
        with self._tx(read=True) as conn:
            row = conn.execute(select(follows).where(follows.c.job_id == job_id)).first()
        return None if row is None else _row_dict(row)


class _Statements:
    """The dispatcher's statements, built once: constructing them per call costs more than
    running them, and a dispatcher makes a few per job."""

    def __init__(self):
        now = bindparam("now", type_=Double)
        queued = and_(jobs.c.state == "queued", jobs.c.next_attempt_at <= now)
        expired = and_(jobs.c.state == "running", jobs.c.lease_expires_at <= now)
        ids = bindparam("ids", expanding=True)
        mine = and_(jobs.c.state == "running", jobs.c.lease_owner == bindparam("owner"))
        self.any_queued = select(jobs.c.id).where(queued).limit(1)
        self.any_expired = select(jobs.c.id).where(expired).limit(1)
        pick = (select(jobs.c.id, jobs.c.delivery_id, jobs.c.rule, jobs.c.target, jobs.c.kind,
                       jobs.c.request, jobs.c.needs_files, jobs.c.path_filter, jobs.c.state,
                       jobs.c.attempts, jobs.c.first_queued_at, jobs.c.lease_owner,
                       jobs.c.leased_at, deliveries.c.event)
                .join(deliveries, deliveries.c.id == jobs.c.delivery_id)
                .limit(bindparam("limit", type_=Integer))
                .with_for_update(of=jobs, skip_locked=True))
        self.pick_queued = pick.where(queued).order_by(jobs.c.next_attempt_at, jobs.c.id)
        self.pick_expired = pick.where(expired).order_by(jobs.c.lease_expires_at, jobs.c.id)
        self.lease = update(jobs).where(jobs.c.id.in_(ids)).values(
            state="running", lease_owner=bindparam("owner"), leased_at=now,
            lease_expires_at=bindparam("expires", type_=Double), attempts=jobs.c.attempts + 1,
            updated_at=now)
        self.renew = (update(jobs).where(jobs.c.id.in_(ids), mine)
                      .values(lease_expires_at=bindparam("expires", type_=Double), updated_at=now)
                      .returning(jobs.c.id))
        self.finish = (update(jobs).where(jobs.c.id == bindparam("job_id"), mine)
                       .values(state=bindparam("new_state"),
                               next_attempt_at=func.coalesce(bindparam("next_at", type_=Double),
                                                             jobs.c.next_attempt_at),
                               remote_id=bindparam("new_remote_id", type_=Text),
                               url=bindparam("new_url", type_=Text),
                               detail=bindparam("new_detail", type_=jobs.c.detail.type),
                               last_error=bindparam("new_error", type_=Text),
                               lease_owner=None, lease_expires_at=None, updated_at=now)
                       .returning(jobs.c.attempts, jobs.c.leased_at))
        self.release = (update(jobs).where(jobs.c.id == bindparam("job_id"), mine)
                        .values(state="queued", attempts=jobs.c.attempts - 1, lease_owner=None,
                                leased_at=None, lease_expires_at=None))
        self.insert_attempt = insert(job_attempts)


_STATUS_FIELDS = ("key", "delivery_id", "job_id", "rule", "source", "provider", "repo", "sha", "ref",
                  "context", "rank", "state", "description", "target_url")


def _status_values(status: NewStatus) -> dict:
    return {k: getattr(status, k) for k in _STATUS_FIELDS}


_ATTEMPT_COLUMNS = ("job_id", "attempt", "owner", "started_at", "finished_at", "outcome", "error",
                    "remote_id", "url", "detail")
_JOB_COLUMNS = ("delivery_id", "rule", "target", "kind", "request", "needs_files", "path_filter",
                "state", "attempts", "first_queued_at", "next_attempt_at", "updated_at")


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


def claim_key(content_key: str | None) -> str | None:
    """The content key as content_keys holds it: a key over 2,000 bytes (a very long repo or
    ref name) by its SHA-256, which PostgreSQL's b-tree can hold (an entry is capped at about
    2.7 KB) on SQLite as well, so both backends dedupe the same pushes."""
    if content_key is None or len(content_key) <= _MAX_KEY_BYTES // 4:
        return content_key
    raw = content_key.encode("utf-8")
    return content_key if len(raw) <= _MAX_KEY_BYTES else "sha256:" + hashlib.sha256(raw).hexdigest()


def _dumps(value) -> str | None:
    return None if value is None else json.dumps(value)


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
