"""Feedback stage: commit statuses on GitHub and GitLab, from a job's life (queued, accepted, ended).

Input: `Job`s, runs and deliveries (with the verdicts' `stopped_by`) as the dispatcher sees them,
and each source's `report:` config.
Output: `NewStatus` rows for the store, and, posting those rows through the host's client
(bridge/providers), the git host's answer classified as sent / done / retry / failed (`Answer`).
Only the dispatcher process posts; tokens never leave the clients (not in rows, logs or answers).
"""
from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from typing import Callable

from bridge.config.model import Config
from bridge.dispatch.outage import Outage
from bridge.errors import StatusRejected, StatusUnavailable, StoreUnavailable
from bridge.events import ZERO_SHA
from bridge.jobs import Job, Run
from bridge.policies import REPORT_RETRY, RetryPolicy, backoff
from bridge.providers import status_client
from bridge.providers.status import Answer, cap
from bridge.rules import StoppedBy
from bridge.store import ClaimedStatus, NewStatus, Store

logger = logging.getLogger("bridge.feedback")

#: A job's statuses in the order they happen. The rank of a status is attempt * 10 + phase, so a
#: higher rank (later step, or a later attempt after `cibridge retry`) supersedes one not yet posted.
PHASES = {"queued": 0, "accepted": 1, "building": 2, "final": 3}
_CANCELED = {"ABORTED", "CANCELLED", "NOT_BUILT", "STOPPED"}         # Jenkins, CodeBuild
_ERRORED = {"NOT_FOUND", "FAULT", "UNKNOWN"}   # UNKNOWN: Jenkins forgot the queue item and build


# --- what to report -----------------------------------------------------------------------------

def final_state(run: Run) -> tuple[str, str]:
    """A finished run -> (our state, description): Jenkins `result`, CodeBuild `status`, exec's exit."""
    if run.state == "succeeded":
        return "success", "build succeeded"
    why = str(run.detail.get("result") or run.detail.get("status") or "")
    if why in _CANCELED:
        return "canceled", f"build canceled ({why})"
    if why in _ERRORED:
        return "error", f"build error ({run.detail.get('reason') or why})"
    reason = run.detail.get("reason") or (f"exit code {run.detail['exit_code']}"
                                          if "exit_code" in run.detail else why)
    return "failure", f"build failed ({reason})" if reason else "build failed"


def skip_description(verdict: dict) -> str | None:
    """Why a stored verdict's rule that did not match was skipped, if its paths or a skip marker
    stopped it (None when another clause did: repo, branch, event, ...). A verdict stored before
    verdicts kept `stopped_by` is read from its reason's words."""
    stop = verdict.get("stopped_by")
    stop = StoppedBy.from_dict(stop) if stop else StoppedBy.from_reason(verdict.get("reason") or "")
    if stop is None:
        return None
    if stop.clause == "skip":
        return f"skipped: {stop.value} in the commit message"
    if stop.clause in ("paths", "paths-ignore"):
        return "skipped: no matching paths"
    return None


