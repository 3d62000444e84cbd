"""The store's pull-request questions: is there a newer job of the same rule for the same pull
request (its older queued jobs are superseded), and a comment's event completed with the head
the dispatcher asked the host for (the first answer stays: every job of the comment builds it).

Input: a job id, rule, source, repo and pull ref; a delivery id and an event dict. Output: the
newest such job (id, sha), or the stored event. A mixin of `Store` (it uses the store's `_tx`).
"""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import exists, select, update

from bridge.store.schema import deliveries, jobs


class PullQueries:
    """Mixed into `Store`."""

    def newer_pull_job(self, job_id: int, *, rule: str, source: str, repo: str,
                       ref: str) -> tuple[int, str | None] | None:
        """The newest job after `job_id` of `rule` whose delivery is about the same pull request
        (same source, repo and pull ref: `refs/pull/N/head`), as (job id, its head sha or None
        while a comment's head is unknown); None when there is none.

        It walks the jobs queued after this one (newest first, each delivery looked up by its
        key), never the repository's whole history: a busy repository's old deliveries cost
        nothing, a backlog of newer jobs a primary-key lookup each."""
        j, d = jobs.c, deliveries.c
        same = exists().where(d.id == j.delivery_id, d.source == source, d.repo == repo, d.ref == ref)
        with self._tx(read=True) as conn:
            row = conn.execute(select(j.id, j.delivery_id).where(j.id > job_id, j.rule == rule, same)
                               .order_by(j.id.desc()).limit(1)).first()
            if row is None:
                return None
            event = conn.execute(select(d.event).where(d.id == row.delivery_id)).scalar_one_or_none()
        return row.id, (event or {}).get("sha") or None

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
