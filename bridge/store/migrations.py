"""Store schema versions: numbered steps that bring a database to the layout of schema.py.

Input: a connection inside a write transaction (the store's). Output: the database at
`SCHEMA_VERSION` with one `schema_version` row per version applied, or `StoreUnavailable` saying
what to do ("run `cibridge db upgrade`", "upgrade the bridge").

Version 1 is the baseline: schema.py's metadata as it stands. A fresh database is created from
the metadata and stamped with the newest version at once (Alembic's "create_all, then stamp
head"), so a step only ever turns version N-1 into N. To change the layout: edit schema.py, bump
`SCHEMA_VERSION`, and append `Step(N, "what", fn)` to `STEPS` doing the same change with
`conn.execute(text("ALTER TABLE ..."))`; `diff()` in a test proves the step and the metadata agree.
Steps run in ONE transaction (PostgreSQL and SQLite both roll DDL back), so a failed upgrade leaves
the previous version intact. SQLite's ALTER TABLE only adds, renames and drops columns; anything
else is its documented rebuild (create new table, copy, drop, rename) inside the step.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy import String, func, insert, inspect, select, text

from bridge.errors import StoreUnavailable
from bridge.store.schema import (SCHEMA_VERSION, deliveries, follows, jobs, leases, metadata, policy_state,
                                 reconcile_marks, refusals, schema_version, statuses)


@dataclass(frozen=True)
class Step:
    version: int                         # the version this step produces
    description: str
    apply: Callable                      # apply(conn): DDL and data changes, no commit


def _feedback_tables(conn) -> None:
    follows.create(conn)          # with their indexes
    statuses.create(conn)


def _no_length_limits(conn) -> None:
    """Every VARCHAR(n) column becomes TEXT, and deliveries_repo a hash index on PostgreSQL, so
    a long ref or repository name is stored there as on SQLite. PostgreSQL changes VARCHAR to
    TEXT in its catalog only (no rewrite); SQLite never enforced the lengths (its VARCHAR(n) is
    TEXT affinity), so there the declared types stay and only the index is rebuilt."""
    conn.execute(text("DROP INDEX IF EXISTS deliveries_repo"))
    if conn.dialect.name == "postgresql":
        quote = conn.dialect.identifier_preparer.quote
        insp = inspect(conn)
        for table in metadata.sorted_tables:
            for col in insp.get_columns(table.name):
                if isinstance(col["type"], String) and col["type"].length is not None:
                    conn.execute(text(f"ALTER TABLE {quote(table.name)} ALTER COLUMN "
                                      f"{quote(col['name'])} TYPE TEXT"))
    next(i for i in deliveries.indexes if i.name == "deliveries_repo").create(conn)


def _page_indexes(conn) -> None:
    """The delivery page's indexes (store/reads.py), unless there already (a test's database
    made from a newer schema.py has them)."""
    have = _indexes(conn, inspect(conn), "deliveries")
    for name in ("deliveries_repo_lower", "deliveries_outcome"):
        if name not in have:
            next(i for i in deliveries.indexes if i.name == name).create(conn)


def _policies(conn) -> None:
    """Per-target policy: jobs.policy_group and superseded_by and the policy_state table; each
    only if missing (a database made from a newer schema.py)."""
    have = {c["name"] for c in inspect(conn).get_columns(jobs.name)}
    for name in ("policy_group", "superseded_by"):
        if name not in have:
            kind = jobs.c[name].type.compile(conn.dialect)
            conn.execute(text(f"ALTER TABLE jobs ADD COLUMN {name} {kind}"))
    policy_state.create(conn, checkfirst=True)


def _reconcile(conn) -> None:
    """Reconcile's lease and marks tables, and deliveries.via. Written to find any of them
    already there (a database made from a newer metadata than its stamp)."""
    leases.create(conn, checkfirst=True)
    reconcile_marks.create(conn, checkfirst=True)
    if "via" not in {c["name"] for c in inspect(conn).get_columns(deliveries.name)}:
        conn.execute(text("ALTER TABLE deliveries ADD COLUMN via TEXT"))


def _refusals(conn) -> None:
    """The record of refused deliveries (store/refusals.py), with its index; unless there
    already (a database made from a newer metadata than its stamp)."""
    refusals.create(conn, checkfirst=True)


#: Steps after the baseline, oldest first: Step(2, ...), Step(3, ...).
STEPS: tuple[Step, ...] = (
    Step(2, "follows and statuses: builds followed to their end, commit statuses to post",
         _feedback_tables),
    Step(3, "no length limits: TEXT columns, deliveries_repo hashed on PostgreSQL",
         _no_length_limits),
    Step(4, "the delivery page's indexes: repository of any case, outcome by time",
         _page_indexes),
    Step(5, "per-target policy: jobs' group and superseded_by, the policy state", _policies),
    Step(6, "reconcile: leases, reconcile_marks, deliveries.via", _reconcile),
    Step(7, "refusals: a capped record of the deliveries refused before they were stored",
         _refusals),
)

# Any constant: serializes schema changes of PostgreSQL instances starting at the same time.
_PG_LOCK = 0x6272696467650001


@dataclass(frozen=True)
class Status:
    version: int | None                  # the database's; None: no bridge schema there
    code_version: int                    # what this bridge reads and writes
    applied: list[tuple[int, float]] = field(default_factory=list)   # (version, applied_at)
    pending: list[Step] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)   # differences from schema.py (when current)

    @property
    def current(self) -> bool:
        return self.version == self.code_version and not self.drift


def current_version(conn) -> int | None:
    """The database's schema version; None when it holds no bridge schema."""
    if not inspect(conn).has_table(schema_version.name):
        return None
    return conn.execute(select(func.max(schema_version.c.version))).scalar()


