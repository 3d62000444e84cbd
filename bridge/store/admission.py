"""The claim's per-target policy (bridge.policies), inside the claim's transaction: which due jobs
may start now, which waiting ones a newer job of their group supersedes, which running builds it
cancels, and the token buckets and breakers kept in `policy_state`.

Input: a connection in the claim's write transaction (serialized among claimers: SQLite's writer
lock, a PostgreSQL advisory lock), the `Policies`, picked job rows. Output: for each row, a
reason to wait or None, its count taken; `Superseded` jobs; the state written back.
"""
from __future__ import annotations

import datetime
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import and_, exists, func, or_, select, text, update

from bridge.jobs import Job, Run
from bridge.policies import Policies, Rate, TargetPolicy
from bridge.store.schema import deliveries, follows, jobs, policy_state
from bridge.store.tx import _event

# Any constant: serializes the claims of every instance while a policy limits them.
_PG_CLAIM_LOCK = 0x6272696467650002
#: Reasons that hold for every job of the target: the claim stops looking at its other jobs.
_TARGET_WIDE = ("max_running ", "breaker ", "rate ")


@dataclass(frozen=True)
class Superseded:
    """A job a newer one of its group replaced: it waited (coalesce) or ran (cancel: `run` is
    its build, to be cancelled on the target; `running_here` when its start is still under way
    in the claiming dispatcher)."""
    job: Job
    by: int                     # the newer job's id
    by_sha: str                 # the commit it builds
    run: Run | None = None
    running_here: bool = False


def lock(conn) -> None:
    """Serialize policed claims (counts read, then slots taken) across instances."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_CLAIM_LOCK})


def running_clause(now):
    """Jobs holding a slot: leased and alive, or started and still followed (a build in progress)."""
    followed = exists().where(follows.c.job_id == jobs.c.id, follows.c.state == "following")
    return or_(and_(jobs.c.state == "running", jobs.c.lease_expires_at > now),
               and_(jobs.c.state == "started", followed))


def group_of(row) -> str:
    """A job's group; one stored before groups existed is a group of its own."""
    return row.policy_group or f"#{row.id}"


