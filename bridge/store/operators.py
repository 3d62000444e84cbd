"""Operator queries of the store: delivery ids by prefix, repository globs, and jobs chosen by
filter and queued again (`cibridge deliveries`, `cibridge retry`).

Input: filters from the command line. Output: plain dicts and ids; `StoreUnavailable` as for
every store call. A mixin of `Store` (it uses the store's `_tx`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from sqlalchemy import and_, func, insert, select, update

from bridge.globs import GlobError, compile_pattern
from bridge.jobs import RERUN_KEY
from bridge.store.schema import deliveries, job_attempts, jobs

#: Job states `cibridge retry` queues again: dead (never accepted, or given up) in place; failed
#: (the build ran and failed) as a new run the target cannot mistake for the old one.
RETRYABLE_STATES = ("dead", "failed")
_GLOB_CHARS = frozenset("*?[+!\\")


def repo_matcher(pattern: str) -> Callable[[str | None], bool]:
    """A repository filter: the rules' glob syntax (`acme/*`, `**/api`), matched without regard
    to case (GitHub and GitLab paths are case-insensitive). Raises GlobError on a bad pattern."""
    compiled = compile_pattern(pattern.lower())
    return lambda repo: repo is not None and compiled.match(repo.lower())


def is_glob(pattern: str) -> bool:
    return bool(_GLOB_CHARS & set(pattern))


class OperatorQueries:
    """Mixed into `Store`."""

    def delivery_ids(self, prefix: str, *, limit: int = 11) -> list[str]:
        """Up to `limit` stored delivery ids that start with `prefix` (the exact id first)."""
        d = deliveries.c
        with self._tx(read=True) as conn:
            if conn.execute(select(d.id).where(d.id == prefix)).first() is not None:
                return [prefix]
            return list(conn.execute(select(d.id).where(d.id.startswith(prefix, autoescape=True))
                                     .order_by(d.id).limit(limit)).scalars())

    def find_jobs(self, *, states: Iterable[str] = RETRYABLE_STATES, ids: Iterable[int] | None = None,
                  since: float | None = None, target: str | None = None, rule: str | None = None,
                  repo: str | None = None) -> list[dict]:
        """Jobs in `states`, optionally only `ids`, updated at or after `since` (epoch seconds:
        when they failed or died), of `target`, of `rule` (a glob) or of a repository (a glob,
        any case); oldest first, with their delivery's repo and ref."""
        j, d = jobs.c, deliveries.c
        q = (select(j.id, j.delivery_id, j.rule, j.target, j.kind, j.state, j.attempts, j.updated_at,
                    j.last_error, d.repo, d.ref)
             .join(deliveries, d.id == j.delivery_id)
             .where(j.state.in_(list(states))).order_by(j.updated_at, j.id))
        if ids is not None:
            q = q.where(j.id.in_(list(ids)))
        if since is not None:
            q = q.where(j.updated_at >= since)
        if target is not None:
            q = q.where(j.target == target)
        keep_rule = _name_filter(rule)
        keep_repo = _repo_filter(repo)
        if repo is not None and not is_glob(repo):
            q = q.where(func.lower(d.repo) == repo.lower())
        with self._tx(read=True) as conn:
            rows = conn.execute(q).all()
        return [{"id": r.id, "delivery": r.delivery_id, "rule": r.rule, "target": r.target,
                 "kind": r.kind, "state": r.state, "attempts": r.attempts, "updated_at": r.updated_at,
                 "last_error": r.last_error, "repo": r.repo, "ref": r.ref}
                for r in rows if keep_rule(r.rule) and keep_repo(r.repo)]

    def retry_jobs(self, job_ids: Iterable[int], *, now: float,
                   states: Iterable[str] = RETRYABLE_STATES, who: str | None = None) -> list[int]:
        """Queue jobs again now, with a fresh give-up clock, each only if it is still in one of
        `states` (a job that moved on meanwhile is left alone). A failed job's request gets the
        next RERUN_KEY, so the target starts a new build instead of finding the failed one by its
        idempotency key. Each gets a "requeued" line in its history, naming `who` when given (the
        delivery page's user). Returns the ids queued."""
        by = f"by {who}" if who else "by an operator"
        states = list(states)
        done = []
        with self._tx() as conn:
            rows = conn.execute(select(jobs.c.id, jobs.c.state, jobs.c.request, jobs.c.attempts)
                                .where(jobs.c.id.in_(list(job_ids)), jobs.c.state.in_(states))
                                .order_by(jobs.c.id)).all()
            for r in rows:
                values = {"state": "queued", "next_attempt_at": now, "first_queued_at": now,
                          "updated_at": now}
                if r.state == "failed":
                    values["request"] = {**r.request, RERUN_KEY: int(r.request.get(RERUN_KEY, 0)) + 1}
                if conn.execute(update(jobs).where(and_(jobs.c.id == r.id, jobs.c.state == r.state))
                                .values(**values)).rowcount != 1:
                    continue
                conn.execute(insert(job_attempts).values(
                    job_id=r.id, attempt=r.attempts, owner="operator", started_at=None, finished_at=now,
                    outcome="requeued", error=f"queued again {by} (was {r.state})"))
                done.append(r.id)
        return done


def _name_filter(pattern: str | None) -> Callable[[str], bool]:
    if pattern is None:
        return lambda name: True
    compiled = compile_pattern(pattern)
    return compiled.match


def _repo_filter(pattern: str | None) -> Callable[[str | None], bool]:
    return (lambda repo: True) if pattern is None else repo_matcher(pattern)


__all__ = ["OperatorQueries", "RETRYABLE_STATES", "GlobError", "is_glob", "repo_matcher"]
