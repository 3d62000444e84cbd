"""Dispatcher stage: claims stored jobs with a lease and runs them, `concurrency` at a time.

Input: the `Store` queue, the configured targets and their retry policies. Output: claimed jobs
handed to run_job.py (start, retry, record), leases renewed while they run, started builds handed
to follow.py, statuses to statuses.py's poster; at shutdown, what still runs interrupted.
"""
from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from bridge.dispatch.follow import Follower
from bridge.dispatch.joblog import JobLog, message
from bridge.dispatch.outage import Outage
from bridge.dispatch.pulls import PullSteps
from bridge.dispatch.run_job import JobRunner
from bridge.dispatch.statuses import Feedback, StatusPoster
from bridge.dispatch.supersede import Superseder
from bridge.errors import StoreUnavailable
from bridge.policies import FollowPolicy, Policies, RetryPolicy
from bridge.jobs import Job
from bridge.store import Store
from bridge.targets.base import Target

logger = logging.getLogger("bridge.dispatcher")

# Target kinds whose start() is the whole build (exec runs the command to its end). Their jobs are
# claimed ahead of a free slot only while that target's builds are known to be quick (a moving
# average of their last durations, and every one in flight so far, under _QUICK_START seconds):
# a job claimed ahead of a long build would wait it out while an idle dispatcher could run it,
# and one claim per job would halve the rate of quick commands.
_START_IS_THE_BUILD = frozenset({"exec"})
_QUICK_START = 0.25
# The longest pause between claims while policies hold every due job back.
_POLICED_IDLE_MAX = 0.2
# Seconds between the background thread's WAL checkpoints (store/engine.py CHECKPOINT_BACKSTOP):
# often, so that each copies little (at 500 deliveries/s, half a second of WAL took 20 ms to copy
# back and the acks of that moment waited for the disk).
_CHECKPOINT_EVERY = 0.1


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

    One claimed job is run by a `JobRunner` (run_job.py); started builds of targets that can
    follow them are followed by a `Follower` (follow.py, with the `follow` policy). With
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
                 follow: FollowPolicy = FollowPolicy(), policies: Policies | None = None):
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
        self.log = log
        self.metrics = metrics
        self._lock = threading.Lock()
        self._targets: dict[str, Target] = dict(targets)
        self._policies: dict[str, RetryPolicy] = dict(retry_policies)
        self._inflight: dict[int, tuple[Job, Future]] = {}
        self._starting: dict[int, float] = {}         # job id -> monotonic time its start() began
        self._start_seconds: dict[str, float] = {}    # target -> moving average of start() durations
        self._ahead_blocked = False   # a slow job was claimed ahead and released: not again until a slot frees
        self._idle_claims = 0         # claims in a row that got nothing (see _idle_delay)
        self._last_full = False       # the last claim got all it asked for: more are likely waiting
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="dispatch")
        self._last_renewal = now()
        self.outage = Outage(log, recovered="store available again", interval=poll_interval)
        self.feedback = feedback
        self.follow_policy = follow
        self.policies = policies or Policies()
        self.superseder = Superseder(store, now=now, log=log, metrics=metrics)
        self.runner = JobRunner(store, owner=owner, now=now, sleep=sleep, rand=rand, log=log,
                                metrics=metrics, feedback=feedback, decide_paths=decide_paths,
                                follow_interval=follow.interval, timing=self._timing,
                                prepare=PullSteps(store, lambda: self.feedback).prepare,
                                policies=self.policies, superseder=self.superseder)
        self.follower = Follower(store, follow, owner=owner, lease_seconds=lease_seconds, now=now,
                                 rand=rand, log=log, metrics=metrics, feedback=feedback)
        self.poster = StatusPoster(store, feedback, owner=owner, lease_seconds=lease_seconds, now=now,
                                   rand=rand, log=logging.getLogger("bridge.feedback"))

    def set_feedback(self, feedback: Feedback | None) -> None:
        """Rules reload: statuses from now on use this (sources' report:, rules' context)."""
        self.feedback = feedback
        self.runner.feedback = feedback
        self.follower.feedback = feedback
        self.poster.feedback = feedback

    @property
    def decide_paths(self) -> Callable[[Job], tuple[bool, str]] | None:
        """Path decisions for jobs claimed from now on (a rules reload replaces it)."""
        return self.runner.decide_paths

    @decide_paths.setter
    def decide_paths(self, decide: Callable[[Job], tuple[bool, str]] | None) -> None:
        self.runner.decide_paths = decide

    def set_targets(self, targets: Mapping[str, Target], retry_policies: Mapping[str, RetryPolicy],
                    policies: Policies | None = None) -> None:
        """Rules reload: jobs claimed from now on use these; running ones finish on the old.
        `policies`: the targets' and rules' `policy:` (None keeps the current ones)."""
        with self._lock:
            self._targets = dict(targets)
            self._policies = dict(retry_policies)
            if policies is not None:
                self.policies = self.runner.policies = policies

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
                    self.sleep(self.outage.delay)   # the store is down: claim nothing, back off
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
                    self.sleep(self.outage.delay if self.outage.is_down else self._idle_delay())
        finally:
            # Results the store still refuses are given up on within the grace (logged as such).
            self.runner.record_until = self.now() + grace * 0.9
            background.join(timeout=grace)
            self._shutdown(grace)

    def _background(self, stop: threading.Event, interval: float) -> None:
        checkpointed = 0.0
        while not stop.wait(interval):
            try:
                self._follow_due()
                self.poster.tick()
            except Exception:   # noqa: BLE001 - keep following and posting whatever one round did
                self.log.error("follow/status round failed", exc_info=True, extra={"delivery": None})
            if time.monotonic() - checkpointed >= _CHECKPOINT_EVERY:
                checkpointed = time.monotonic()
                self._checkpoint()

    def _checkpoint(self) -> None:
        """The store's WAL back into its file, here rather than in an acknowledgement's commit
        (store/engine.py CHECKPOINT_BACKSTOP). A store that is down is the claim loop's to report."""
        with contextlib.suppress(StoreUnavailable):
            self.store.checkpoint()

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
                    JobLog.of_job(self.log, cj)(logging.WARNING, "still running after the %gs "
                                                "shutdown grace; interrupting it", grace)
            for name in {cj.target for cj, fut in running if fut in still}:
                if name in targets:
                    targets[name].close()
            wait(still, timeout=5.0)
        self._pool.shutdown(wait=False, cancel_futures=True)
        # Follows and posts are short and leased: an unfinished one is taken up again later.
        self.follower.shutdown(grace)
        self.poster.shutdown(wait=min(grace, 10.0))

    # -- claiming and leases --------------------------------------------------------------

    def _claim_and_submit(self, limit: int, *, free: int | None = None) -> list[tuple[Job, Future]]:
        """Claim up to `limit` jobs and queue them for the pool; the first `free` start at once,
        the rest wait for a slot (claimed ahead). A build-is-the-start job (exec) of a target not
        known to be quick is never kept waiting: it is released again at once."""
        if limit <= 0:
            return []
        try:
            superseded: list = []
            claimed = self.store.claim(self.owner, limit, lease_seconds=self.lease_seconds,
                                       now=self.now(), policies=self.policies, superseded=superseded,
                                       cancel_kinds=_START_IS_THE_BUILD,
                                       look_first=not self._last_full)
        except StoreUnavailable as exc:
            self._last_full = False
            self.outage.down("cannot claim jobs", exc)
            return []
        self.outage.up()
        self._last_full = len(claimed) >= limit
        if claimed or superseded:
            self._idle_claims = 0
        if superseded:
            with self._lock:
                targets = dict(self._targets)
            self.superseder.handle(superseded, targets, self.feedback)
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

    def _idle_delay(self) -> float:
        """The pause after a claim that got nothing: the poll interval; under policies, doubling
        up to _POLICED_IDLE_MAX while claims keep getting nothing (jobs held back by a limit
        would otherwise cost a write transaction every poll, and ingest waits on those)."""
        if not self.policies.active:
            return self.poll_interval
        self._idle_claims = min(self._idle_claims + 1, 16)
        return min(self.poll_interval * 2 ** (self._idle_claims - 1), max(_POLICED_IDLE_MAX, self.poll_interval))

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

    @contextlib.contextmanager
    def _timing(self, cj: Job) -> Iterator[None]:
        """Around a target's start(): fold its duration into the target's moving average."""
        with self._lock:
            self._starting[cj.id] = time.monotonic()
        try:
            yield
        finally:
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
            self._idle_claims = 0         # a slot is free here: claim again soon
        exc = None if fut.cancelled() else fut.exception()
        if exc is not None:   # a bug: never lose it with the future
            JobLog.of_job(self.log, cj)(logging.ERROR, "failed in the dispatcher: %s",
                                        message(exc), exc_info=exc)

    def _renewal_interval(self) -> float:
        return max(self.lease_seconds / 3, 0.01)

    def _renew_if_due(self) -> bool:
        """Renew our leases every third of the lease time, and at every turn while the store is
        down: the first write after an outage renews them, before any claim could take our own
        expired leases over. False while the store is down and we hold leases: claim nothing."""
        now = self.now()
        if not self.outage.is_down and now - self._last_renewal < self._renewal_interval():
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
            self.outage.down("cannot renew leases", exc)
            return False
        self.outage.up()
        for job_id in set(inflight) - kept:
            # Finished meanwhile, or taken over: the record_* that follows tells which.
            JobLog.of_job(self.log, inflight[job_id])(logging.DEBUG, "lease not renewed")
        return True

    def _release(self, cj: Job, why: str = "released unstarted at shutdown") -> None:
        try:
            self.store.release(cj.id, self.owner)
            JobLog.of_job(self.log, cj)(logging.INFO, "%s", why)
        except StoreUnavailable as exc:
            JobLog.of_job(self.log, cj)(logging.WARNING, "cannot release (%s); its lease will expire", exc)

    def _handle(self, cj: Job) -> None:
        with self._lock:
            targets, policies = self._targets, self._policies
        self.runner.handle(cj, targets, policies)

    # -- following started builds ---------------------------------------------------------

    def follow_once(self) -> int:
        """Look once at every followed build that is due (up to the follow concurrency) and wait
        for the answers; returns how many (tests)."""
        futures = self._follow_due()
        wait(futures)
        return len(futures)

    def _follow_due(self) -> list[Future]:
        with self._lock:
            targets = dict(self._targets)
        return self.follower.due(targets)
