"""Jobs as values: the `Job` a rule asks for, the store queues and a dispatcher hands a target,
the `Run` a target answers with, the states a stored job and a delivery can be in, and the
operator-rerun request key. Plain values: no I/O, imported by rules, store, targets and dispatch."""
from __future__ import annotations

from dataclasses import dataclass, field

from bridge.events import Event

#: Every state a job can be in; see the `bridge.store` package docstring for what each means.
JOB_STATES = ("queued", "running", "started", "succeeded", "failed", "dead", "skipped",
              "superseded")
#: States a job is still to be worked on in (prune keeps their deliveries).
OPEN_STATES = ("queued", "running")
#: Delivery outcomes (`duplicate`: the same push was already accepted under another id).
OUTCOMES = ("matched", "no_match", "ignored", "duplicate")
#: A delivery refused before it was stored (bad signature, unknown source, too large, not JSON):
#: never a stored delivery's outcome, only a row of the store's capped record of refusals.
REFUSED = "refused"
#: What the delivery page lists and charts: the stored outcomes and the refusals.
LISTED_OUTCOMES = OUTCOMES + (REFUSED,)

#: A job's request key counting how often an operator had a failed build run again (`bridge
#: retry`): targets with an idempotency key (Jenkins' BRIDGE_DELIVERY, CodeBuild's token) put it
#: in the key, so the new run is not mistaken for the failed one. Never a rule's own key.
RERUN_KEY = "bridge_rerun"


def rerun_suffix(job: "Job") -> str:
    """"" for a job's first run; "-rerun<N>" after the Nth operator retry of a failed build."""
    n = job.request.get(RERUN_KEY) if isinstance(job.request, dict) else None
    return f"-rerun{int(n)}" if n else ""


@dataclass(kw_only=True, slots=True)
class Job:
    """One unit of work for one target, the same value from the rule that asks for it to the
    dispatcher that runs it. What is not known yet keeps its default: `id` until the store has
    inserted it, the lease (`lease_expires_at`) until a dispatcher claimed it.

    A value: never changed in place (`dataclasses.replace` makes a changed copy). Not frozen
    only because matching makes one per matched rule, and a frozen dataclass takes three times
    as long to build."""
    rule: str
    target: str                 # the target's name in rules.yaml
    kind: str = ""              # the target's kind ("jenkins", "exec", ...)
    request: dict               # the rule's `run:` with every template already rendered
    event: Event | None = None  # the push it builds (the store's writes do not need it; a
                                # claimed job's is None only if its stored event cannot be read)
    needs_files: bool = False   # the rule's path filters wait for the changed files (a mirror)
    path_filter: dict | None = None  # then {"paths", "paths_ignore", "on_unknown_files": "run"|"skip"}
    id: int | None = None       # the store's id; None before the insert
    delivery: str = ""          # the delivery id it is stored under (prefixes every log line)
    attempt: int = 1            # 1 on the first try; a claim counts it up
    first_queued_at: float = 0.0    # when the store first queued it (the give-up clock)
    lease_expires_at: float = 0.0   # claimed: the claimer's lease ends then, unless renewed
    group: str = ""             # its policy group (bridge.policies), rendered at ingest


@dataclass(frozen=True)
class Run:
    """What a target reports back after accepting a job.

    `state` is "started" (the build runs remotely; follow it by `remote_id`), "queued" (accepted,
    no build yet: e.g. a Jenkins queue item), or a final "succeeded" / "failed" for targets that
    finish inside `start` (exec, memory).
    """
    remote_id: str
    url: str = ""
    state: str = "started"
    detail: dict = field(default_factory=dict)
