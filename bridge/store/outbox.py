"""The store's outbox: commit statuses for the git host, stored with the results they report,
then leased to one dispatcher at a time for posting, in order per job.

Input: `NewStatus`es (dispatch/statuses.py builds them), the host's answers. Output:
`ClaimedStatus`es, status rows as plain dicts; `Outbox`, a mixin of `Store`.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, exists, or_, select, update

from bridge.store.schema import statuses
from bridge.store.tx import Tx, _clip, _row_dict


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


_STATUS_FIELDS = ("key", "delivery_id", "job_id", "rule", "source", "provider", "repo", "sha", "ref",
                  "context", "rank", "state", "description", "target_url")


def _status_values(status: NewStatus) -> dict:
    return {k: getattr(status, k) for k in _STATUS_FIELDS}


class Outbox(Tx):
    """Statuses to post: stored, claimed, answered. Mixed into `Store`."""

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
