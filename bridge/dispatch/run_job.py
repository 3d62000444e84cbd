"""Dispatcher stage, one claimed job: decide its paths, start it on its target, record the outcome.

Input: a `Job` (leased to this dispatcher), the targets and their retry policies. Output: the
job recorded as started / succeeded / failed / skipped, queued again with a backoff (transient
failure) or dead, with the step's commit status; its log line written once the store has it.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace

from bridge.dispatch.joblog import JobLog, duration, message, result_level, step_statuses
from bridge.dispatch.outage import STORE_BACKOFF_MAX
from bridge.dispatch.pulls import Prepared
from bridge.dispatch.statuses import Feedback
from bridge.errors import StoreUnavailable, TargetRejected, TargetUnavailable
from bridge.jobs import Job
from bridge.policies import NO_POLICY, Policies, RetryPolicy, backoff
from bridge.store import Store
from bridge.targets.base import Target


class JobRunner:
    """Runs one claimed job to its recorded outcome (the `Dispatcher`'s pool calls `handle`).

    `timing(claimed_job)` is a context manager around the target's `start()` (the dispatcher
    learns how long starts take); `record_until`, set at shutdown, ends the retrying of a
    write the store refuses."""

    def __init__(self, store: Store, *, owner: str, now: Callable[[], float],
                 sleep: Callable[[float], None], rand: Callable[[], float], log: logging.Logger,
                 metrics=None, feedback: Feedback | None = None,
                 decide_paths: Callable[[Job], tuple[bool, str]] | None = None,
                 follow_interval: float = 0.0, timing=None,
                 prepare: Callable[[Job], Prepared] | None = None,
                 policies: Policies | None = None, superseder=None):
        self.store = store
        self.owner = owner
        self.now = now
        self.sleep = sleep
        self.rand = rand
        self.log = log
        self.metrics = metrics
        self.feedback = feedback
        self.decide_paths = decide_paths
        self.follow_interval = follow_interval
        self.timing = timing or (lambda cj: contextlib.nullcontext())
        self.record_until: float | None = None
        self.prepare = prepare          # pulls.py: superseded jobs, a comment's head
        self.policies = policies or Policies()
        self.superseder = superseder


    def handle(self, cj: Job, targets: Mapping[str, Target],
               policies: Mapping[str, RetryPolicy]) -> None:
        jlog = JobLog.of_job(self.log, cj)
        paths_reason = None
        try:
            if self.prepare is not None:
                ready = self.prepare(cj)
                cj = ready.job
                if ready.outcome:
                    self._not_ready(cj, jlog, policies, ready)
                    return
            if cj.needs_files and self.decide_paths is not None:
                run_it, reason = self.decide_paths(cj)
                paths_reason = reason
                if run_it:
                    jlog(logging.DEBUG, "paths: %s", reason)
                else:
                    self._record(cj, jlog, self.store.record_skipped, reason,
                                 statuses=self._statuses("skipped", cj, jlog, reason),
                                 said=(logging.INFO, "skipped: %s", reason))
                    self._count(cj, "skipped")
                    return
            target = targets.get(cj.target)
            if target is None:
                raise TargetRejected(f"target '{cj.target}' is not configured")
            jlog(logging.DEBUG, "starting (attempt %d)", cj.attempt)
            with self.timing(cj):
                run = target.start(cj)
        except TargetUnavailable as exc:
            self._retry(cj, jlog, policies, message(exc), exc.retry_after)
        except TargetRejected as exc:
            self._record(cj, jlog, self.store.record_dead, message(exc),
                         statuses=self._statuses("dead", cj, jlog, message(exc)),
                         said=(logging.ERROR, "rejected, dead letter: %s", message(exc)))
            self._count(cj, "dead")
        except Exception as exc:
            jlog(logging.ERROR, "unexpected error (treated as transient): %s", message(exc),
                 exc_info=True)
            self._retry(cj, jlog, policies, message(exc), None)
        else:
            if paths_reason:   # which source of changed files decided, for `deliveries show`
                run = replace(run, detail={**run.detail, "paths": paths_reason})
            self._started(cj, jlog, run)

    def _not_ready(self, cj: Job, jlog: JobLog, policies, ready: Prepared) -> None:
        """A pull request's job that does not start: superseded, its pull request closed, or
        its comment's head unknown (retried while the host does not answer)."""
        if ready.outcome == "retry":
            self._retry(cj, jlog, policies, ready.reason, ready.retry_after)
        elif ready.outcome == "dead":
            self._record(cj, jlog, self.store.record_dead, ready.reason,
                         statuses=self._statuses("dead", cj, jlog, ready.reason),
                         said=(logging.ERROR, "dead letter: %s", ready.reason))
            self._count(cj, "dead")
        else:
            statuses = (self._statuses("superseded", cj, jlog, ready.superseded_by)
                        if ready.superseded_by else [])
            self._record(cj, jlog, self.store.record_skipped, ready.reason, statuses=statuses,
                         said=(logging.INFO, "skipped: %s", ready.reason))
            self._count(cj, "skipped")

    def _started(self, cj: Job, jlog: JobLog, run) -> None:
        queued_for = self.now() - cj.first_queued_at
        # Recorded first, then logged and counted: an incident's log never shows a result
        # the store does not have (and a count is never worth a result).
        self._record(cj, jlog, self.store.record_run, run,
                     statuses=self._statuses("accepted", cj, jlog, run, cj.target),
                     follow_at=self.now() + self.follow_interval, breaker=self._breaker(cj),
                     # At info only what an operator acts on: the delivery's "accepted" line said the rest.
                     said=(result_level(run.state), "%s%s%s", run.state, f" {run.url}" if run.url else "",
                           f": {run.detail['reason']}" if run.detail.get("reason") else ""))
        self._count(cj, run.state, queued_for=queued_for)

    def _retry(self, cj: Job, jlog: JobLog, policies, error: str,
               retry_after: float | None) -> None:
        policy = policies.get(cj.target) or RetryPolicy()
        now = self.now()
        if now - cj.first_queued_at > policy.give_up_after:
            text = f"gave up after {duration(policy.give_up_after)}: {error}"
            self._record(cj, jlog, self.store.record_dead, text,
                         statuses=self._statuses("dead", cj, jlog, text),
                         said=(logging.ERROR, "%s", text))
            self._count(cj, "dead")
            return
        delay = backoff(policy, cj.attempt, self.rand)
        if retry_after is not None and retry_after > delay:
            delay = retry_after
        self._record(cj, jlog, self.store.record_retry, error, now + delay, breaker=self._breaker(cj),
                     said=(logging.WARNING, "transient failure, retry in %.1fs: %s", delay, error))
        self._count(cj, "retry")

    def _breaker(self, cj: Job):
        """(target, Breaker) when the job's target has a breaker: its results count there."""
        breaker = self.policies.targets.get(cj.target, NO_POLICY).breaker
        return (cj.target, breaker) if breaker is not None else None

    def _statuses(self, step: str, cj: Job, jlog: JobLog, *args) -> list:
        if self.feedback is None:
            return []
        return step_statuses(self.feedback, step, cj, jlog, *args)

    def _record(self, cj: Job, jlog: JobLog, method, *args, said: tuple = (), **kw) -> bool:
        """Record a result, retrying (backing off) through a store outage for as long as it
        lasts: the lease may expire meanwhile, but the write still lands unless another
        dispatcher took the job over (`Store._finish` checks), and giving up would run a
        finished job again. Only a shutdown ends the retrying, within its grace.

        `said` (level, message, *args) is the outcome's log line: written once the store has
        the result, so the log never shows an outcome as recorded when it was not. True if
        recorded."""
        level, msg, *margs = said or (logging.DEBUG, "result")
        what = msg % tuple(margs)
        delay = 0.5
        waited = False
        while True:
            try:
                applied = method(cj.id, self.owner, *args, now=self.now(), **kw)
                break
            except StoreUnavailable as exc:
                until = self.record_until
                if until is not None and self.now() >= until:
                    jlog(logging.ERROR, "shutting down with the store still unavailable (%s): this "
                         "result (%s) is not recorded, and the job runs again when its lease "
                         "expires", exc, what)
                    return False
                if not waited:
                    jlog(logging.WARNING, "cannot record the result yet (%s); retrying until the "
                         "store is back", exc)
                    waited = True
                self.sleep(delay if until is None else max(0.0, min(delay, until - self.now())))
                delay = min(delay * 2, STORE_BACKOFF_MAX)
        if waited:
            jlog(logging.INFO, "result recorded, the store is back")
        if not applied:
            if self.superseder is not None and self.superseder.was_cancelled(cj.id):
                jlog(logging.INFO, "cancelled here, superseded by a newer job of its group (%s)", what)
                return False
            jlog(logging.WARNING, "lease was taken over by another dispatcher; this result (%s) "
                 "is not recorded", what)
            return False
        if said:
            jlog(level, msg, *margs)
        return True

    def _count(self, cj: Job, state: str, **kw) -> None:
        if self.metrics is not None:
            self.metrics.job(cj.target, state, **kw)
