"""Read queries of the delivery page (web/ui): deliveries and refusals filtered and paged by
keyset, the per-minute counts by outcome for its chart, and a delivery's stored jobs as new ones
(replay).

Input: filters (`DeliveryFilter`) and a cursor from the page's URL: (received_at, id) after a
delivery, (received_at, id, "refused") after a refusal. Output: plain dicts in the shape of
`list_deliveries` (refusals: store/refusals.py's), and the cursor of the next page. A mixin of
`Store` (it uses the store's `_tx` and `Refusals`' reads); SQLite and PostgreSQL alike.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Integer, and_, cast, exists, func, or_, select

from bridge.jobs import JOB_STATES, LISTED_OUTCOMES, OUTCOMES, REFUSED, RERUN_KEY, Job
from bridge.store.operators import _GLOB_CHARS, is_glob, repo_matcher
from bridge.store.schema import deliveries, jobs

#: Rows read per round while a repository glob is matched in Python, and the most read for one
#: page: a glob that matches nothing ends its page there, with a cursor to read on.
_GLOB_BATCH = 2000
_GLOB_SCAN_MAX = 20_000


@dataclass(frozen=True)
class DeliveryFilter:
    """What the list shows: every field None means "any"."""
    source: str | None = None
    repo: str | None = None          # a glob of the rules' syntax, any case; or one repository
    ref: str | None = None           # a full ref, or a branch or tag name
    rule: str | None = None          # a rule that got a job
    outcome: str | None = None       # LISTED_OUTCOMES ("refused": the refusals alone)
    job_state: str | None = None     # JOB_STATES: deliveries with a job in it
    since: float | None = None       # received at or after (epoch seconds)
    until: float | None = None       # received before


@dataclass(frozen=True)
class Page:
    rows: list
    next: tuple | None               # (received_at, id) of the last row read, when there is more
    scanned_out: bool = False        # a glob stopped after _GLOB_SCAN_MAX rows without filling it


def _where(q, f: DeliveryFilter):
    d = deliveries.c
    if f.repo and is_glob(f.repo) and (like := like_filter(f.repo.lower())):
        # The glob's literal start and end, in SQL and first (cheaper than a job lookup): fewer
        # rows to look at and to match in Python.
        q = q.where(func.lower(d.repo).like(like, escape="\\"))
    if f.source:
        q = q.where(d.source == f.source)
    if f.outcome:
        if f.outcome not in LISTED_OUTCOMES:
            raise ValueError(f"unknown outcome '{f.outcome}': use one of {', '.join(LISTED_OUTCOMES)}")
        q = q.where(d.outcome == f.outcome)
    if f.job_state:
        if f.job_state not in JOB_STATES:
            raise ValueError(f"unknown job state '{f.job_state}': use one of {', '.join(JOB_STATES)}")
        q = q.where(exists().where(jobs.c.delivery_id == d.id, jobs.c.state == f.job_state))
    if f.rule:
        q = q.where(exists().where(jobs.c.delivery_id == d.id, jobs.c.rule == f.rule))
    if f.ref:
        ref = f.ref
        q = q.where(d.ref.in_([ref] if ref.startswith("refs/") else
                              [f"refs/heads/{ref}", f"refs/tags/{ref}", ref]))
    if f.since is not None:
        q = q.where(d.received_at >= f.since)
    if f.until is not None:
        q = q.where(d.received_at < f.until)
    if f.repo and not is_glob(f.repo):
        q = q.where(func.lower(d.repo) == f.repo.lower())   # index deliveries_repo_lower
    return q


def _after(q, cursor):
    """Keyset: the rows after `cursor` in the newest-first order (never OFFSET). Of one time,
    deliveries come before refusals: after a refusal, only older deliveries are left."""
    if cursor is None:
        return q
    d = deliveries.c
    if len(cursor) == 3:
        return q.where(d.received_at < cursor[0])
    ts, did = cursor
    return q.where(or_(d.received_at < ts, and_(d.received_at == ts, d.id < did)))


def lists_deliveries(f: "DeliveryFilter") -> bool:
    return f.outcome != REFUSED


def lists_refusals(f: "DeliveryFilter") -> bool:
    """Refusals have a source and a time, nothing else: any other filter leaves them out."""
    return f.outcome in (None, REFUSED) and not (f.repo or f.ref or f.rule or f.job_state)


def _position(row: dict) -> tuple:
    """A listed row's keyset cursor (see `_after`)."""
    if row["outcome"] == REFUSED:
        return (row["received_at"], row["refusal"], REFUSED)
    return (row["received_at"], row["delivery"])


def _newest_first(row: dict) -> tuple:
    """The list's order, descending: time, then deliveries before refusals. Rows of one kind and
    one time keep the order the database gave them (the sort is stable): its collation orders
    delivery ids, and Python's str order is not every collation's (en_US: 'a' before 'B')."""
    return (row["received_at"], row["outcome"] != REFUSED)


def like_filter(pattern: str) -> str | None:
    """A LIKE pattern every repository the glob matches also matches (its literal start and
    end: `acme/%` for `acme/*`, `%/api` for `**/api`), or None when it has neither or is
    negated. GitHub's `?` and `+` act on the character before them, which is dropped from the
    start before a `?`."""
    if pattern.startswith("!"):
        return None
    special = [i for i, c in enumerate(pattern) if c in _SPECIAL]
    if not special:
        return None
    start = pattern[:special[0]]
    if pattern[special[0]] == "?":
        start = start[:-1]
    end = pattern[special[-1] + 1:]
    if not (start or end):
        return None
    return f"{_escape_like(start)}%{_escape_like(end)}"