class Feedback:
    """Which statuses go where, from one `Config`: the reporting sources with their clients, and
    every rule's context and opt-outs. Builders return a list of 0 or 1 `NewStatus`, ready to
    be stored with the job result they describe."""

    def __init__(self, config: Config, *, clients: dict | None = None):
        self.config = config
        self._rules = {r.name: r for r in config.rules}
        if clients is None:
            clients = {name: status_client(src.provider, src.report.api_url, src.report.token,
                                           timeout=src.report.timeout)
                       for name, src in config.sources.items() if src.report is not None}
        self.clients = clients

    @property
    def sources(self) -> list[str]:
        return sorted(self.clients)

    def client(self, source: str):
        return self.clients.get(source)

    def retry_policy(self, source: str) -> RetryPolicy:
        src = self.config.sources.get(source)
        return src.report.retry if src is not None and src.report is not None else REPORT_RETRY

    # -- builders ---------------------------------------------------------------------------

    def queued(self, job: Job) -> list[NewStatus]:
        # A job that may still be skipped for its paths shows nothing unless a skip is reported
        # too: a yellow dot that never turns green would block a required check.
        if job.needs_files and not self.config.rule_report(job.rule).report_skipped:
            return []
        return self._job(job, "queued", "pending", "queued")

    def accepted(self, job: Job, run: Run, target: str) -> list[NewStatus]:
        if run.state in ("succeeded", "failed"):
            return self.finished(job, run)
        if run.state == "queued":
            return self._job(job, "accepted", "pending", f"waiting in the queue of {target}", run.url)
        return self._job(job, "accepted", "running", f"building on {target}", run.url)

    def building(self, job: Job, run: Run, target: str) -> list[NewStatus]:
        """A followed run moved on (a queue item became a build, with a link of its own)."""
        if run.state == "queued":
            return []
        return self._job(job, "building", "running", f"building on {target}", run.url)

    def finished(self, job: Job, run: Run) -> list[NewStatus]:
        state, description = final_state(run)
        return self._job(job, "final", state, description, run.url)

    def dead(self, job: Job, reason: str) -> list[NewStatus]:
        return self._job(job, "final", "error", f"could not start the build: {reason}")

    def skipped(self, job: Job, reason: str) -> list[NewStatus]:
        if not self.config.rule_report(job.rule).report_skipped:
            return []
        why = "changed files unknown" if "changed files unknown" in reason else "no matching paths"
        return self._job(job, "final", "success", f"skipped: {why}")

    def superseded(self, job: Job, newer_sha: str, run: Run | None = None) -> list[NewStatus]:
        """A newer job replaced it: a pull request's queued job (dispatch/pulls.py), or a job of
        a policy group (on_newer: coalesce / cancel). One that waited ends canceled (none when
        it showed no pending status: a job that may still be skipped for its paths); a build
        cancelled for the newer job (`run`) ends in error."""
        if run is not None:
            return self._job(job, "final", "error", f"superseded by {newer_sha[:12]}", run.url or None)
        if job.needs_files and not self.config.rule_report(job.rule).report_skipped:
            return []
        return self._job(job, "final", "canceled", f"superseded by {newer_sha[:12]}")

    def gave_up(self, job: Job, run: Run, reason: str) -> list[NewStatus]:
        return self._job(job, "final", "error", reason, run.url)

    def for_delivery(self, d: dict) -> list[NewStatus]:
        """The first statuses of a newly stored delivery (from `Store.recent_deliveries`): queued
        for each job still waiting, and a success for each rule its paths or a skip marker
        skipped, where the rule asks for it (`report_skipped`): the stored verdict says which
        clause stopped it, the rules are not run again."""
        event = d.get("event")
        if d["source"] not in self.clients or event is None:
            return []
        out: list[NewStatus] = []
        for job in d["jobs"]:
            out += self.queued(job)
        for v in d.get("verdicts") or []:
            report = self.config.rule_report(v["rule"])
            if v["matched"] or v["rule"] not in self._rules or not (report.report and report.report_skipped):
                continue
            if not _reportable(event.sha, event.kind):
                continue
            description = skip_description(v)
            if description:
                out.append(NewStatus(key=f"skip:{d['delivery']}:{v['rule']}", delivery_id=d["delivery"],
                                     job_id=None, rule=v["rule"], source=d["source"],
                                     provider=d["provider"], repo=event.repo, sha=event.sha,
                                     ref=event.head_ref or event.ref_name, context=report.context,
                                     rank=PHASES["final"],
                                     state="success", description=cap(description)))
        return out

    def _job(self, job: Job, phase: str, state: str, description: str,
             url: str | None = None) -> list[NewStatus]:
        report = self.config.rule_report(job.rule)
        ev = job.event
        if ev is None or ev.source not in self.clients or not report.report or not _reportable(ev.sha, ev.kind):
            return []
        attempt = 0 if phase == "queued" else job.attempt
        return [NewStatus(key=f"job:{job.id}:{attempt}:{phase}", delivery_id=job.delivery,
                          job_id=job.id, rule=job.rule, source=ev.source, provider=ev.provider,
                          repo=ev.repo, sha=ev.sha, ref=ev.head_ref or ev.ref_name,
                          context=report.context,
                          rank=attempt * 10 + PHASES[phase],
                          state=state, description=cap(description), target_url=url or None)]


def _reportable(sha: str | None, kind: str) -> bool:
    # A deleted ref names no commit to put a status on.
    return bool(sha) and sha != ZERO_SHA and kind != "delete"


# --- posting, in the dispatcher process ---------------------------------------------------------