def clock(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%H:%M:%S")


class Admission:
    """Counts and state for one claim (or one "why does it wait" report, which writes nothing)."""

    def __init__(self, conn, policies: Policies, now: float):
        self.conn, self.policies, self.now = conn, policies, now
        self.by_target: Counter = Counter()
        self.by_rule: Counter = Counter()
        self.by_group: Counter = Counter()
        for target, rule, group, n in conn.execute(
                select(jobs.c.target, jobs.c.rule, jobs.c.policy_group, func.count())
                .where(running_clause(now)).group_by(jobs.c.target, jobs.c.rule, jobs.c.policy_group)):
            self.by_target[target] += n
            self.by_rule[(target, rule)] += n
            self.by_group[(target, group)] += n
        self.state: dict[str, dict] = {}
        self.dirty: set[str] = set()
        self._newest: dict[tuple, int] = {}     # group -> its newest queued job, once coalesced
        self._probing: set[str] = set()         # targets whose half-open probe this claim took
        self.waiting_superseded: list[tuple[list[int], int]] = []   # (job ids, by) coalesced
        keys = [f"target:{t}" for t in policies.targets] + [f"rule:{r}" for r in policies.rules]
        if keys:
            for row in conn.execute(select(policy_state).where(policy_state.c.key.in_(keys))):
                self.state[row.key] = dict(row._mapping)

    # -- deciding ---------------------------------------------------------------------------

    def reason(self, row, policy: TargetPolicy, freed: int = 0) -> str | None:
        """Why `row` may not start now (None: it may). `freed`: slots of its group that starting
        it would free (builds it cancels)."""
        target, rule, group = row.target, row.rule, row.policy_group
        if policy.breaker is not None:
            why = self._breaker_closed(target, policy, row.id)
            if why:
                return why
        if policy.max_running is not None and self.by_target[target] - freed >= policy.max_running:
            return f"max_running {policy.max_running} reached"
        rule_max, rule_rate = self.policies.rule_limits(rule)
        if rule_max is not None and self.by_rule[(target, rule)] - freed >= rule_max:
            return f"rule max_running {rule_max} reached"
        per_group = policy.max_running_per_group
        if per_group is not None and self.by_group[(target, group)] - freed >= per_group:
            return f"max_running_per_group {per_group} reached"
        if policy.debounce and row.first_queued_at + policy.debounce > self.now:
            return f"debounce until {clock(row.first_queued_at + policy.debounce)}"
        for key, rate, what in ((f"target:{target}", policy.rate, "rate"),
                                (f"rule:{rule}", rule_rate, "rule rate")):
            if rate is not None and self._tokens(key, rate) < 1:
                wait = (1 - self._tokens(key, rate)) / rate.per_second
                return f"{what} {rate} reached, next start at {clock(self.now + wait)}"
        return None

    def take(self, row, policy: TargetPolicy, freed: int = 0) -> None:
        """Count `row` as running (after `freed` of its group were cancelled), spend its tokens,
        and let it be the breaker's probe if the breaker is half open."""
        target, rule, group = row.target, row.rule, row.policy_group
        self.by_target[target] += 1 - freed
        self.by_rule[(target, rule)] += 1 - freed
        self.by_group[(target, group)] += 1 - freed
        _, rule_rate = self.policies.rule_limits(rule)
        for key, rate in ((f"target:{target}", policy.rate), (f"rule:{rule}", rule_rate)):
            if rate is not None:
                st = self._row(key)
                st["tokens"], st["refilled_at"] = self._tokens(key, rate) - 1, self.now
                self.dirty.add(key)
        st = self.state.get(f"target:{target}")
        if policy.breaker is not None and st is not None and st["opened_at"] is not None:
            st["probe_job"] = row.id
            self._probing.add(target)
            self.dirty.add(f"target:{target}")

    @staticmethod
    def target_wide(reason: str) -> bool:
        return reason.startswith(_TARGET_WIDE)

    def _breaker_closed(self, target: str, policy: TargetPolicy, job_id: int) -> str | None:
        st = self.state.get(f"target:{target}")
        if st is None or st["opened_at"] is None:
            return None
        until = st["opened_at"] + policy.breaker.open_for
        if self.now < until:
            return f"breaker open until {clock(until)}"
        if target in self._probing:
            return "breaker half open: one probe is running"
        probe = st["probe_job"]
        if probe is not None and probe != job_id and self._probe_alive(probe):
            return "breaker half open: one probe is running"
        return None

    def _probe_alive(self, job_id: int) -> bool:
        return self.conn.execute(select(jobs.c.id).where(jobs.c.id == job_id, jobs.c.state == "running",
                                                         jobs.c.lease_expires_at > self.now)).first() is not None

    def _tokens(self, key: str, rate: Rate) -> float:
        st = self.state.get(key)
        if st is None or st["tokens"] is None:
            return float(rate.count)
        return min(float(rate.count), st["tokens"] + (self.now - st["refilled_at"]) * rate.per_second)

    def _row(self, key: str) -> dict:
        return self.state.setdefault(key, {"key": key, "tokens": None, "refilled_at": None,
                                           "failures": 0, "opened_at": None, "probe_job": None,
                                           "updated_at": self.now})

    def save(self, upsert) -> None:
        """Write back the buckets and breakers this claim changed (`upsert`: the dialect's insert)."""
        for key in sorted(self.dirty):
            values = {k: v for k, v in self.state[key].items() if k != "key"}
            values["updated_at"] = self.now
            self.conn.execute(upsert(policy_state).values(key=key, **values)
                              .on_conflict_do_update(index_elements=["key"], set_=values))

    # -- groups -----------------------------------------------------------------------------

    def newest_waiting(self, row) -> int | None:
        """The newest queued job of `row`'s group, if newer than `row`."""
        known = self._newest.get((row.target, row.policy_group))
        if known is not None and known >= row.id:
            return known if known > row.id else None
        newest = self.conn.execute(select(func.max(jobs.c.id)).where(
            jobs.c.target == row.target, jobs.c.policy_group == row.policy_group,
            jobs.c.state == "queued")).scalar()
        return newest if newest is not None and newest > row.id else None

    def supersede_waiting(self, row, newest: int) -> None:
        """Every queued job of the group older than `newest` ends superseded by it; their ids go
        to `waiting_superseded` (read whole by `superseded_jobs` after the commit: a flood's
        thousands of events are never parsed while the claim holds the writer lock)."""
        older = and_(jobs.c.target == row.target, jobs.c.policy_group == row.policy_group,
                     jobs.c.state == "queued", jobs.c.id < newest)
        ids = self.conn.execute(update(jobs).where(older).values(
            state="superseded", superseded_by=newest, updated_at=self.now).returning(jobs.c.id)).scalars().all()
        self._newest[(row.target, row.policy_group)] = newest
        if ids:
            self.waiting_superseded.append((sorted(ids), newest))

    def cancellable(self, row, owner: str, kinds) -> list:
        """Older builds of the group the newer `row` cancels when it starts: started ones still
        followed (their run in follows), and ones of `kinds` (whose start is the build) running
        under `owner`'s own lease."""
        followed = and_(jobs.c.state == "started", follows.c.state == "following")
        mine = and_(jobs.c.state == "running", jobs.c.lease_owner == owner,
                    jobs.c.lease_expires_at > self.now, jobs.c.kind.in_(list(kinds)))
        q = (_superseded_rows().add_columns(jobs.c.state, follows.c.run_state, follows.c.remote_id,
                                             follows.c.url.label("run_url"), follows.c.detail.label("run_detail"))
             .outerjoin(follows, follows.c.job_id == jobs.c.id)
             .where(jobs.c.target == row.target, jobs.c.policy_group == row.policy_group,
                    jobs.c.id < row.id, or_(followed, mine)).order_by(jobs.c.id))
        return self.conn.execute(q).all()

    def cancel(self, row, builds: list) -> list[Superseded]:
        """`row` starts: the `cancellable` builds end superseded by it, their follows too."""
        if not builds:
            return []
        ids = [b.id for b in builds]
        self.conn.execute(update(jobs).where(jobs.c.id.in_(ids)).values(
            state="superseded", superseded_by=row.id, lease_owner=None, lease_expires_at=None,
            updated_at=self.now))
        self.conn.execute(update(follows).where(follows.c.job_id.in_(ids), follows.c.state == "following")
                          .values(state="cancelled", lease_owner=None, lease_expires_at=None,
                                  updated_at=self.now))
        sha = sha_of(self.conn, row.id)
        out = []
        for b in builds:
            run = (Run(remote_id=b.remote_id, url=b.run_url or "", state=b.run_state,
                       detail=b.run_detail or {}) if b.state == "started"
                   else Run(remote_id="", detail={"job_id": b.id}))
            out.append(Superseded(job=_job(b), by=row.id, by_sha=sha, run=run,
                                  running_here=b.state == "running"))
        return out

def sha_of(conn, job_id: int) -> str:
    """The commit a job builds (its event's sha)."""
    return conn.execute(select(deliveries.c.event["sha"].as_string()).select_from(jobs)
                        .join(deliveries, deliveries.c.id == jobs.c.delivery_id)
                        .where(jobs.c.id == job_id)).scalar() or ""


def superseded_jobs(conn, waiting: list[tuple[list[int], int]]) -> list[Superseded]:
    """`Admission.waiting_superseded`, read whole (events, the successors' commits)."""
    out = []
    for ids, by in waiting:
        sha = sha_of(conn, by)
        for i in range(0, len(ids), 500):
            rows = conn.execute(_superseded_rows().where(jobs.c.id.in_(ids[i:i + 500]))
                                .order_by(jobs.c.id)).all()
            out += [Superseded(job=_job(r), by=by, by_sha=sha) for r in rows]
    return out


def _superseded_rows():
    return (select(jobs.c.id, jobs.c.delivery_id, jobs.c.rule, jobs.c.target, jobs.c.kind,
                   jobs.c.request, jobs.c.attempts, jobs.c.first_queued_at, jobs.c.policy_group,
                   deliveries.c.event)
            .join(deliveries, deliveries.c.id == jobs.c.delivery_id))


def _job(r) -> Job:
    return Job(id=r.id, delivery=r.delivery_id, rule=r.rule, target=r.target, kind=r.kind,
               request=r.request, event=_event(r.event), attempt=r.attempts,
               first_queued_at=r.first_queued_at, group=r.policy_group or "")


# -- the breaker's memory, written with each result -----------------------------------------

def breaker_result(conn, upsert, target: str, ok: bool, failures_to_open: int, now: float) -> None:
    """A start's outcome for the target's breaker: a success closes it; a transient failure
    counts, and the `failures_to_open`th in a row (or a failed probe) opens it."""
    key = f"target:{target}"
    st = conn.execute(select(policy_state).where(policy_state.c.key == key)).first()
    if ok:
        if st is None or (st.failures == 0 and st.opened_at is None):
            return
        values = {"failures": 0, "opened_at": None, "probe_job": None, "updated_at": now}
    else:
        failures = (st.failures if st is not None else 0) + 1
        probing = st is not None and st.opened_at is not None
        opened = now if probing or failures >= failures_to_open else None
        values = {"failures": failures, "opened_at": opened, "probe_job": None, "updated_at": now}
    conn.execute(upsert(policy_state).values(key=key, **values)
                 .on_conflict_do_update(index_elements=["key"], set_=values))


def breaker_states(conn, policies: Policies, now: float) -> dict[str, str]:
    """target -> "closed" | "open" | "half_open", for every target with a breaker."""
    out = {}
    for target, policy in policies.targets.items():
        if policy.breaker is None:
            continue
        st = conn.execute(select(policy_state).where(policy_state.c.key == f"target:{target}")).first()
        if st is None or st.opened_at is None:
            out[target] = "closed"
        else:
            out[target] = "open" if now < st.opened_at + policy.breaker.open_for else "half_open"
    return out