_SPECIAL = _GLOB_CHARS | {"]"}


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Reads:
    """Mixed into `Store`."""

    def delivery_page(self, f: DeliveryFilter = DeliveryFilter(), *, after=None,
                      limit: int = 50) -> Page:
        """One page of deliveries, newest first, after the keyset `after` (received_at, id)."""
        d = deliveries.c
        order = (d.received_at.desc(), d.id.desc())
        with self._tx(read=True) as conn:
            if f.repo and is_glob(f.repo):
                keys, nxt, out = self._glob_keys(conn, f, after, limit)
                return Page(self._page_rows(conn, [k.id for k in keys]), nxt, out)
            rows = []
            if lists_deliveries(f):
                q = _after(_where(select(d.id, d.received_at), f), after).order_by(*order)
                keys = conn.execute(q.limit(limit + 1)).all()
                rows = self._page_rows(conn, [k.id for k in keys])
            if lists_refusals(f):
                rows += self._refusal_rows(conn, source=f.source, since=f.since, until=f.until,
                                           after=after, limit=limit + 1)
                rows.sort(key=_newest_first, reverse=True)
        nxt = _position(rows[limit - 1]) if len(rows) > limit else None
        return Page(rows[:limit], nxt, False)

    def _glob_keys(self, conn, f: DeliveryFilter, after, limit: int):
        """Keys of a page whose repository filter is a glob, matched batch by batch."""
        d = deliveries.c
        matches = repo_matcher(f.repo)
        base = _where(select(d.id, d.received_at, d.repo), f).order_by(d.received_at.desc(), d.id.desc())
        # With the glob's literal parts in SQL (see _where) nearly every row read matches.
        batch = limit + 1 if like_filter(f.repo.lower()) else _GLOB_BATCH
        found, cursor, scanned = [], after, 0
        while True:
            rows = conn.execute(_after(base, cursor).limit(batch)).all()
            scanned += len(rows)
            for r in rows:
                if matches(r.repo):
                    if len(found) == limit:
                        last = found[-1]
                        return found, (last.received_at, last.id), False
                    found.append(r)
            if len(rows) < batch:
                return found, None, False
            cursor = (rows[-1].received_at, rows[-1].id)
            if scanned >= _GLOB_SCAN_MAX:
                return found, cursor, True

    def _page_rows(self, conn, ids: list) -> list[dict]:
        if not ids:
            return []
        d = deliveries.c
        rows = conn.execute(select(d.id, d.source, d.provider, d.received_at, d.repo, d.ref, d.outcome,
                                   d.reason, d.verdicts, d.event, d.content_duplicate_of, d.via)
                            .where(d.id.in_(ids))).all()
        by_delivery: dict[str, list[dict]] = {i: [] for i in ids}
        for j in conn.execute(select(jobs.c.id, jobs.c.delivery_id, jobs.c.rule, jobs.c.target,
                                     jobs.c.state, jobs.c.attempts, jobs.c.url, jobs.c.superseded_by)
                              .where(jobs.c.delivery_id.in_(ids)).order_by(jobs.c.id)):
            by_delivery[j.delivery_id].append({"id": j.id, "rule": j.rule, "target": j.target,
                                               "state": j.state, "attempts": j.attempts, "url": j.url,
                                               "superseded_by": j.superseded_by})
        out = {r.id: {"delivery": r.id, "source": r.source, "provider": r.provider,
                      "received_at": r.received_at, "repo": r.repo, "ref": r.ref, "outcome": r.outcome,
                      "reason": r.reason, "content_duplicate_of": r.content_duplicate_of, "via": r.via,
                      "sha": ((r.event or {}).get("sha") or (r.event or {}).get("after") or "")[:12],
                      "matched": [v["rule"] for v in r.verdicts if v.get("matched")],
                      "jobs": by_delivery[r.id]} for r in rows}
        return [out[i] for i in ids if i in out]

    def outcome_counts(self, *, since: float, until: float, bucket: int = 60) -> list[tuple]:
        """(bucket start, outcome, count) of the deliveries received in [since, until), by
        `bucket` seconds, and of the refusals ("refused", with those the recorder let go): the
        delivery page's chart."""
        d = deliveries.c
        with self._tx(read=True) as conn:
            if conn.dialect.name == "postgresql":
                slot = func.floor(d.received_at / bucket)
            else:   # SQLite: a cast truncates, and the times are positive
                slot = cast(d.received_at / bucket, Integer)
            rows = conn.execute(select(slot.label("slot"), d.outcome, func.count())
                                # every outcome named: the scan reads deliveries_outcome alone
                                .where(d.outcome.in_(OUTCOMES), d.received_at >= since,
                                       d.received_at < until)
                                .group_by(slot, d.outcome)).all()
            refused = self._refusal_counts(conn, since=since, until=until, bucket=bucket)
        return [(int(r[0]) * bucket, r[1], r[2]) for r in rows] + refused


def stored_jobs(delivery: dict) -> list[Job]:
    """A stored delivery's jobs as they were (a replay "as stored"), without an operator's rerun
    count: the replay is a new job of its own."""
    return [Job(rule=j["rule"], target=j["target"], kind=j["kind"],
                request={k: v for k, v in j["request"].items() if k != RERUN_KEY},
                needs_files=j["needs_files"], path_filter=j.get("path_filter"))
            for j in delivery.get("jobs", [])]
