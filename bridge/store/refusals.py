"""The store's record of refused deliveries (bad signature, unknown source, too large, bad JSON):
small, capped rows for the delivery page; what was refused is never stored, only that it was.

Input: `NewRefusal` from the web worker's recorder (bridge/web/refusals.py), which already limits
how often it writes. Output: rows as plain dicts (the list's shape: `outcome` "refused"), their
per-minute counts for the chart, and pruning. Every text is clipped and made printable here,
whoever writes it. A mixin of `Store`; SQLite and PostgreSQL alike.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Integer, and_, cast, delete, func, insert, or_, select

from bridge.jobs import REFUSED
from bridge.store.schema import refusals
from bridge.store.tx import Tx

#: Rows kept: the newest; older ones go every `TRIM_EVERY` rows written (and by `prune_refusals`).
KEEP = 10_000
TRIM_EVERY = 100
#: Longest stored text of each column (a reason, a source from the URL, a delivery id, an address).
_LIMITS = {"source": 100, "reason": 300, "delivery": 200, "peer": 64}
#: What an INTEGER column holds (PostgreSQL: 32 bits): a page's URL may name any id, and
#: `dropped` may add up past it.
_ID_MIN, _ID_MAX = -(2 ** 31), 2 ** 31 - 1


@dataclass(frozen=True)
class NewRefusal:
    received_at: float          # epoch seconds
    source: str                 # the URL's source, as sent (maybe no source at all)
    status: int                 # the HTTP status answered
    reason: str                 # our message (DeliveryError.message), never the body
    delivery: str | None = None     # the host's delivery id, if it sent one
    peer: str | None = None         # the client's address
    dropped: int = 0            # refusals the recorder let go just before this one


def printable(text: str | None, limit: int) -> str | None:
    """`text` within `limit` characters, every unprintable character escaped (no NUL, no line
    break, no terminal escape): what the page and a log reader get is what was stored."""
    if text is None:
        return None
    text = str(text)
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit - 3] + "..."


class Refusals(Tx):
    """Refused deliveries: record, read, count, prune. Mixed into `Store`."""

    def record_refusal(self, r: NewRefusal, *, keep: int = KEEP) -> int:
        """One row; every TRIM_EVERY-th id also drops all but the newest `keep` rows. Returns
        the row's id. Raises StoreUnavailable (the caller logs it and goes on)."""
        values = {name: printable(getattr(r, name), limit) for name, limit in _LIMITS.items()}
        values["source"] = values["source"] or ""
        values["reason"] = values["reason"] or ""
        with self._tx() as conn:
            rid = conn.execute(insert(refusals).values(
                received_at=float(r.received_at), status=int(r.status),
                dropped=min(max(int(r.dropped), 0), _ID_MAX),   # a count past the column: its top
                **values).returning(refusals.c.id)).scalar_one()
            if rid % TRIM_EVERY == 0:
                self._trim_refusals(conn, keep)
        return rid

    def _trim_refusals(self, conn, keep: int) -> int:
        """Drop every row but the newest `keep` (by id: ids only grow)."""
        edge = conn.execute(select(refusals.c.id).order_by(refusals.c.id.desc())
                            .offset(keep).limit(1)).scalar()
        if edge is None:
            return 0
        return conn.execute(delete(refusals).where(refusals.c.id <= edge)).rowcount

    def prune_refusals(self, older_than: float, *, keep: int = KEEP) -> int:
        """Delete the rows received before `older_than` (epoch seconds), and any beyond the
        newest `keep`. Returns how many."""
        with self._tx() as conn:
            n = conn.execute(delete(refusals).where(refusals.c.received_at < older_than)).rowcount
            return n + self._trim_refusals(conn, keep)

    def get_refusal(self, rid: int) -> dict | None:
        if not _ID_MIN <= rid <= _ID_MAX:      # no such row (and no driver error over it)
            return None
        with self._tx(read=True) as conn:
            row = conn.execute(select(refusals).where(refusals.c.id == rid)).first()
        return None if row is None else refusal_dict(row)

    def _refusal_rows(self, conn, *, source=None, since=None, until=None, after=None,
                      limit: int = 50) -> list[dict]:
        """Newest first, after the list's keyset cursor `after` (see store/reads.py: refusals
        come after the deliveries of the same time)."""
        r = refusals.c
        q = select(refusals).order_by(r.received_at.desc(), r.id.desc())
        if source:
            q = q.where(r.source == source)
        if since is not None:
            q = q.where(r.received_at >= since)
        if until is not None:
            q = q.where(r.received_at < until)
        if after is not None:
            ts, key = after[0], after[1]
            if len(after) == 3:          # after a refusal: the older ones, or older ids of that time
                key = min(max(int(key), _ID_MIN), _ID_MAX)     # a hand-made cursor: any number
                q = q.where(or_(r.received_at < ts, and_(r.received_at == ts, r.id < key)))
            else:                        # after a delivery: every refusal of its time is still to come
                q = q.where(r.received_at <= ts)
        return [refusal_dict(row) for row in conn.execute(q.limit(limit))]

    def _refusal_counts(self, conn, *, since: float, until: float, bucket: int) -> list[tuple]:
        """(bucket start, "refused", count) with the refusals the recorder let go folded into
        the row written after them."""
        r = refusals.c
        if conn.dialect.name == "postgresql":
            slot = func.floor(r.received_at / bucket)
        else:
            slot = cast(r.received_at / bucket, Integer)
        rows = conn.execute(select(slot.label("slot"), func.count() + func.sum(r.dropped))
                            .where(r.received_at >= since, r.received_at < until)
                            .group_by(slot)).all()
        return [(int(s) * bucket, REFUSED, int(n)) for s, n in rows]


def refusal_dict(row) -> dict:
    """A refusal in the shape of the list's rows (`outcome` "refused", no repo, no jobs)."""
    return {"refusal": row.id, "received_at": row.received_at, "source": row.source,
            "status": row.status, "reason": row.reason, "host_delivery": row.delivery, "peer": row.peer,
            "dropped": row.dropped, "outcome": REFUSED, "repo": None, "ref": None, "sha": "",
            "matched": [], "jobs": [], "via": None}
