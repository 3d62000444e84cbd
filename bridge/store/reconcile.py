"""The store's side of reconcile: named leases (one instance runs a periodic task at a time), the
marks reconcile keeps between runs (a delivery log's cursor, the refs a watch last saw, what it
asked a host to redeliver) and the heads of refs as the stored deliveries know them.

Input: lease names and owners, mark keys and JSON values, repository names. Output: plain values;
`ReconcileStore`, a mixin of `Store`.
"""
from __future__ import annotations

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bridge.store.schema import deliveries, leases, reconcile_marks
from bridge.store.tx import Tx

#: How many of a repository's newest stored pushes `ref_heads` reads.
HEADS_WINDOW = 2000


class ReconcileStore(Tx):
    """Leases, marks and ref heads for reconcile. Mixed into `Store`."""

    def _upsert(self, table):
        return (postgresql.insert if self._pg else sqlite.insert)(table)

    # -- leases -------------------------------------------------------------------------------

    def take_lease(self, name: str, owner: str, seconds: float, *, now: float) -> bool:
        """Take (or renew) the lease `name` for `seconds` unless another owner holds it unexpired."""
        ins = self._upsert(leases).values(name=name, owner=owner, expires_at=now + seconds)
        stmt = ins.on_conflict_do_update(
            index_elements=["name"],
            set_={"owner": owner, "expires_at": now + seconds},
            where=or_(leases.c.expires_at < now, leases.c.owner == owner))
        with self._tx() as conn:
            conn.execute(stmt)
            held = conn.execute(select(leases.c.owner).where(leases.c.name == name)).scalar()
        return held == owner

    def release_lease(self, name: str, owner: str) -> None:
        with self._tx() as conn:
            conn.execute(delete(leases).where(leases.c.name == name, leases.c.owner == owner))

    def lease_holder(self, name: str, *, now: float) -> str | None:
        with self._tx(read=True) as conn:
            return conn.execute(select(leases.c.owner)
                                .where(leases.c.name == name, leases.c.expires_at >= now)).scalar()

    # -- marks --------------------------------------------------------------------------------

    def get_mark(self, key: str):
        """The JSON value stored under `key`, or None."""
        with self._tx(read=True) as conn:
            return conn.execute(select(reconcile_marks.c.value)
                                .where(reconcile_marks.c.key == key)).scalar()

    def set_marks(self, marks: dict, *, now: float) -> None:
        """Store every key -> JSON value of `marks` in one transaction."""
        if not marks:
            return
        with self._tx() as conn:
            for key, value in marks.items():
                ins = self._upsert(reconcile_marks).values(key=key, value=value, updated_at=now)
                conn.execute(ins.on_conflict_do_update(index_elements=["key"],
                                                       set_={"value": value, "updated_at": now}))

    # -- deliveries as reconcile sees them ------------------------------------------------------

    def ref_heads(self, repo: str, *, fold: bool) -> tuple[str | None, str | None, dict[str, list[str]]]:
        """The repository's name as its newest stored push spells it (None: no push stored), the
        first part of its content key ("github", or "github@ghe.example.com" for another host), and
        for each ref the `after` of its stored pushes, newest first (from the content key,
        "provider[@host]|repo|ref|before|after": the sha is its last part). `fold`: the host's
        repository names ignore case."""
        d = deliveries.c
        with self._tx(read=True) as conn:
            # The name as written first (the repo index); of any case only when that finds none.
            for where in (d.repo == repo, func.lower(d.repo) == repo.lower())[:2 if fold else 1]:
                rows = conn.execute(select(d.repo, d.ref, d.content_key)
                                    .where(where, d.content_key.is_not(None))
                                    .order_by(d.received_at.desc(), d.id.desc())
                                    .limit(HEADS_WINDOW)).all()
                if rows:
                    break
        heads: dict[str, list[str]] = {}
        for r in rows:
            heads.setdefault(r.ref, []).append(r.content_key.rsplit("|", 1)[-1])
        if not rows:
            return None, None, heads
        return rows[0].repo, rows[0].content_key.split("|", 1)[0], heads

    def stored_ids(self, ids) -> set[str]:
        """Which of these delivery ids the store holds."""
        ids = list(ids)
        if not ids:
            return set()
        with self._tx(read=True) as conn:
            return set(conn.execute(select(deliveries.c.id).where(deliveries.c.id.in_(ids))).scalars())

    def mark_via(self, ids, via: str) -> int:
        """Mark stored deliveries (that the host sent again because reconcile asked) as come
        `via`; ones already marked keep their mark. Returns how many were marked."""
        ids = list(ids)
        if not ids:
            return 0
        with self._tx() as conn:
            return conn.execute(update(deliveries)
                                .where(and_(deliveries.c.id.in_(ids), deliveries.c.via.is_(None)))
                                .values(via=via)).rowcount
