"""The durable inbox and job queue: deliveries, their jobs and every attempt, in SQLite or PostgreSQL.

Input: `NewDelivery` + `Job`s from ingress, claims and results from the dispatcher. Output:
committed rows (a 2xx is sent only after `Store.ingest` returns), claimed `Job`s, operator views.

Job states:

    queued ──claim──> running ──record_run──> started | succeeded | failed
      ^                  │ ──record_retry──> queued (next_attempt_at in the future, last_error set)
      │                  │ ──record_dead───> dead ──retry_jobs──> queued
      │                  │   (failed, too: `cibridge retry`, as a rerun: see store/operators.py)
      │                  │ ──record_skipped─> skipped
      │ (claim: a newer job of its group, policy coalesce / cancel) ──> superseded
      └────release───────┘    (lease expired: another dispatcher claims it again, attempt "lost")

- queued: waiting for `next_attempt_at`; a retry is a queued job with attempts > 0 and last_error.
- running: leased to a dispatcher (`lease_owner`, `lease_expires_at`); renewed while it runs.
- started: the target accepted it and runs it remotely (`remote_id`, `url`).
- succeeded / failed: the build finished (exec, memory finish inside `start`); failed is a build
  that ran and failed (non-zero exit), not a delivery problem.
- dead: a permanent error, or transient ones for longer than the target's give-up time.
- skipped: the push changes no file the rule's paths / paths-ignore care about.
- superseded: a newer job of its group (policy `on_newer: coalesce | cancel`, bridge.policies)
  replaced it while it waited, or (cancel) while its build ran; `superseded_by` names that job.

A started job is followed (`claim_follows`, under a follow lease of its own) until its build ends:
`finish_follow` moves it to succeeded / failed. Commit statuses for the git host are rows too
(`statuses`): stored with the results above, claimed and posted by the dispatcher.

Every record_* applies only while the caller still holds the lease, and appends one row to the
job's attempts. Durability "full" survives power loss; "normal" survives kill -9 of any process
but may lose the last commits on power loss (SQLite synchronous=NORMAL; PostgreSQL
synchronous_commit=off).
"""
from pathlib import Path

from bridge.store.follows import ClaimedFollow, Follows
from bridge.store.inbox import Inbox, Ingested, NewDelivery, reused_delivery_id
from bridge.store.operators import OperatorQueries
from bridge.store.outbox import ClaimedStatus, NewStatus, Outbox
from bridge.store.pulls import PullQueries
from bridge.store.queue import Queue
from bridge.store.reads import Reads
from bridge.store.reconcile import ReconcileStore
from bridge.store.refusals import NewRefusal, Refusals


class Store(Inbox, Queue, Follows, Outbox, OperatorQueries, PullQueries, Reads, ReconcileStore,
            Refusals):
    """Deliveries, jobs and their attempts, follows and statuses in one database (see above).

    One class over the store's nouns: `Inbox` (store/inbox.py), `Queue` (store/queue.py),
    `Follows` (store/follows.py), `Outbox` (store/outbox.py), `OperatorQueries`
    (store/operators.py), `PullQueries` (store/pulls.py), `Reads` (store/reads.py: the
    delivery page), `ReconcileStore` (store/reconcile.py: leases, marks) and `Refusals`
    (store/refusals.py: the capped record of refused deliveries), all on `Tx`
    (store/tx.py: engine, transactions, group commit).
    `Store.open(url, ...)` connects; every method is one short transaction (prune: a few), and
    any database failure raises `StoreUnavailable` with nothing half-written.
    """


__all__ = ["ClaimedFollow", "ClaimedStatus", "Ingested", "NewDelivery", "NewRefusal", "NewStatus", "Store",
           "reused_delivery_id"]


def open_for(config, state_dir, **kw) -> Store:
    """The store `config` names (settings.database_url, else BRIDGE_DATABASE_URL, else the SQLite
    file in `state_dir`, which is created), with its durability; `kw` as `Store.open`. Raises
    StoreUnavailable."""
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    return Store.open(config.database_url(state_dir), durability=config.settings.durability, **kw)
