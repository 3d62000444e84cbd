"""The store's pull-request questions: is there a newer job of the same rule for the same pull
request (its older queued jobs are superseded), and a comment's event completed with the head
the dispatcher asked the host for (the first answer stays: every job of the comment builds it).

Input: a job id, rule, source, repo and pull ref; a delivery id and an event dict. Output: the
newest such job (id, sha), or the stored event. A mixin of `Store` (it uses the store's `_tx`).
"""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select, update

from bridge.store.schema import deliveries, jobs

#: Newer jobs read at a time while looking for one of the same pull request.
_PAGE = 500


class PullQueries:
    """Mixed into `Store`."""

    def newer_pull_job(self, job_id: int, *, rule: str, source: str, repo: str,
                       ref: str) -> tuple[int, str | None] | None:
        """The newest job after `job_id` of `rule` whose delivery is about the same pull request
        (same source, repo and pull ref: `refs/pull/N/head`), as (job id, its head sha or None
        while a comment's head is unknown); None when there is none.

        It reads only the jobs queued after this one (newest first, a page at a time), never
        the repository's whole history: a busy repository's old deliveries cost nothing."""
        j, d = jobs.c, deliveries.c
        below = None
        with self._tx(read=True) as conn:
            while True:
                q = select(j.id, j.delivery_id).where(j.id > job_id, j.rule == rule)
                if below is not None:
                    q = q.where(j.id < below)
                page = conn.execute(q.order_by(j.id.desc()).limit(_PAGE)).all()
                if not page:
                    return None
                found = dict(conn.execute(
                    select(d.id, d.event).where(d.id.in_({r.delivery_id for r in page}),
                                                d.source == source, d.repo == repo, d.ref == ref)).all())
                for row in page:                   # newest first
                    if row.delivery_id in found:
                        return row.id, (found[row.delivery_id] or {}).get("sha") or None
                below = page[-1].id

    def complete_event(self, delivery_id: str, event: dict, render: Callable[[dict, dict], dict]) -> dict:
        """Store `event` (a comment's, completed with its pull request's head) as the delivery's
        event, and every job of the delivery's request as `render(request, event)`, in one
        transaction; unless an earlier completion already gave the event a commit. Returns the
        event now stored: every job of one comment builds the same head, and a stored event
        without a commit always goes with requests still to be rendered."""
        d = deliveries.c
        with self._tx() as conn:
            stored = conn.execute(select(d.event).where(d.id == delivery_id)).scalar_one_or_none()
            if stored and stored.get("sha"):
                return stored
            conn.execute(update(deliveries).where(d.id == delivery_id).values(event=event))
            for job_id, request in conn.execute(select(jobs.c.id, jobs.c.request)
                                                .where(jobs.c.delivery_id == delivery_id)).all():
                conn.execute(update(jobs).where(jobs.c.id == job_id)
                             .values(request=render(request, event)))
        return event
