"""Dispatcher stage: claims stored jobs with a lease, starts them on their targets, records results.

Input: the `Store` queue, the configured targets and their retry policies. Output: every job
moved on to started / succeeded / failed / skipped, back to queued with a backoff (transient
failure), or dead (permanent failure, or transient for longer than the target's give-up time);
started builds followed to their end; commit statuses (statuses.py) stored with each step.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import replace
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from bridge.dispatch.statuses import Feedback, StatusPoster
from bridge.errors import StoreUnavailable, TargetRejected, TargetUnavailable
from bridge.jobs import Job
from bridge.policies import FollowPolicy, RetryPolicy, backoff
from bridge.store import ClaimedFollow, Store
from bridge.targets.base import Target

logger = logging.getLogger("bridge.dispatcher")

_STORE_BACKOFF_MAX = 5.0   # seconds between claims (and between tries to record) while the store is down
# Target kinds whose start() is the whole build (exec runs the command to its end). Their jobs are
# claimed ahead of a free slot only while that target's builds are known to be quick (a moving
# average of their last durations, and every one in flight so far, under _QUICK_START seconds):
# a job claimed ahead of a long build would wait it out while an idle dispatcher could run it,
# and one claim per job would halve the rate of quick commands.
_START_IS_THE_BUILD = frozenset({"exec"})
_QUICK_START = 0.25


class Dispatcher:
    """Runs jobs from the store on their targets, `concurrency` at a time.

    One dispatcher per process; `owner` must be unique among all running dispatchers (a lease is
    held by owner name). Several dispatchers may share one database: a job is leased to one of
    them at a time, a lease is renewed while the job runs, and an expired lease (its dispatcher
    died) is taken over. A job can thus run twice only if its dispatcher died between starting it
    and recording the start. A result that cannot be recorded (the store is down) is retried
    until the store is back, however long that takes (the late write lands unless another
    dispatcher took the job over); only a shutdown ends the retrying, within its grace.

    `now`, `sleep` and `rand` are injected so retry tests need no real waiting;
    `decide_paths(claimed_job) -> (run?, reason)` decides jobs whose rule has path filters the
    event's own file lists could not settle (None: run them all).

    Started builds of targets that can follow them (`Target.follow`) are looked at again and
    again, backing off from `follow.interval` to `follow.max_interval`, at most
    `follow.concurrency` at a time, until they end or `follow.give_up_after` passes; the follow
    state is in the store, so a restarted dispatcher (or another one) carries on. With
    `feedback`, each step of a job also stores its commit status, posted by a `StatusPoster`
    beside the jobs (never in their way).
    """

    def __init__(self, store: Store, targets: Mapping[str, Target],
                 retry_policies: Mapping[str, RetryPolicy], *, owner: str, concurrency: int = 4,
                 lease_seconds: float = 60.0, poll_interval: float = 0.05,
                 now: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 rand: Callable[[], float] = random.random,
                 decide_paths: Callable[[Job], tuple[bool, str]] | None = None,
                 log: logging.Logger = logger, metrics=None, feedback: Feedback | None = None,
                 follow: FollowPolicy = FollowPolicy()):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.store = store
        self.owner = owner
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.now = now
        self.sleep = sleep
        self.rand = rand
        self.decide_paths = decide_paths
        self.log = log
        self.metrics = metrics
        self._lock = threading.Lock()
        self._targets: dict[str, Target] = dict(targets)
        self._policies: dict[str, RetryPolicy] = dict(retry_policies)
        self._inflight: dict[int, tuple[Job, Future]] = {}
        self._starting: dict[int, float] = {}         # job id -> monotonic time its start() began
        self._start_seconds: dict[str, float] = {}    # target -> moving average of start() durations
        self._ahead_blocked = False   # a slow job was claimed ahead and released: not again until a slot frees
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="dispatch")
        self._last_renewal = now()
        self._store_down = False
        self._down_delay = poll_interval
        self._record_until: float | None = None   # set at shutdown: stop retrying to record then
        self.feedback = feedback
        self.follow_policy = follow
        self._following: dict[int, Future] = {}
        self._follow_pool = ThreadPoolExecutor(max_workers=follow.concurrency, thread_name_prefix="follow")
        self.poster = StatusPoster(store, feedback, owner=owner, lease_seconds=lease_seconds, now=now,
                                   rand=rand, log=logging.getLogger("bridge.feedback"))

    def set_feedback(self, feedback: Feedback | None) -> None:
        """Rules reload: statuses from now on use this (sources' report:, rules' context)."""
        self.feedback = feedback
        self.poster.feedback = feedback

    def set_targets(self, targets: Mapping[str, Target], retry_policies: Mapping[str, RetryPolicy]) -> None:
        """Rules reload: jobs claimed from now on use these; running ones finish on the old."""
        with self._lock:
            self._targets = dict(targets)
            self._policies = dict(retry_policies)

    # -- loops ----------------------------------------------------------------------------

    def run_once(self) -> int:
        """Claim up to the free slots, run those jobs to the end; returns how many were handled."""
        with self._lock:
            free = self.concurrency - len(self._inflight)
        claimed = self._claim_and_submit(free)
        pending = {f for _, f in claimed}
        while pending:
            _, pending = wait(pending, timeout=self._renewal_interval())
            self._renew_if_due()
        return len(claimed)

    def run(self, stop: threading.Event, *, grace: float = 30.0, background_interval: float = 0.1) -> None:
        """Dispatch until `stop` is set; then stop claiming, give in-flight jobs `grace` seconds
        to finish, interrupt what still runs (its target's `close()`: exec kills its commands,
        whose jobs are retried later) and release anything claimed but not started. Follows and
        status posts run beside, on a thread of their own, every `background_interval` seconds.

        Under load it claims a batch ahead (up to `concurrency` jobs waiting for a free slot,
        leased and renewed like running ones): one claim per job would spend more time in the
        store than short jobs spend running. Only while every job in flight is quick to start,
        though: with nothing in flight, or an exec job (its start is the whole build) whose
        target's builds are not known to take under _QUICK_START, it claims just the free slots,
        so a job never waits out a long build here while another dispatcher is idle."""
        background = threading.Thread(target=self._background, args=(stop, background_interval),
                                      name="dispatch-background", daemon=True)
        background.start()
        try:
            while not stop.is_set():
                if not self._renew_if_due():
                    self.sleep(self._down_delay)   # the store is down: claim nothing, back off
                    continue
                with self._lock:
                    busy = [f for _, f in self._inflight.values()]
                    ahead = bool(busy) and not self._ahead_blocked and self._starts_are_quick()
                # Claim only with a slot free or about to be (no more than `concurrency` in
                # flight): topping up a batch ahead one job at a time costs a claim per job.
                limit = (2 if ahead else 1) * self.concurrency - len(busy)
                if (len(busy) <= self.concurrency and limit > 0
                        and self._claim_and_submit(limit, free=self.concurrency - len(busy))):
                    continue
                if len(busy) >= self.concurrency:
                    wait(busy, timeout=self.poll_interval, return_when=FIRST_COMPLETED)
                else:
                    # While the store is down, back off (doubling, capped) instead of polling hard.
                    self.sleep(self._down_delay if self._store_down else self.poll_interval)
        finally:
            # Results the store still refuses are given up on within the grace (logged as such).
            self._record_until = self.now() + grace * 0.9
            background.join(timeout=grace)
            self._shutdown(grace)

    def _background(self, stop: threading.Event, interval: float) -> None:
        while not stop.wait(interval):
            try:
                self._follow_due()
                self.poster.tick()
            except Exception:   # noqa: BLE001 - keep following and posting whatever one round did
                self.log.error("follow/status round failed", exc_info=True, extra={"delivery": None})

    def _shutdown(self, grace: float) -> None:
        with self._lock:
            inflight = list(self._inflight.values())
        for cj, fut in inflight:
            if fut.cancel():    # claimed, never started
                self._release(cj)
        running = [(cj, f) for cj, f in inflight if not f.cancelled()]
        _, still = wait([f for _, f in running], timeout=grace)
        if still:
            with self._lock:
                targets = dict(self._targets)
            for cj, fut in running:
                if fut in still:
                    self._log(cj, logging.WARNING, "still running after the %gs shutdown grace; "
                              "interrupting it", grace)
            for name in {cj.target for cj, fut in running if fut in still}:
                if name in targets:
                    targets[name].close()
            wait(still, timeout=5.0)
        self._pool.shutdown(wait=False, cancel_futures=True)
        # Follows and posts are short and leased: an unfinished one is taken up again later.
        with self._lock:
            following = list(self._following.values())
        wait(following, timeout=min(grace, 10.0))
        self._follow_pool.shutdown(wait=False, cancel_futures=True)
        self.poster.shutdown(wait=min(grace, 10.0))

    # -- claiming and leases --------------------------------------------------------------

    def _claim_and_submit(self, limit: int, *, free: int | None = None) -> list[tuple[Job, Future]]:
        """Claim up to `limit` jobs and queue them for the pool; the first `free` start at once,
        the rest wait for a slot (claimed ahead). A build-is-the-start job (exec) of a target not
        known to be quick is never kept waiting: it is released again at once."""
        if limit <= 0:
            return []
        try:
            claimed = self.store.claim(self.owner, limit, lease_seconds=self.lease_seconds,
                                       now=self.now())
        except StoreUnavailable as exc:
            self._store_unavailable("cannot claim jobs", exc)
            return []
        self._store_available()
        if free is not None and len(claimed) > free:
            with self._lock:
                slow = [cj for cj in claimed[free:] if cj.kind in _START_IS_THE_BUILD
                        and not self._start_seconds.get(cj.target, _QUICK_START) < _QUICK_START]
            if slow:
                with self._lock:
                    self._ahead_blocked = True      # until a slot frees: no claim/release loop
                for cj in slow:
                    self._release(cj, "released: claimed ahead of a slot, but its builds are not quick")
                slow_ids = {cj.id for cj in slow}
                claimed = [cj for cj in claimed if cj.id not in slow_ids]
        submitted = []
        for cj in claimed:
            with self._lock:
                if cj.id in self._inflight:
                    # Our own lease ran out while the job still runs here: let that run finish.
                    continue
                fut = self._pool.submit(self._handle, cj)
                self._inflight[cj.id] = (cj, fut)
            fut.add_done_callback(lambda f, cj=cj: self._done(cj, f))
            submitted.append((cj, fut))
        return submitted

    def _starts_are_quick(self) -> bool:
        """Whether every job in flight is quick to start (so claiming ahead costs nobody a
        wait). Called with `_lock` held."""
        now = time.monotonic()
        for cj, _ in self._inflight.values():
            if cj.kind not in _START_IS_THE_BUILD:
                continue
            typical = self._start_seconds.get(cj.target)
            began = self._starting.get(cj.id)
            if typical is None or typical >= _QUICK_START or (began and now - began >= _QUICK_START):
                return False
        return True

    def _started(self, cj: Job) -> None:
        with self._lock:
            self._starting[cj.id] = time.monotonic()

    def _start_ended(self, cj: Job) -> None:
        """Fold this start's duration into its target's moving average."""
        with self._lock:
            began = self._starting.pop(cj.id, None)
            if began is not None:
                took = time.monotonic() - began
                before = self._start_seconds.get(cj.target)
                self._start_seconds[cj.target] = took if before is None else 0.7 * before + 0.3 * took

    def _done(self, cj: Job, fut: Future) -> None:
        with self._lock:
            self._inflight.pop(cj.id, None)
            self._ahead_blocked = False
        exc = None if fut.cancelled() else fut.exception()
        if exc is not None:   # a bug: never lose it with the future
            self._log(cj, logging.ERROR, "failed in the dispatcher: %s", _message(exc), exc_info=exc)

    def _store_unavailable(self, what: str, exc: BaseException) -> None:
        """Log the start of an outage once; back off (doubling, capped) while it lasts."""
        if not self._store_down:
            self.log.error("%s: %s", what, exc, extra={"delivery": None})
            self._down_delay = self.poll_interval
        self._down_delay = min(_STORE_BACKOFF_MAX, max(self.poll_interval, 0.05, self._down_delay * 2))
        self._store_down = True

    def _store_available(self) -> None:
        if self._store_down:
            self.log.info("store available again", extra={"delivery": None})
            self._store_down = False

    def _renewal_interval(self) -> float:
        return max(self.lease_seconds / 3, 0.01)

    def _renew_if_due(self) -> bool:
        """Renew our leases every third of the lease time, and at every turn while the store is
        down: the first write after an outage renews them, before any claim could take our own
        expired leases over. False while the store is down and we hold leases: claim nothing."""
        now = self.now()
        if not self._store_down and now - self._last_renewal < self._renewal_interval():
            return True
        self._last_renewal = now
        with self._lock:
            inflight = {cj.id: cj for cj, _ in self._inflight.values()}
        if not inflight:
            return True   # nothing to renew; while the store is down, a claim probes it
        try:
            kept = set(self.store.renew_leases(self.owner, list(inflight),
                                               lease_seconds=self.lease_seconds, now=now))
        except StoreUnavailable as exc:
            self._store_unavailable("cannot renew leases", exc)
            return False
        self._store_available()
        for job_id in set(inflight) - kept:
            # Finished meanwhile, or taken over: the record_* that follows tells which.
            self._log(inflight[job_id], logging.DEBUG, "lease not renewed")
        return True

    def _release(self, cj: Job, why: str = "released unstarted at shutdown") -> None:
        try:
            self.store.release(cj.id, self.owner)
            self._log(cj, logging.INFO, "%s", why)
        except StoreUnavailable as exc:
            self._log(cj, logging.WARNING, "cannot release (%s); its lease will expire", exc)

    # -- one job --------------------------------------------------------------------------

    def _handle(self, cj: Job) -> None:
        with self._lock:
            targets, policies = self._targets, self._policies
        paths_reason = None
        try:
            if cj.needs_files and self.decide_paths is not None:
                run_it, reason = self.decide_paths(cj)
                paths_reason = reason
                if run_it:
                    self._log(cj, logging.DEBUG, "paths: %s", reason)
                else:
                    self._record(cj, self.store.record_skipped, reason,
                                 statuses=self._statuses("skipped", cj, reason),
                                 said=(logging.INFO, "skipped: %s", reason))
                    self._count(cj, "skipped")
                    return
            target = targets.get(cj.target)
            if target is None:
                raise TargetRejected(f"target '{cj.target}' is not configured")
            self._log(cj, logging.DEBUG, "starting (attempt %d)", cj.attempt)
            self._started(cj)
            try:
                run = target.start(cj)
            finally:
                self._start_ended(cj)
        except TargetUnavailable as exc:
            self._retry(cj, policies, _message(exc), exc.retry_after)
        except TargetRejected as exc:
            self._record(cj, self.store.record_dead, _message(exc),
                         statuses=self._statuses("dead", cj, _message(exc)),
                         said=(logging.ERROR, "rejected, dead letter: %s", _message(exc)))
            self._count(cj, "dead")
        except Exception as exc:
            self._log(cj, logging.ERROR, "unexpected error (treated as transient): %s",
                      _message(exc), exc_info=True)
            self._retry(cj, policies, _message(exc), None)
        else:
            if paths_reason:   # which source of changed files decided, for `deliveries show`
                run = replace(run, detail={**run.detail, "paths": paths_reason})
            queued_for = self.now() - cj.first_queued_at
            # Recorded first, then logged and counted: an incident's log never shows a result
            # the store does not have (and a count is never worth a result).
            self._record(cj, self.store.record_run, run,
                         statuses=self._statuses("accepted", cj, run, cj.target),
                         follow_at=self.now() + self.follow_policy.interval,
                         # At info only what an operator acts on: the delivery's "accepted" line said the rest.
                         said=(_result_level(run.state), "%s%s%s", run.state, f" {run.url}" if run.url else "",
                               f": {run.detail['reason']}" if run.detail.get("reason") else ""))
            self._count(cj, run.state, queued_for=queued_for)

    def _retry(self, cj: Job, policies, error: str, retry_after: float | None) -> None:
        policy = policies.get(cj.target) or RetryPolicy()
        now = self.now()
        if now - cj.first_queued_at > policy.give_up_after:
            message = f"gave up after {_duration(policy.give_up_after)}: {error}"
            self._record(cj, self.store.record_dead, message,
                         statuses=self._statuses("dead", cj, message),
                         said=(logging.ERROR, "%s", message))
            self._count(cj, "dead")
            return
        delay = backoff(policy, cj.attempt, self.rand)
        if retry_after is not None and retry_after > delay:
            delay = retry_after
        self._record(cj, self.store.record_retry, error, now + delay,
                     said=(logging.WARNING, "transient failure, retry in %.1fs: %s", delay, error))
        self._count(cj, "retry")

    def _statuses(self, step: str, cj: Job, *args) -> list:
        """The commit status of one step of a job (feedback.Feedback's builder named `step`)."""
        if self.feedback is None:
            return []
        try:
            return getattr(self.feedback, step)(cj, *args)
        except Exception:   # noqa: BLE001 - a status is never worth losing a job's result
            self._log(cj, logging.ERROR, "cannot build its %s status", step, exc_info=True)
            return []

    def _record(self, cj: Job, method, *args, said: tuple = (), **kw) -> bool:
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
                until = self._record_until
                if until is not None and self.now() >= until:
                    self._log(cj, logging.ERROR, "shutting down with the store still unavailable "
                              "(%s): this result (%s) is not recorded, and the job runs again "
                              "when its lease expires", exc, what)
                    return False
                if not waited:
                    self._log(cj, logging.WARNING, "cannot record the result yet (%s); retrying "
                              "until the store is back", exc)
                    waited = True
                self.sleep(delay if until is None else max(0.0, min(delay, until - self.now())))
                delay = min(delay * 2, _STORE_BACKOFF_MAX)
        if waited:
            self._log(cj, logging.INFO, "result recorded, the store is back")
        if not applied:
            self._log(cj, logging.WARNING, "lease was taken over by another dispatcher; "
                      "this result (%s) is not recorded", what)
            return False
        if said:
            self._log(cj, level, msg, *margs)
        return True

    # -- following started builds ---------------------------------------------------------

    def follow_once(self) -> int:
        """Look once at every followed build that is due (up to the follow concurrency) and wait
        for the answers; returns how many (tests)."""
        futures = self._follow_due()
        wait(futures)
        return len(futures)

    def _follow_due(self) -> list[Future]:
        with self._lock:
            free = self.follow_policy.concurrency - len(self._following)
            targets = {name: t for name, t in self._targets.items() if _can_follow(t)}
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
                fut = self._follow_pool.submit(self._follow, cf, targets[cf.job.target])
                self._following[cf.job.id] = fut
            fut.add_done_callback(lambda f, cf=cf: self._followed(cf, f))
            futures.append(fut)
        return futures

    def _followed(self, cf: ClaimedFollow, fut: Future) -> None:
        with self._lock:
            self._following.pop(cf.job.id, None)
        exc = None if fut.cancelled() else fut.exception()
        if exc is not None:   # a bug: never lose it with the future
            self.log.error("job %d (%s -> %s): following failed in the dispatcher: %s", cf.job.id,
                           cf.job.rule, cf.job.target, _message(exc), exc_info=exc,
                           extra={"delivery": cf.job.delivery, "job": cf.job.id, "rule": cf.job.rule,
                                  "target": cf.job.target})

    def _follow(self, cf: ClaimedFollow, target: Target) -> None:
        policy = self.follow_policy
        job = cf.job
        now = self.now()
        try:
            if now - cf.since > policy.give_up_after:
                reason = f"stopped following the build after {_duration(policy.give_up_after)}"
                self._flog(cf, logging.WARNING, "%s", reason)
                self.store.give_up_follow(cf.job.id, self.owner, reason, now=now,
                                          statuses=self._follow_statuses("gave_up", job, cf.run, reason))
                return
            # Back off from the interval to the maximum, with jitter so builds started together
            # are not asked about together.
            delay = min(policy.max_interval, policy.interval * 1.5 ** min(cf.checks - 1, 60))
            delay *= 0.75 + 0.5 * self.rand()
            try:
                run = target.follow(cf.run)
            except Exception as exc:   # noqa: BLE001 - TargetError or a bug: look again later
                self._flog(cf, logging.WARNING, "cannot follow (look again in %.1fs): %s", delay,
                           _message(exc))
                self.store.follow_checked(cf.job.id, self.owner, cf.run, next_check_at=now + delay,
                                          now=self.now(), error=_message(exc))
                return
            if run.state in ("succeeded", "failed"):
                # Logged once the store has it (a failed write is logged below instead).
                if self.store.finish_follow(cf.job.id, self.owner, run, now=self.now(),
                                            statuses=self._follow_statuses("finished", job, run)):
                    self._flog(cf, _result_level(run.state), "build %s%s", run.state,
                               f" {run.url}" if run.url else "")
                    if self.metrics is not None:
                        self.metrics.job(cf.job.target, run.state)
                else:
                    self._flog(cf, logging.WARNING, "build %s, but the follow was taken over: "
                               "not recorded here", run.state)
                return
            moved = (run.state, run.url) != (cf.run.state, cf.run.url)
            recorded = self.store.follow_checked(
                cf.job.id, self.owner, run, next_check_at=now + delay, now=self.now(),
                statuses=self._follow_statuses("building", job, run, cf.job.target) if moved else [])
            if moved and recorded:
                self._flog(cf, logging.DEBUG, "%s %s", run.state, run.url)
        except StoreUnavailable as exc:
            self._flog(cf, logging.ERROR, "cannot record the follow (%s); its lease expires and "
                       "it is looked at again", exc)

    def _follow_statuses(self, step: str, job: Job, *args) -> list:
        if self.feedback is None:
            return []
        try:
            return getattr(self.feedback, step)(job, *args)
        except Exception:   # noqa: BLE001 - a status is never worth losing a build's result
            self.log.error("job %d: cannot build its %s status", job.id, step, exc_info=True,
                           extra={"delivery": job.delivery, "job": job.id})
            return []

    def _flog(self, cf: ClaimedFollow, level: int, msg: str, *args) -> None:
        self.log.log(level, "job %d (%s -> %s): " + msg, cf.job.id, cf.job.rule, cf.job.target, *args,
                     extra={"delivery": cf.job.delivery, "job": cf.job.id, "rule": cf.job.rule,
                            "target": cf.job.target})

    def _count(self, cj: Job, state: str, **kw) -> None:
        if self.metrics is not None:
            self.metrics.job(cj.target, state, **kw)

    def _log(self, cj: Job, level: int, msg: str, *args,
             exc_info: bool | BaseException = False) -> None:
        self.log.log(level, "job %d (%s -> %s): " + msg, cj.id, cj.rule, cj.target, *args,
                     extra=_extra(cj), exc_info=exc_info)


def _result_level(state: str) -> int:
    """A failed build is news at info; a started or succeeded one is detail (debug)."""
    return logging.INFO if state == "failed" else logging.DEBUG


def _extra(cj: Job) -> dict:
    return {"delivery": cj.delivery, "job": cj.id, "rule": cj.rule, "target": cj.target}


def _can_follow(target: Target) -> bool:
    # The base class's follow() knows nothing: such targets' builds stay "started".
    return type(target).follow is not Target.follow


def _message(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"
