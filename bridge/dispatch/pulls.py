"""Dispatcher stage, pull requests: before a `pull_request` or `comment` job starts, a newer job
of the same rule for the same pull request supersedes it, and a comment that names no commit
(GitHub's `issue_comment`) gets its pull request's head from the host's API, its request rendered.

Input: a claimed job, the store, and the `Feedback` (whose `report:` clients hold the tokens).
Output: `Prepared`: the job ready to start (event completed, request rendered), or skipped, dead
or to retry, with the reason.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from bridge.errors import StatusRejected, StatusUnavailable
from bridge.events import PULL_KINDS, Event
from bridge.jobs import Job
from bridge.store import Store
from bridge.templates import compile_template, copy_plain


@dataclass(frozen=True)
class Prepared:
    job: Job
    outcome: str = ""                   # "": start it; "skipped", "dead" or "retry"
    reason: str = ""
    retry_after: float | None = None
    superseded_by: str = ""             # the newer job's head sha ("" while a comment's is unknown)


def render(request: dict, event: dict) -> dict:
    """A comment job's request, stored with its templates, rendered on the completed event."""
    compiled = compile_template(request)
    return compiled(Event.from_dict(event).template_fields()) if compiled else copy_plain(request)


class PullSteps:
    """`prepare(job)`, the runner's first step for a claimed job; jobs of pushes pass untouched."""

    def __init__(self, store: Store, feedback: Callable[[], object]):
        self.store = store
        self.feedback = feedback            # the dispatcher's current Feedback (rules reload)

    def prepare(self, job: Job) -> Prepared:
        ev = job.event
        if ev is None or ev.kind not in PULL_KINDS:
            return Prepared(job)
        n = f"pull request #{ev.number}"
        newer = self.store.newer_pull_job(job.id, rule=job.rule, source=ev.source, repo=ev.repo, ref=ev.ref)
        if newer is not None:
            job_id, sha = newer
            by = sha[:12] if sha else "a newer comment"
            return Prepared(job, "skipped", f"superseded by {by} (job {job_id}, newer for {n})",
                            superseded_by=sha or "")
        if ev.sha:
            return Prepared(job)
        return self._ask_head(job, ev, n)

    def _ask_head(self, job: Job, ev: Event, n: str) -> Prepared:
        """The comment named no commit: GET the pull request with the source's report: token."""
        feedback = self.feedback()
        client = feedback.client(ev.source) if feedback is not None else None
        if client is None:
            return Prepared(job, "dead", f"the comment names no commit and source '{ev.source}' has no "
                                         f"report: token to ask {ev.provider} for the head of {n}")
        if not client.asks_pull_heads:
            return Prepared(job, "dead", f"the comment names no commit and {ev.provider} is not asked "
                                         f"for the head of {n}")
        try:
            got = client.pull_head(ev.repo, ev.number)
        except StatusUnavailable as exc:
            return Prepared(job, "retry", f"cannot ask for the head of {n} yet: {exc}",
                            retry_after=exc.retry_after)
        except StatusRejected as exc:
            return Prepared(job, "dead", f"cannot ask for the head of {n}: {exc}")
        state = got.pop("state", "open")
        if state != "open":
            return Prepared(job, "skipped", f"{n} is {state}: nothing to rebuild")
        event = self.store.complete_event(job.delivery, {**ev.to_dict(), **got}, render)
        return Prepared(replace(job, event=Event.from_dict(event), request=render(job.request, event)))
