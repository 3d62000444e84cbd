"""Store schema: the SQLAlchemy Core tables shared by SQLite and PostgreSQL.

Input: nothing. Output: `metadata` with deliveries, content_keys, jobs, job_attempts, follows,
statuses, refusals and schema_version, and `SCHEMA_VERSION`, the layout this code reads and writes.
"""
from __future__ import annotations

from sqlalchemy import (JSON, Boolean, Column, Double, ForeignKey, Index, Integer, LargeBinary,
                        MetaData, Table, Text, func)

#: Bumped on every change of the layout below; a database at another version is refused.
SCHEMA_VERSION = 7

# Text everywhere, never VARCHAR(n): PostgreSQL enforces a length that SQLite ignores, so a long
# ref or repository name was stored by one backend and refused (503, forever) by the other.
# For the same reason no index holds a value of unbounded length in a b-tree (PostgreSQL caps an
# entry at about 2.7 KB): repo is hash-indexed there, and the store hashes long content keys.

metadata = MetaData()

# SQL NULL rather than a JSON 'null' for absent values, so "IS NULL" means what it says.
_Json = JSON(none_as_null=True)

schema_version = Table(
    "schema_version", metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", Double, nullable=False),
    Column("checked_at", Double),           # written by Store.ping(): proof that writes work
)

deliveries = Table(
    "deliveries", metadata,
    Column("id", Text, primary_key=True),                 # the host's delivery id
    Column("source", Text, nullable=False),
    Column("provider", Text, nullable=False),
    Column("received_at", Double, nullable=False),
    Column("repo", Text),                                 # from the event, for listing
    Column("ref", Text),
    Column("outcome", Text, nullable=False),              # matched|no_match|ignored|duplicate
    Column("reason", Text, nullable=False),
    Column("headers", _Json, nullable=False),             # never signature or token headers
    Column("body", LargeBinary, nullable=False),          # the raw bytes, for `cibridge replay`
    Column("event", _Json),                               # Event.to_dict(), None when ignored
    Column("verdicts", _Json, nullable=False),
    Column("rules_version", Text, nullable=False),
    Column("content_key", Text),
    Column("content_duplicate_of", Text),
    Column("via", Text),                                  # None: the host sent it; reconcile | redelivery
)
Index("deliveries_received_at", deliveries.c.received_at)
Index("deliveries_repo", deliveries.c.repo, postgresql_using="hash")   # a b-tree on SQLite
# The delivery page's filters (store/reads.py): a repository of any case, an outcome newest first.
Index("deliveries_repo_lower", func.lower(deliveries.c.repo), postgresql_using="hash")
Index("deliveries_outcome", deliveries.c.outcome, deliveries.c.received_at)

# Claimed only by a delivery that got jobs; the primary key is what makes the claim atomic.
# No foreign key: keys outlive `cibridge prune`, so a captured delivery replayed months later
# under a fresh id still does not build again.
content_keys = Table(
    "content_keys", metadata,
    Column("key", Text, primary_key=True),
    Column("delivery_id", Text, nullable=False),
    Column("claimed_at", Double, nullable=False),
)

jobs = Table(
    "jobs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", Text, ForeignKey("deliveries.id"), nullable=False),
    Column("rule", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("request", _Json, nullable=False),
    Column("needs_files", Boolean, nullable=False),
    Column("path_filter", _Json),
    Column("state", Text, nullable=False),
    Column("attempts", Integer, nullable=False),          # claims so far (the current one included)
    Column("first_queued_at", Double, nullable=False),    # the give-up clock starts here
    Column("next_attempt_at", Double, nullable=False),
    Column("lease_owner", Text),
    Column("leased_at", Double),
    Column("lease_expires_at", Double),
    Column("remote_id", Text),
    Column("url", Text),
    Column("detail", _Json),                              # the last Run.detail / skip reason
    Column("last_error", Text),
    Column("updated_at", Double, nullable=False),
    Column("policy_group", Text),                         # the policy's group, rendered at ingest
    Column("superseded_by", Integer),                     # the newer job of the group that replaced it
)
Index("jobs_delivery", jobs.c.delivery_id)
# Claims read these in order and stop at their limit: no sort, however long the queue.
Index("jobs_due", jobs.c.state, jobs.c.next_attempt_at, jobs.c.id)
Index("jobs_lease", jobs.c.state, jobs.c.lease_expires_at, jobs.c.id)
# No index on policy_group: the claim looks a group up among its queued, running or started
# jobs (few, through jobs_due and jobs_lease), never among its thousands of finished ones.

