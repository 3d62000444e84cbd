"""The store's job queue: due jobs leased to dispatchers, their leases renewed, and each attempt's
result recorded under the lease (one attempt row per result).

Input: claims and results from the dispatcher. Output: claimed `Job`s (with their `Event`
parsed and their lease), True/False for "the lease was still yours", queue figures; `Queue`,
a mixin of `Store`.
"""
from __future__ import annotations

from collections import namedtuple

from sqlalchemy import Double, Integer, Text, and_, bindparam, func, insert, or_, select, update

from bridge.jobs import JOB_STATES, Job, Run
from bridge.policies import Breaker, Policies
from bridge.store import admission
from bridge.store.group import GroupCommit
from bridge.store.outbox import NewStatus
from bridge.store.schema import deliveries, job_attempts, jobs
from bridge.store.tx import Tx, _clip, _cursor, _dumps, _event, _loads, _Raw

# Run.state -> job state. A target that only queued or started a build leaves the job "started".
_RUN_STATES = {"succeeded": "succeeded", "failed": "failed", "started": "started", "queued": "started"}

_ATTEMPT_COLUMNS = ("job_id", "attempt", "owner", "started_at", "finished_at", "outcome", "error",
                    "remote_id", "url", "detail")


class Queue(Tx):
    """Claim, lease, record, release. Mixed into `Store` (which brings `_start_follow`,
    `_insert_statuses` and `retry_jobs` from its other mixins)."""

    def _compile(self, dialect) -> None:
        super()._compile(dialect)
        self._q = _Statements()
        self._finish_job = _Raw(self._q.finish, dialect)
        self._insert_attempt = _Raw(insert(job_attempts).values(
            {c: bindparam(c) for c in _ATTEMPT_COLUMNS}), dialect)
        # The claim without policies, on the driver's cursor (like ingest and _finish).
        q = self._q
        self._any_queued, self._any_expired = _Raw(q.any_queued, dialect), _Raw(q.any_expired, dialect)
        self._pick_queued, self._pick_expired = _Raw(q.pick_queued, dialect), _Raw(q.pick_expired, dialect)
        self._lease_one = _Raw(q.lease_one, dialect)
        self._picked = namedtuple("Picked", [c.name for c in q.pick_queued.selected_columns])

    def _group_commits(self) -> None:
        super()._group_commits()
        # Job results share commits among the threads of one process.
        self._finishes = GroupCommit(lambda items: self._write_batch(items, self._finish_one,
                                                                     self._tx_cursor))

    def claim(self, owner: str, limit: int, *, lease_seconds: float, now: float,
              policies: Policies | None = None, superseded: list | None = None,
              cancel_kinds=("exec",), look_first: bool = True) -> list[Job]:
        """Lease up to `limit` due jobs to `owner`: queued ones whose time has come, and running
        ones whose lease expired (their dispatcher died; the lost attempt is recorded). Each
        `Job` carries its attempt (1 on the first try), its lease's end and its parsed event.

        A read without any lock comes first, so an idle dispatcher polling often costs nothing;
        `look_first=False` skips it when the caller knows jobs are waiting (its last claim was full).

        With `policies` (bridge.policies) that limit anything, only jobs their policy lets start
        now are leased, decided in this transaction with every claimer's running jobs counted
        (store/admission.py); waiting jobs a newer one of their group supersedes end
        `superseded`, and so do running builds it cancels: each is appended to `superseded`
        (`Superseded`: the job, its successor, the build to cancel). `cancel_kinds`: target
        kinds whose start is the build (a build under this owner's own lease can be cancelled).
        """
        if limit <= 0 or (look_first and not self._any_due(now)):
            return []
        expires = now + lease_seconds
        if policies is None or not policies.active:
            with self._driver_tx() as (cur,):
                rows = self._pick_raw(cur, limit, now)
                if rows:
                    self._lease_raw(cur, rows, owner, now, expires)
            return [self._job(r, _loads(r.request), _loads(r.event), _loads(r.path_filter), expires)
                    for r in rows]
        waiting: list = []              # coalesced jobs' ids, read whole after the commit
        with self._tx() as conn:
            rows = self._pick_policed(conn, limit, now, owner, policies,
                                      superseded if superseded is not None else [], cancel_kinds,
                                      waiting)
            if rows:
                with _cursor(conn) as cur:
                    self._lease_raw(cur, rows, owner, now, expires)
                # A policed pick reads no event (most rows it reads do not start): now theirs.
                events = dict(conn.execute(self._q.events, {"ids": [r.id for r in rows]}).all())
        if waiting and superseded is not None:
            with self._tx(read=True) as conn:
                superseded += admission.superseded_jobs(conn, waiting)
        return [self._job(r, r.request, events[r.id], r.path_filter, expires) for r in rows]

    @staticmethod
    def _job(r, request, event, path_filter, expires: float) -> Job:
        return Job(id=r.id, delivery=r.delivery_id, rule=r.rule, target=r.target, kind=r.kind,
                   request=request, event=_event(event), attempt=r.attempts + 1,
                   first_queued_at=r.first_queued_at, needs_files=bool(r.needs_files),
                   path_filter=path_filter, lease_expires_at=expires, group=r.policy_group or "")

    def _pick_raw(self, cur, limit: int, now: float) -> list:
        """Due rows, expired leases first, locked for this transaction. Two index range scans,
        each stopping at `limit`: one ORDER BY over an OR would sort every due job (and read its
        event) on each claim of a long queue."""
        cur.execute(self._pick_expired.sql, self._pick_expired.params({"now": now, "limit": limit}))
        rows = [self._picked(*r) for r in cur.fetchall()]
        if len(rows) < limit:
            cur.execute(self._pick_queued.sql,
                        self._pick_queued.params({"now": now, "limit": limit - len(rows)}))
            rows += [self._picked(*r) for r in cur.fetchall()]
        return rows

    def _lease_raw(self, cur, rows, owner: str, now: float, expires: float) -> None:
        """Lease the picked rows to `owner`; a taken-over one's lost attempt is recorded."""
        lost = [self._insert_attempt.params({
                    "job_id": r.id, "attempt": r.attempts, "owner": r.lease_owner or "",
                    "started_at": r.leased_at, "finished_at": now, "outcome": "lost", "error":
                    f"lease of {r.lease_owner} expired; taken over by {owner}", "remote_id": None,
                    "url": None, "detail": None})
                for r in rows if r.state == "running"]
        if lost:
            cur.executemany(self._insert_attempt.sql, lost)
        cur.executemany(self._lease_one.sql, [self._lease_one.params(
            {"id": r.id, "owner": owner, "now": now, "expires": expires}) for r in rows])

    def _any_due(self, now: float) -> bool:
        """A lock-free look: is any job queued and due, or running on an expired lease?"""
        with self._driver_read() as cur:
            for q in (self._any_queued, self._any_expired):
                cur.execute(q.sql, q.params({"now": now}))
                if cur.fetchone() is not None:
                    return True
        return False

    def _pick_policed(self, conn, limit: int, now: float, owner: str, policies: Policies,
                      superseded: list, cancel_kinds, waiting: list) -> list:
        """Due rows their policies let start, in the order `_pick` takes them, read page by
        page past the jobs that must wait (a target that is full is left out of the next page)."""
        admission.lock(conn)
        adm = admission.Admission(conn, policies, now)
        taken: list = []
        full: set[str] = set()
        page = max(4 * limit, 64)
        for pick, order in ((self._q.light_expired, jobs.c.lease_expires_at),
                            (self._q.light_queued, jobs.c.next_attempt_at)):
            after = None
            for _ in range(50):       # bounded: a claim never reads the whole queue
                q = pick.where(jobs.c.target.not_in(sorted(full))) if full else pick
                if after is not None:
                    q = q.where(or_(order > after[0], and_(order == after[0], jobs.c.id > after[1])))
                rows = conn.execute(q, {"now": now, "limit": page}).all()
                for row in rows:
                    if row.target in full or len(taken) >= limit:
                        continue
                    self._admit(adm, row, owner, policies, superseded, cancel_kinds, taken, full)
                if len(taken) >= limit or len(rows) < page:
                    break
                last = rows[-1]
                after = (last.lease_expires_at if order is jobs.c.lease_expires_at
                         else last.next_attempt_at, last.id)
            if len(taken) >= limit:
                break
        adm.save(self._dialect_insert)
        waiting += adm.waiting_superseded
        return taken

    @staticmethod
    def _admit(adm, row, owner, policies, superseded, cancel_kinds, taken, full) -> None:
        policy = policies.of(row.target, row.rule)
        if row.state == "queued" and row.policy_group and policy.on_newer in ("coalesce", "cancel"):
            newest = adm.newest_waiting(row)
            if newest is not None:
                adm.supersede_waiting(row, newest)
                return
        builds = (adm.cancellable(row, owner, cancel_kinds)
                  if policy.on_newer == "cancel" and row.policy_group else [])
        why = adm.reason(row, policy, freed=len(builds))
        if why is not None:
            if adm.target_wide(why):
                full.add(row.target)
            return
        superseded += adm.cancel(row, builds)
        adm.take(row, policy, freed=len(builds))
        taken.append(row)

    def waiting_reasons(self, job_ids, policies: Policies | None, *, now: float) -> dict[int, str]:
        """Why each queued job of `job_ids` has not started (operators: `cibridge deliveries`):
        "retry at 12:00:10", "waiting: max_running 8 reached", "waiting: debounce until
        12:00:10", "waiting: breaker open until ...", "superseded by job N at the next claim",
        or "waiting for a free dispatcher". The claim's own checks, on a read transaction."""
        ids = list(job_ids)
        if not ids:
            return {}
        policies = policies or Policies()
        cols = (jobs.c.id, jobs.c.target, jobs.c.rule, jobs.c.policy_group, jobs.c.first_queued_at,
                jobs.c.next_attempt_at, jobs.c.attempts, jobs.c.state)
        out = {}
        with self._tx(read=True) as conn:
            rows = conn.execute(select(*cols).where(jobs.c.id.in_(ids), jobs.c.state == "queued")).all()
            adm = admission.Admission(conn, policies, now) if rows and policies.active else None
            for row in rows:
                out[row.id] = self._why_waiting(adm, row, policies, now)
        return out

    @staticmethod
    def _why_waiting(adm, row, policies: Policies, now: float) -> str:
        if row.next_attempt_at > now:
            return f"{'retry' if row.attempts else 'due'} at {admission.clock(row.next_attempt_at)}"
        if adm is None:
            return "waiting for a free dispatcher"
        policy = policies.of(row.target, row.rule)
        if row.policy_group and policy.on_newer in ("coalesce", "cancel"):
            newest = adm.newest_waiting(row)
            if newest is not None:
                return f"superseded by job {newest} at the next claim"
        why = adm.reason(row, policy)
        return f"waiting: {why}" if why else "waiting for a free dispatcher"

    def breaker_states(self, policies: Policies, *, now: float) -> dict[str, str]:
        """target -> "closed" | "open" | "half_open" for each target with a breaker."""
        if not any(p.breaker is not None for p in policies.targets.values()):
            return {}
        with self._tx(read=True) as conn:
            return admission.breaker_states(conn, policies, now)

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
                   statuses: list[NewStatus] = (), follow_at: float | None = None,
                   breaker: tuple[str, Breaker] | None = None) -> bool:
        """The target accepted the job: started (remote build) or finished (exec, memory).
        A started build is followed from `follow_at` (default now) until it ends; `statuses`
        are stored with the result. `breaker` (target name, its Breaker): the start closes it."""
        state = _RUN_STATES.get(run.state, "started")

        def after(conn):
            if state == "started":
                self._start_follow(conn, job_id, run, now, follow_at)
            self._insert_statuses(conn, statuses, now)
            if breaker is not None:
                admission.breaker_result(conn, self._dialect_insert, breaker[0], True,
                                         breaker[1].failures, now)
        return self._finish(job_id, owner, now, state, state=state, remote_id=run.remote_id,
                            url=run.url or None, detail=run.detail, after=after)

    def record_retry(self, job_id: int, owner: str, error: str, retry_at: float, *, now: float,
                     breaker: tuple[str, Breaker] | None = None) -> bool:
        """A transient failure: queued again for `retry_at`. `breaker` (target name, its
        Breaker): the failure counts toward opening it."""
        after = None
        if breaker is not None:
            def after(conn):
                admission.breaker_result(conn, self._dialect_insert, breaker[0], False,
                                         breaker[1].failures, now)
        return self._finish(job_id, owner, now, "retry", state="queued", next_attempt_at=retry_at,
                            error=_clip(error), after=after)

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

    def retry_job(self, job_id: int, *, now: float) -> bool:
        """Re-queue a dead or failed job now, with a fresh give-up clock (`retry_jobs`). False
        if it is in another state."""
        return self.retry_jobs([job_id], now=now) == [job_id]

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
                       jobs.c.leased_at, jobs.c.policy_group, jobs.c.next_attempt_at,
                       jobs.c.lease_expires_at, deliveries.c.event)
                .join(deliveries, deliveries.c.id == jobs.c.delivery_id)
                .limit(bindparam("limit", type_=Integer))
                .with_for_update(of=jobs, skip_locked=True))
        self.pick_queued = pick.where(queued).order_by(jobs.c.next_attempt_at, jobs.c.id)
        self.pick_expired = pick.where(expired).order_by(jobs.c.lease_expires_at, jobs.c.id)
        # The policed claim's: the same rows without their events (read for those it takes).
        light = (select(*[c for c in pick.selected_columns if c.table is jobs])
                 .limit(bindparam("limit", type_=Integer)).with_for_update(of=jobs, skip_locked=True))
        self.light_queued = light.where(queued).order_by(jobs.c.next_attempt_at, jobs.c.id)
        self.light_expired = light.where(expired).order_by(jobs.c.lease_expires_at, jobs.c.id)
        self.events = (select(jobs.c.id, deliveries.c.event)
                       .join(deliveries, deliveries.c.id == jobs.c.delivery_id).where(jobs.c.id.in_(ids)))
        self.lease_one = update(jobs).where(jobs.c.id == bindparam("id")).values(
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