class StatusPoster:
    """Finds new deliveries that need a first status, and posts stored statuses, `concurrency`
    at a time, each claimed with a lease (so several dispatchers share the work and a dead one's
    posts are taken over). Never on a job's path: a slow or dead git host delays statuses only.

    `lookback`: how far back a starting poster looks for deliveries (statuses of older ones
    come with their job's next step). `lag`: how long a delivery committed late (PostgreSQL
    commits are not in `received_at` order) is still found.
    """

    def __init__(self, store: Store, feedback: Feedback | None, *, owner: str, concurrency: int = 4,
                 lease_seconds: float = 60.0, now: Callable[[], float] = time.time,
                 rand: Callable[[], float] = random.random, log: logging.Logger = logger,
                 lookback: float = 600.0, lag: float = 5.0):
        self.store = store
        self.feedback = feedback
        self.owner = owner
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.now = now
        self.rand = rand
        self.log = log
        self.lag = lag
        self._cursor = now() - lookback
        self._catching_up = False
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._inflight: set[Future] = set()
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="status")
        self.outage = Outage(log)

    def tick(self) -> None:
        """One round of the dispatcher's background loop: scan, then fill the free post slots."""
        self.scan_once()
        with self._lock:
            free = self.concurrency - len(self._inflight)
        for cs in self._claim(free):
            fut = self._pool.submit(self._post, cs)
            with self._lock:
                self._inflight.add(fut)
            fut.add_done_callback(self._done)

    def _done(self, fut: Future) -> None:
        with self._lock:
            self._inflight.discard(fut)

    def scan_once(self, limit: int = 500) -> int:
        """Offer the first statuses of deliveries stored since the last scan; returns how many."""
        fb = self.feedback
        if fb is None or not fb.sources:
            return 0
        since = self._cursor if self._catching_up else self._cursor - self.lag
        try:
            new, found, last = self.store.recent_deliveries(since=since, sources=fb.sources,
                                                            limit=limit, seen=self._seen)
            rows = [s for d in new for s in self._safely(fb.for_delivery, d)]
            if rows:
                self.store.add_statuses(rows, now=self.now())
        except StoreUnavailable as exc:
            self.outage.down("statuses", exc)
            return 0
        self._seen.update((d["delivery"], d["received_at"]) for d in new)
        if last is not None:
            self._cursor = max(self._cursor, last)
        # A full batch: go on from its end (no lag) so a burst cannot pin the scan in place.
        self._catching_up = found == limit
        horizon = self._cursor - self.lag
        self._seen = {k: t for k, t in self._seen.items() if t > horizon}
        return len(rows)

    def post_once(self) -> int:
        """Claim due statuses and post them here, one after the other (tests)."""
        claimed = self._claim(self.concurrency)
        for cs in claimed:
            self._post(cs)
        return len(claimed)

    def shutdown(self, wait: float = 5.0) -> None:
        """Let posts under way finish for up to `wait` seconds; an unfinished one's lease expires
        and it is posted again (hosts keep the last status of a context)."""
        with self._lock:
            inflight = list(self._inflight)
        futures_wait(inflight, timeout=wait)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _claim(self, limit: int) -> list[ClaimedStatus]:
        if limit <= 0 or self.feedback is None:
            return []
        try:
            claimed = self.store.claim_statuses(self.owner, limit, lease_seconds=self.lease_seconds,
                                                now=self.now())
        except StoreUnavailable as exc:
            self.outage.down("statuses", exc)
            return []
        self.outage.up()
        return claimed

    def _post(self, cs: ClaimedStatus) -> None:
        fb = self.feedback
        client = fb.client(cs.source) if fb is not None else None
        if client is None:
            self._record(cs, "dropped", None, f"source '{cs.source}' no longer reports statuses")
            return
        try:
            answer = client.post(cs)
        except StatusUnavailable as exc:
            answer = Answer("retry", exc.code, str(exc), exc.retry_after)
        except StatusRejected as exc:
            answer = Answer("failed", exc.code, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must not lose the status: retry it
            self.log.error("status %s on %s: unexpected error: %s", cs.context, cs.repo,
                           type(exc).__name__, exc_info=True, extra=self._extra(cs))
            answer = Answer("retry", None, f"unexpected error: {type(exc).__name__}")
        what = (f"status {client.states.get(cs.state, cs.state)} {cs.context} on "
                f"{cs.repo}@{cs.sha[:12]}")
        if answer.outcome != "retry":
            level = logging.INFO if answer.outcome in ("sent", "done") else logging.WARNING
            self.log.log(level, "%s: %s (%s)", what, answer.outcome, answer.message,
                         extra=self._extra(cs))
            self._record(cs, answer.outcome, answer.code, answer.message)
            return
        policy = fb.retry_policy(cs.source)
        now = self.now()
        if now - cs.created_at > policy.give_up_after:
            self.log.error("%s: gave up: %s", what, answer.message, extra=self._extra(cs))
            self._record(cs, "failed", answer.code, f"gave up after {policy.give_up_after:g}s: "
                                                    f"{answer.message}")
            return
        delay = backoff(policy, cs.attempts, self.rand)
        if answer.retry_after is not None:
            delay = max(delay, answer.retry_after)
        self.log.warning("%s: retry in %.1fs: %s", what, delay, answer.message, extra=self._extra(cs))
        self._record(cs, "retry", answer.code, answer.message, retry_at=now + delay)

    def _record(self, cs: ClaimedStatus, outcome: str, code: int | None, message: str,
                retry_at: float | None = None) -> None:
        try:
            if not self.store.record_status(cs.id, self.owner, outcome=outcome, code=code,
                                            answer=message, retry_at=retry_at, now=self.now()):
                self.log.warning("status %d: lease taken over; this answer is not recorded", cs.id,
                                 extra=self._extra(cs))
        except StoreUnavailable as exc:
            # The lease expires and the status is posted again: harmless, hosts keep the last.
            self.log.error("status %d: cannot record the answer: %s", cs.id, exc, extra=self._extra(cs))

    def _safely(self, build, *args) -> list[NewStatus]:
        try:
            return build(*args)
        except Exception as exc:  # noqa: BLE001 - a status is never worth losing a job result
            self.log.error("cannot build statuses: %s", type(exc).__name__, exc_info=True,
                           extra={"delivery": None})
            return []

    @staticmethod
    def _extra(cs: ClaimedStatus) -> dict:
        return {"delivery": cs.delivery_id, "job": cs.job_id, "rule": cs.rule}