job_attempts = Table(
    "job_attempts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", Integer, ForeignKey("jobs.id"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("owner", Text, nullable=False),
    Column("started_at", Double),
    Column("finished_at", Double, nullable=False),
    # succeeded|failed|started|retry|dead|skipped|lost (lease expired, taken over)|requeued
    # (an operator's `cibridge retry`; owner "operator")
    Column("outcome", Text, nullable=False),
    Column("error", Text),
    Column("remote_id", Text),
    Column("url", Text),
    Column("detail", _Json),
)
Index("job_attempts_job", job_attempts.c.job_id)

# The claim's policy state (bridge.policies): a token bucket per target (key "target:NAME") and
# per rule with a rate of its own ("rule:NAME"), and a target's circuit breaker. Read and written
# inside the claim's transaction, so every dispatcher sharing the database sees one state.
policy_state = Table(
    "policy_state", metadata,
    Column("key", Text, primary_key=True),
    Column("tokens", Double),                             # the bucket's tokens at refilled_at
    Column("refilled_at", Double),
    Column("failures", Integer, nullable=False),          # transient failures in a row
    Column("opened_at", Double),                          # the breaker opened then (None: closed)
    Column("probe_job", Integer),                         # half open: the one job let through
    Column("updated_at", Double, nullable=False),
)

# --- feedback: following builds and commit statuses (bridge/dispatch/statuses.py) -------------
# New tables only: `create_all` adds them to an existing database, no rewrite of the ones above.
# No foreign keys: `prune` deletes these rows with their deliveries.

follows = Table(
    "follows", metadata,
    Column("job_id", Integer, primary_key=True, autoincrement=False),
    Column("run_state", Text, nullable=False),            # Run.state: queued | started
    Column("remote_id", Text, nullable=False),
    Column("url", Text),
    Column("detail", _Json),
    Column("state", Text, nullable=False),                # following | done | gave_up | cancelled
    Column("since", Double, nullable=False),              # the give-up clock starts here
    Column("checks", Integer, nullable=False),
    Column("next_check_at", Double, nullable=False),
    Column("lease_owner", Text),                          # the follow lease, apart from the job's
    Column("lease_expires_at", Double),
    Column("last_error", Text),
    Column("updated_at", Double, nullable=False),
)
Index("follows_due", follows.c.state, follows.c.next_check_at)

statuses = Table(
    "statuses", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", Text, nullable=False, unique=True),          # job:<id>:<attempt>:<phase> | skip:...
    Column("delivery_id", Text, nullable=False),
    Column("job_id", Integer),                            # None for a rule skipped at match time
    Column("rule", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("provider", Text, nullable=False),
    Column("repo", Text, nullable=False),
    Column("sha", Text, nullable=False),
    Column("ref", Text, nullable=False),                  # branch or tag name
    Column("context", Text, nullable=False),
    Column("rank", Integer, nullable=False),              # a higher rank of one job supersedes
    Column("state", Text, nullable=False),                # pending|running|success|failure|canceled|error
    Column("description", Text, nullable=False),
    Column("target_url", Text),
    # waiting | sending | sent | done (refused as already so) | failed | superseded | dropped
    Column("post_state", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("next_attempt_at", Double, nullable=False),
    Column("lease_owner", Text),
    Column("lease_expires_at", Double),
    Column("answer_code", Integer),                       # the git host's HTTP status
    Column("answer", Text),                               # its short message, or the network error
    Column("sent_at", Double),
    Column("updated_at", Double, nullable=False),
)
Index("statuses_due", statuses.c.post_state, statuses.c.next_attempt_at, statuses.c.id)
Index("statuses_job", statuses.c.job_id, statuses.c.rank)
Index("statuses_delivery", statuses.c.delivery_id)

# --- reconcile: recovering deliveries the bridge never received (bridge/dispatch/reconcile.py) --

# Named leases: one instance at a time runs a periodic task ("reconcile").
leases = Table(
    "leases", metadata,
    Column("name", Text, primary_key=True),
    Column("owner", Text, nullable=False),
    Column("expires_at", Double, nullable=False),
)

# What reconcile remembers between runs: a delivery log's cursor, the refs a watch last saw,
# the host deliveries it asked to redeliver. key -> JSON value.
reconcile_marks = Table(
    "reconcile_marks", metadata,
    Column("key", Text, primary_key=True),
    Column("value", _Json, nullable=False),
    Column("updated_at", Double, nullable=False),
)

# --- refusals: deliveries refused before anything was stored (bridge/store/refusals.py) -------

# A bounded record for the delivery page: at most about one row a second per web worker (the
# rest are counted in the next row's `dropped`), trimmed to the newest rows. Our own message
# only: never a body, a signature or a header value (the host's delivery id aside, clipped).
refusals = Table(
    "refusals", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", Double, nullable=False),
    Column("source", Text, nullable=False),               # the URL's /hooks/<source>, clipped
    Column("status", Integer, nullable=False),            # the HTTP status answered: 400/401/404/413
    Column("reason", Text, nullable=False),               # our message, clipped
    Column("delivery", Text),                             # the host's delivery id, clipped; None: none sent
    Column("peer", Text),                                 # the client's address
    Column("dropped", Integer, nullable=False),           # refusals not recorded just before this one
)
Index("refusals_received_at", refusals.c.received_at, refusals.c.id)
