"""Dispatcher stage, after a start: following started builds until they end.

Input: follows claimed from the store (builds of targets that can `follow`), leased like jobs.
Output: each look's answer recorded (moved on, finished, gave up, or look again later with a
backoff), with the step's commit status; a finished build's outcome logged and counted.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait

from bridge.dispatch.joblog import JobLog, duration, message, result_level, step_statuses
from bridge.dispatch.statuses import Feedback
from bridge.errors import StoreUnavailable
from bridge.policies import FollowPolicy
from bridge.store import ClaimedFollow, Store
from bridge.targets.base import Target


class Follower:
    """Looks at started builds again and again, backing off from `policy.interval` to
    `policy.max_interval`, at most `policy.concurrency` at a time, until they end or
    `policy.give_up_after` passes. The follow state is in the store, so a restarted dispatcher
    (or another one) carries on."""

    def __init__(self, store: Store, policy: FollowPolicy, *, owner: str, lease_seconds: float,
                 now: Callable[[], float], rand: Callable[[], float], log: logging.Logger,
                 metrics=None, feedback: Feedback | None = None):
        self.store = store
        self.policy = policy
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.now = now
        self.rand = rand
        self.log = log
        self.metrics = metrics
        self.feedback = feedback
        self._lock = threading.Lock()
        self._following: dict[int, Future] = {}
        self._pool = ThreadPoolExecutor(max_workers=policy.concurrency, thread_name_prefix="follow")

    def due(self, targets: Mapping[str, Target]) -> list[Future]:
        """Claim the follows that are due (up to the free slots) among builds of `targets` and
        submit them; returns their futures."""
        targets = {name: t for name, t in targets.items() if can_follow(t)}
        with self._lock:
            free = self.policy.concurrency - len(self._following)
        if free <= 0 or not targets:
            return []
        try:
            claimed = self.store.claim_follows(self.owner, list(targets), free,
                                               lease_seconds=self.lease_seconds, now=self.now())
        except StoreUnavailable as exc:
            self.log.error("cannot claim builds to follow: %s", exc, extra={"delivery": None})
            return []
        futures = []
        for cf in claimed:
            with self._lock:
                if cf.job.id in self._following:
                    continue
                fut = self._pool.submit(self.follow, cf, targets[cf.job.target])
                self._following[cf.job.id] = fut
            fut.add_done_callback(lambda f, cf=cf: self._followed(cf, f))
            futures.append(fut)
        return futures

    def shutdown(self, grace: float) -> None:
        """Follows are short and leased: an unfinished one is taken up again later."""
        with self._lock:
            following = list(self._following.values())
        wait(following, timeout=min(grace, 10.0))
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _followed(self, cf: ClaimedFollow, fut: Future) -> None:
        with self._lock:
            self._following.pop(cf.job.id, None)
        exc = None if fut.cancelled() else fut.exception()
        if exc is not None:   # a bug: never lose it with the future
            JobLog.of_follow(self.log, cf)(logging.ERROR, "following failed in the dispatcher: %s",
                                           message(exc), exc_info=exc)

    def follow(self, cf: ClaimedFollow, target: Target) -> None:
        """One look at one build, recorded."""
        policy = self.policy
        jlog = JobLog.of_follow(self.log, cf)
        now = self.now()
        try:
            if now - cf.since > policy.give_up_after:
                reason = f"stopped following the build after {duration(policy.give_up_after)}"
                jlog(logging.WARNING, "%s", reason)
                self.store.give_up_follow(cf.job.id, self.owner, reason, now=now,
                                          statuses=self._statuses("gave_up", cf, jlog, cf.run, reason))
                return
            # Back off from the interval to the maximum, with jitter so builds started together
            # are not asked about together.
            delay = min(policy.max_interval, policy.interval * 1.5 ** min(cf.checks - 1, 60))
            delay *= 0.75 + 0.5 * self.rand()
            try:
                run = target.follow(cf.run)
            except Exception as exc:   # noqa: BLE001 - TargetError or a bug: look again later
                jlog(logging.WARNING, "cannot follow (look again in %.1fs): %s", delay, message(exc))
                self.store.follow_checked(cf.job.id, self.owner, cf.run, next_check_at=now + delay,
                                          now=self.now(), error=message(exc))
                return
            if run.state in ("succeeded", "failed"):
                self._finish(cf, jlog, run)
                return
            moved = (run.state, run.url) != (cf.run.state, cf.run.url)
            recorded = self.store.follow_checked(
                cf.job.id, self.owner, run, next_check_at=now + delay, now=self.now(),
                statuses=self._statuses("building", cf, jlog, run, cf.job.target) if moved else [])
            if moved and recorded:
                jlog(logging.DEBUG, "%s %s", run.state, run.url)
        except StoreUnavailable as exc:
            jlog(logging.ERROR, "cannot record the follow (%s); its lease expires and it is looked "
                 "at again", exc)

    def _finish(self, cf: ClaimedFollow, jlog: JobLog, run) -> None:
        # Logged once the store has it (a failed write is logged by `follow` instead).
        if self.store.finish_follow(cf.job.id, self.owner, run, now=self.now(),
                                    statuses=self._statuses("finished", cf, jlog, run)):
            jlog(result_level(run.state), "build %s%s", run.state, f" {run.url}" if run.url else "")
            if self.metrics is not None:
                self.metrics.job(cf.job.target, run.state)
        else:
            jlog(logging.WARNING, "build %s, but the follow was taken over: not recorded here",
                 run.state)

    def _statuses(self, step: str, cf: ClaimedFollow, jlog: JobLog, *args) -> list:
        return step_statuses(self.feedback, step, cf.job, jlog, *args)


def can_follow(target: Target) -> bool:
    # The base class's follow() knows nothing: such targets' builds stay "started".
    return type(target).follow is not Target.follow
