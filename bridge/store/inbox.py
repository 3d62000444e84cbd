"""The store's inbox: verified deliveries and the jobs their rules asked for, written in one
transaction (deduplicated by delivery id and by content key), and the operators' views of them.

Input: `NewDelivery` + `Job`s from ingress (and `cibridge replay`). Output: `Ingested`,
delivery listings and records as plain dicts (recent deliveries with their `Event` and open
`Job`s); `Inbox`, a mixin of `Store`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

from sqlalchemy import bindparam, delete, exists, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bridge.events import Event
from bridge.jobs import JOB_STATES, OPEN_STATES, OUTCOMES, Job
from bridge.store.group import GroupCommit
from bridge.store.operators import is_glob, repo_matcher
from bridge.store.schema import content_keys, deliveries, follows, job_attempts, jobs, statuses
from bridge.store.tx import Tx, _cursor, _dumps, _event, _Raw, _row_dict

_MAX_KEY_BYTES = 2000
_PRUNE_BATCH = 500
_JOB_COLUMNS = ("delivery_id", "rule", "target", "kind", "request", "needs_files", "path_filter",
                "state", "attempts", "first_queued_at", "next_attempt_at", "updated_at", "policy_group")


@dataclass(frozen=True)
class NewDelivery:
    """A verified delivery as ingress hands it to `Store.ingest`."""
    source: str
    provider: str
    delivery_id: str
    received_at: float              # epoch seconds
    headers: dict[str, str]         # already stripped of signature/token headers by the caller
    body: bytes
    event: Event | None             # None for ignored deliveries
    outcome: str                    # "matched" | "no_match" | "ignored"
    reason: str
    verdicts: list[dict]            # Verdict.to_dict(): rule, matched, reason, needs_files, stopped_by
    rules_version: str
    content_key: str | None         # providers.content_key(event): provider, host, repo, ref, before, after
    via: str | None = None          # None: the host sent it; "reconcile": synthesized by reconcile


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


def claim_key(content_key: str | None) -> str | None:
    """The content key as content_keys holds it: a key over 2,000 bytes (a very long repo or
    ref name) by its SHA-256, which PostgreSQL's b-tree can hold (an entry is capped at about
    2.7 KB) on SQLite as well, so both backends dedupe the same pushes."""
    if content_key is None or len(content_key) <= _MAX_KEY_BYTES // 4:
        return content_key
    raw = content_key.encode("utf-8")
    return content_key if len(raw) <= _MAX_KEY_BYTES else "sha256:" + hashlib.sha256(raw).hexdigest()


class Inbox(Tx):
    """Deliveries and their jobs: ingest, replay, listings, prune. Mixed into `Store`."""

    def _compile(self, dialect) -> None:
        super()._compile(dialect)
        ins = postgresql.insert if self._pg else sqlite.insert
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

    def _group_commits(self) -> None:
        super()._group_commits()
        # Ingests share commits among the threads of one process.
        self._ingests = GroupCommit(lambda items: self._write_batch(items, self._ingest_one,
                                                                    self._driver_tx))

    # -- ingress --------------------------------------------------------------------------

    def ingest(self, d: NewDelivery, new_jobs: list[Job]) -> Ingested:
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

    def ingest_all(self, items: list[tuple[NewDelivery, list[Job]]]) -> list[Ingested]:
        """Several deliveries, the events of ONE host delivery (Bitbucket: one per change), each
        with its jobs, in ONE transaction: all are stored or none. Each is deduplicated on its
        own, as `ingest` does (a redelivery finds every one of them stored)."""
        prepared = [(d, new_jobs, *self._ingest_params(d, new_jobs)) for d, new_jobs in items]
        result = self._write_batch([(prepared,)], self._ingest_several, self._driver_tx)[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def _ingest_several(self, cur, prepared: list) -> list[Ingested]:
        return [self._ingest_one(cur, *item) for item in prepared]

    def _ingest_params(self, d: NewDelivery, new_jobs: list[Job]) -> tuple:
        # Everything is serialized before the transaction begins, and the three statements run
        # on the driver's cursor: SQLAlchemy's per-statement work would double the time the
        # writer lock is held, and every ingest of every worker queues on that lock.
        event = d.event
        row = self._insert_delivery.params({
            "id": d.delivery_id, "source": d.source, "provider": d.provider,
            "received_at": d.received_at, "repo": event and event.repo, "ref": event and event.ref,
            "outcome": d.outcome, "reason": d.reason, "headers": _dumps(d.headers), "body": d.body,
            "event": _dumps(event.to_dict() if event is not None else None),
            "verdicts": _dumps(d.verdicts), "rules_version": d.rules_version,
            "content_key": d.content_key, "content_duplicate_of": None, "via": d.via,
        })
        key = self._claim_key.params({"key": claim_key(d.content_key), "delivery_id": d.delivery_id,
                                      "claimed_at": d.received_at})
        return row, key, self._job_rows(d.delivery_id, new_jobs, d.received_at)

    def _ingest_one(self, cur, d: NewDelivery, new_jobs, row, key, job_rows, *,
                    reused: str | None = None) -> Ingested:
        cur.execute(self._insert_delivery.sql, row)
        if cur.rowcount == 0:
            return self._id_taken(cur, d, new_jobs, reused)
        if not job_rows:
            return Ingested(d.delivery_id, None, None, reused_id=reused)
        if d.content_key is not None:
            cur.execute(self._claim_key.sql, key)
            if cur.rowcount == 0:
                return self._content_duplicate(cur, d, reused)
        return Ingested(d.delivery_id, None, None, self._insert_jobs(cur, job_rows), reused_id=reused)

    def _id_taken(self, cur, d: NewDelivery, new_jobs, reused: str | None) -> Ingested:
        """The delivery id is taken (the row is committed, or ours in this transaction: on
        PostgreSQL the insert waited for the other writer, and each statement sees what it
        committed): a redelivery of the same body, or another body stored under its own id."""
        cur.execute(self._stored_body.sql, self._stored_body.params({"id": d.delivery_id}))
        found = cur.fetchone()
        if reused is not None or found is None or bytes(found[0]) == d.body:
            return Ingested(d.delivery_id, duplicate_of=d.delivery_id, content_duplicate_of=None,
                            reused_id=reused)
        other = replace(d, delivery_id=reused_delivery_id(d.delivery_id, d.body))
        return self._ingest_one(cur, other, new_jobs, *self._ingest_params(other, new_jobs),
                                reused=d.delivery_id)

    def _content_duplicate(self, cur, d: NewDelivery, reused: str | None) -> Ingested:
        """The push was already accepted: this delivery stays, marked duplicate, with no jobs."""
        cur.execute(self._key_owner.sql, self._key_owner.params({"key": claim_key(d.content_key)}))
        first = cur.fetchone()[0]
        cur.execute(self._mark_duplicate.sql, self._mark_duplicate.params({
            "delivery": d.delivery_id, "first": first,
            "why": f"the same push was already accepted as delivery {first}"}))
        return Ingested(d.delivery_id, None, content_duplicate_of=first, reused_id=reused)

    def _job_rows(self, delivery_id: str, new_jobs: list[Job], now: float) -> list:
        return [self._insert_job.params({
            "delivery_id": delivery_id, "rule": j.rule, "target": j.target, "kind": j.kind,
            "request": _dumps(j.request), "needs_files": bool(j.needs_files),
            "path_filter": _dumps(j.path_filter), "state": "queued", "attempts": 0,
            "first_queued_at": now, "next_attempt_at": now, "updated_at": now,
            "policy_group": j.group or None}) for j in new_jobs]

    def _insert_jobs(self, cur, job_rows: list) -> list[int]:
        # One INSERT ... RETURNING per job (rarely more than one): executemany cannot return the
        # ids on either driver, and a driver-level execute costs some 20 us.
        ids = []
        for params in job_rows:
            cur.execute(self._insert_job.sql, params)
            ids.append(cur.fetchone()[0])
        return ids

    def add_jobs(self, delivery_id: str, new_jobs: list[Job], *, now: float) -> list[int]:
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

    # -- operators ------------------------------------------------------------------------

    def list_deliveries(self, *, source: str | None = None, repo: str | None = None,
                        state: str | None = None, limit: int = 50) -> list[dict]:
        """Newest first. `repo` is a glob of the rules' syntax, of any case (`acme/*`,
        `**/api`); `state` is a delivery outcome (OUTCOMES) or a job state (JOB_STATES:
        deliveries with at least one job in it)."""
        q = self._deliveries_query(source=source, repo=repo, state=state, limit=limit)
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
                 "reason": r.reason, "content_duplicate_of": r.content_duplicate_of, "via": r.via,
                 "matched": [v["rule"] for v in r.verdicts if v.get("matched")],
                 "jobs": by_delivery[r.id]} for r in rows]

    def _deliveries_query(self, *, source: str | None, repo: str | None, state: str | None,
                          limit: int):
        """The page of `list_deliveries`, filtered (a repo glob is matched here, on the ids and
        repos only, so the page is then read in full)."""
        d = deliveries.c
        q = (select(d.id, d.source, d.provider, d.received_at, d.repo, d.ref, d.outcome, d.reason,
                    d.verdicts, d.content_duplicate_of, d.via)
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
            matches = repo_matcher(repo)
            with self._tx(read=True) as conn:
                ids = [r.id for r in conn.execute(q.with_only_columns(d.id, d.repo))
                       if matches(r.repo)][:limit]
            q = q.where(d.id.in_(ids))
        return q.limit(limit)

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

    def recent_deliveries(self, *, since: float, sources: list[str], limit: int = 500,
                          seen=frozenset()) -> tuple[list[dict], int, float | None]:
        """Deliveries with an event from `sources` received after `since` (epoch seconds), oldest
        first, each with its `Event`, its verdicts and its jobs still queued or running (`Job`s):
        what needs a first status. Returns (those not in `seen`, how many matched in all, the
        last one's received_at): the ids come first, so the rows a scan has already seen are
        never read again in full."""
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
            events = {r.id: _event(r.event) for r in rows}
            by_delivery: dict[str, list[Job]] = {r.id: [] for r in rows}
            if rows:
                for j in conn.execute(select(jobs.c.id, jobs.c.delivery_id, jobs.c.rule, jobs.c.target,
                                             jobs.c.kind, jobs.c.request, jobs.c.needs_files,
                                             jobs.c.path_filter)
                                      .where(jobs.c.delivery_id.in_(list(by_delivery)),
                                             jobs.c.state.in_(OPEN_STATES)).order_by(jobs.c.id)):
                    by_delivery[j.delivery_id].append(Job(
                        id=j.id, delivery=j.delivery_id, rule=j.rule, target=j.target, kind=j.kind,
                        request=j.request, event=events[j.delivery_id], needs_files=bool(j.needs_files),
                        path_filter=j.path_filter))
        return ([{"delivery": r.id, "source": r.source, "provider": r.provider,
                  "received_at": r.received_at, "event": events[r.id], "verdicts": r.verdicts,
                  "jobs": by_delivery[r.id]} for r in rows],
                len(keys), keys[-1].received_at if keys else None)

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