def needs_change(found: int | None, *, create: bool, upgrade: bool,
                 target: int = SCHEMA_VERSION) -> bool:
    """Whether a database at `found` must be created or upgraded; raises StoreUnavailable,
    naming the remedy, when it differs from `target` in a way the caller may not fix."""
    if found == target:
        return False
    if found is None:
        if create:
            return True
        raise StoreUnavailable("store unavailable: no bridge schema in this database (schema version "
                               "none): run `cibridge db upgrade` (or `cibridge serve`, which creates it)")
    if found > target:
        raise StoreUnavailable(f"store unavailable: database schema version {found} is newer than "
                               f"this bridge ({target}): run the newer bridge release, or point "
                               f"this one at another database")
    if upgrade:
        return True
    raise StoreUnavailable(f"store unavailable: database schema version {found} is older than this "
                           f"bridge ({target}): run `cibridge db upgrade`")


def lock(conn) -> None:
    """Hold the schema lock until the transaction ends. SQLite: the store's writer lock and
    BEGIN IMMEDIATE already exclude every other writer."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})


def migrate(conn, *, create: bool, upgrade: bool, steps: tuple[Step, ...] = STEPS,
            target: int = SCHEMA_VERSION, now: Callable[[], float] = time.time) -> list[int]:
    """Create or upgrade the schema under the lock (another process may have done it meanwhile:
    the version is read again). Returns the versions applied ([target] for a fresh database)."""
    lock(conn)
    found = current_version(conn)
    if not needs_change(found, create=create, upgrade=upgrade, target=target):
        return []
    if conn.dialect.name == "postgresql":
        # An ALTER waiting for a lock makes every later query on the table wait behind it: give
        # up rather than stall ingest. A step may take long on big tables: no statement limit.
        conn.execute(text("SET LOCAL lock_timeout = '10s'"))
        conn.execute(text("SET LOCAL statement_timeout = 0"))
    if found is None:
        _refuse_foreign_tables(conn)
        metadata.create_all(conn)
        versions = [target]
    else:
        by_version = _steps(steps, found, target)
        for step in by_version:
            step.apply(conn)
        versions = [s.version for s in by_version]
    conn.execute(insert(schema_version), [{"version": v, "applied_at": now()} for v in versions])
    return versions


def status(conn, *, steps: tuple[Step, ...] = STEPS, target: int = SCHEMA_VERSION) -> Status:
    """What `cibridge db status` shows: versions, history, pending steps, drift from schema.py."""
    found = current_version(conn)
    if found is None:
        return Status(None, target)
    applied = [(r.version, r.applied_at) for r in
               conn.execute(select(schema_version.c.version, schema_version.c.applied_at)
                            .order_by(schema_version.c.version))]
    pending = _steps(steps, found, target) if found < target else []
    return Status(found, target, applied, pending, diff(conn) if found == target else [])


def diff(conn) -> list[str]:
    """Tables, columns and indexes schema.py has and the database lacks, or the reverse, and on
    PostgreSQL any column with a length limit (schema.py has none). Names, not full types:
    enough to catch a step that forgot something, which is what a hand-written step risks."""
    insp = inspect(conn)
    have = set(insp.get_table_names())
    problems = []
    for name, table in metadata.tables.items():
        if name not in have:
            problems.append(f"table {name} is missing")
            continue
        columns = insp.get_columns(name)
        cols = {c["name"] for c in columns}
        problems += [f"column {name}.{c} is missing" for c in table.columns.keys() if c not in cols]
        problems += [f"column {name}.{c} is not in schema.py" for c in sorted(cols - set(table.columns.keys()))]
        indexes = _indexes(conn, insp, name)
        problems += [f"index {i.name} is missing" for i in table.indexes if i.name not in indexes]
        if conn.dialect.name == "postgresql":    # SQLite never enforces a declared length
            problems += [f"column {name}.{c['name']} is limited to {c['type'].length} characters "
                         "(schema.py: no limit)" for c in columns
                         if isinstance(c["type"], String) and c["type"].length is not None]
            problems += [f"index {i.name} is not a {_using(i)} index" for i in table.indexes
                         if i.name in indexes and _using(i) != _using(indexes[i.name])]
    return problems


def _indexes(conn, insp, table: str) -> dict:
    """The table's indexes by name. SQLAlchemy does not reflect SQLite's expression indexes
    (deliveries_repo_lower): their names come from sqlite_master."""
    if conn.dialect.name != "sqlite":
        return {i["name"]: i for i in insp.get_indexes(table)}
    rows = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t "
                             "AND sql IS NOT NULL"), {"t": table})
    return {r.name: {"name": r.name} for r in rows}


def _using(index) -> str:
    """A PostgreSQL index's method, from schema.py's Index or from a reflected one."""
    if isinstance(index, dict):
        return index.get("dialect_options", {}).get("postgresql_using") or "btree"
    return index.dialect_options["postgresql"]["using"] or "btree"


def _steps(steps: tuple[Step, ...], found: int, target: int) -> list[Step]:
    by_version = {s.version: s for s in steps}
    missing = [v for v in range(found + 1, target + 1) if v not in by_version]
    if missing:
        # A programming error: schema.py was bumped without its step.
        raise RuntimeError(f"no migration step for schema version(s) {missing}")
    return [by_version[v] for v in range(found + 1, target + 1)]


def _refuse_foreign_tables(conn) -> None:
    # Our table names are common words; never adopt somebody else's "jobs".
    clash = sorted(set(metadata.tables) & set(inspect(conn).get_table_names()))
    if clash:
        raise StoreUnavailable(f"store unavailable: tables {', '.join(clash)} exist but carry no bridge "
                               f"schema version: another application's database, or a damaged one")
