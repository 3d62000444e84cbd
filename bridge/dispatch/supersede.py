"""Dispatcher stage, right after a claim: the jobs a newer one of their group superseded
(policy on_newer: coalesce / cancel). Their builds are cancelled on the target, their statuses
say what replaced them, and each is logged and counted.

Input: `Superseded` entries from the store's claim (already recorded there as superseded), the
targets, the feedback. Output: `Target.cancel` calls, statuses stored, log lines.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from bridge.dispatch.joblog import JobLog, message, step_statuses
from bridge.dispatch.statuses import Feedback
from bridge.errors import StoreUnavailable, TargetError
from bridge.store import Store
from bridge.targets.base import Target


class Superseder:
    """Cancels superseded builds and reports superseded jobs. `cancelled_here` holds the ids of
    jobs whose start (exec: the whole build) runs in this dispatcher and was cancelled: their
    run ends failed, and its record is refused (the job is superseded already), not lost."""

    def __init__(self, store: Store, *, now: Callable[[], float], log: logging.Logger, metrics=None):
        self.store = store
        self.now = now
        self.log = log
        self.metrics = metrics
        self.cancelled_here: set[int] = set()
        self._lock = threading.Lock()

    def handle(self, superseded: list, targets: Mapping[str, Target], feedback: Feedback | None) -> None:
        statuses = []
        for s in superseded:
            jlog = JobLog.of_job(self.log, s.job)
            if s.run is not None:
                self._cancel(s, targets.get(s.job.target), jlog)
            else:
                jlog(logging.INFO, "superseded by job %d (%s) before it started", s.by, s.by_sha[:12])
            statuses += step_statuses(feedback, "superseded", s.job, jlog, s.by_sha, s.run)
            if self.metrics is not None:
                self.metrics.job(s.job.target, "superseded")
        if statuses:
            try:
                self.store.add_statuses(statuses, now=self.now())
            except StoreUnavailable as exc:
                self.log.warning("cannot store the statuses of %d superseded jobs: %s", len(statuses),
                                 exc, extra={"delivery": None})

    def _cancel(self, s, target: Target | None, jlog: JobLog) -> None:
        if s.running_here:
            with self._lock:
                self.cancelled_here.add(s.job.id)
        try:
            asked = target is not None and target.cancel(s.run)
        except TargetError as exc:
            jlog(logging.WARNING, "superseded by job %d (%s), but its build could not be cancelled: %s",
                 s.by, s.by_sha[:12], message(exc))
            return
        if asked:
            jlog(logging.INFO, "superseded by job %d (%s): build %s cancelled", s.by, s.by_sha[:12],
                 s.run.url or s.run.remote_id or "in progress")
        else:
            jlog(logging.WARNING, "superseded by job %d (%s); target '%s' cannot cancel its build, "
                 "which runs on", s.by, s.by_sha[:12], s.job.target)

    def was_cancelled(self, job_id: int) -> bool:
        """Whether this dispatcher cancelled the job while its start ran here (once)."""
        with self._lock:
            if job_id in self.cancelled_here:
                self.cancelled_here.discard(job_id)
                return True
        return False
