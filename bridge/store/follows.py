"""The store's follows: started builds looked at, under a follow lease of their own, until they
end (the job then moves to succeeded / failed) or run too long.

Input: started runs (from `record_run`), the dispatcher's looks at them. Output:
`ClaimedFollow`s (a build, with the `Job` it runs), True/False for "the follow lease was still
yours"; `Follows`, a mixin of `Store`.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, insert, or_, select, update

from bridge.jobs import Job, Run
from bridge.store.outbox import NewStatus
from bridge.store.queue import _RUN_STATES
from bridge.store.schema import deliveries, follows, job_attempts, jobs
from bridge.store.tx import Tx, _clip, _event, _row_dict


@dataclass(frozen=True)
class ClaimedFollow:
    """A started build leased to one dispatcher for one look at its progress. A fact about
    the build (its run, its follow clock), not a second kind of job: the job it runs is `job`
    (whose `attempt` is the one that started the build)."""
    job: Job
    run: Run
    since: float                    # when the follow began (the give-up clock)
    checks: int                     # looks so far, this one included


class Follows(Tx):
    """Started builds followed to their end. Mixed into `Store` (which brings `_insert_statuses`)."""

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
        q = (select(follows, jobs.c.delivery_id, jobs.c.rule, jobs.c.target, jobs.c.kind, jobs.c.request,
                    jobs.c.needs_files, jobs.c.path_filter, jobs.c.attempts, jobs.c.first_queued_at,
                    deliveries.c.event)
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
        return [ClaimedFollow(
            job=Job(id=r.job_id, delivery=r.delivery_id, rule=r.rule, target=r.target, kind=r.kind,
                    request=r.request, event=_event(r.event), needs_files=bool(r.needs_files),
                    path_filter=r.path_filter, attempt=r.attempts, first_queued_at=r.first_queued_at),
            run=Run(remote_id=r.remote_id, url=r.url or "", state=r.run_state, detail=r.detail or {}),
            since=r.since, checks=r.checks + 1) for r in rows]

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
