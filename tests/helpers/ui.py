"""Test support for the delivery page: a store filled with deliveries of every outcome and jobs
in every state, through the store's own ingest / claim / record calls (refusals through
`record_refusal`, a superseded job through a coalescing claim), and a CSRF-aware form poster for
the Flask test client.

Input: an open Store. Output: the ids the tests look for (`Filled`).
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field, replace

from bridge.jobs import Run
from bridge.policies import Policies, TargetPolicy
from bridge.store import NewRefusal

from helpers.store import new_delivery, new_job

REPOS = ("acme/api", "acme/web", "Acme/Tools", "other/lib")
SCRIPT_BRANCH = "<script>alert(1)</script>"
#: What each matched delivery's job becomes, in turn.
JOB_FATES = ("queued", "succeeded", "failed", "dead", "skipped", "started")
#: The refusals `fill` records, in turn: what ingress answers and says.
REFUSALS = ((401, "github", "X-Hub-Signature-256 does not match the body"),
            (404, "nope", "unknown source 'nope'"),
            (413, "github", "body of 30000000 bytes is over the 26214400-byte cap"),
            (400, "github", "body is not valid JSON: Expecting value (line 1, column 1)"))


@dataclass
class Filled:
    by_outcome: dict = field(default_factory=dict)     # outcome -> [delivery ids], oldest first
    by_state: dict = field(default_factory=dict)       # job state -> [job ids]
    refused: list = field(default_factory=list)        # refusal ids, oldest first
    script_delivery: str = ""
    newest: str = ""


def fill(store, n: int = 200, *, start: float = 1_000_000.0, step: float = 30.0, target: str = "mem",
         kind: str = "memory", refused: int = 0) -> Filled:
    """`n` deliveries `step` seconds apart from `start`, cycling through the outcomes and the
    repositories; every matched one has a job whose fate cycles through JOB_FATES. The last is
    a matched push to a branch named SCRIPT_BRANCH (its job dead). And `refused` refusals
    spread among them (half a step after a delivery), cycling through REFUSALS."""
    out = Filled()
    for k in range(refused):
        status, source, reason = REFUSALS[k % len(REFUSALS)]
        at = start + (k * n // refused + 0.5) * step
        out.refused.append(store.record_refusal(NewRefusal(
            received_at=at, source=source, status=status, reason=reason, delivery=f"r-{k:04d}",
            peer="203.0.113.9", dropped=k % 3)))
    outcomes = ("matched", "no_match", "ignored", "duplicate")
    matched_jobs = []
    for i in range(n):
        last = i == n - 1
        outcome = "matched" if last else outcomes[i % len(outcomes)]
        did = f"d-{i:05d}-{uuid.uuid4().hex[:6]}"
        ref = f"refs/heads/{SCRIPT_BRANCH}" if last else f"refs/heads/{'main' if i % 3 else 'dev'}"
        d = new_delivery(did, received_at=start + i * step, outcome="matched" if outcome == "duplicate"
                         else outcome, repo=REPOS[i % len(REPOS)], ref=ref, content_key=None)
        if outcome == "duplicate":
            d = _as_duplicate(d)
        jobs = [new_job(rule="build", target=target, kind=kind, BRANCH=ref)] if outcome == "matched" else []
        got = store.ingest(d, jobs)
        out.by_outcome.setdefault(outcome, []).append(did)
        matched_jobs += [(jid, "dead" if last else JOB_FATES[len(matched_jobs) % len(JOB_FATES)])
                         for jid in got.job_ids]
        out.newest = did
        if last:
            out.script_delivery = did
    _apply_fates(store, matched_jobs, start + n * step)
    for jid, fate in matched_jobs:
        out.by_state.setdefault(fate, []).append(jid)
    return out


def supersede(store, *, at: float = 2_000_000.0, target: str = "mem") -> tuple[str, int, int]:
    """Two pushes to one branch whose jobs share a policy group, then a coalescing claim: the
    older job is superseded by the newer. Returns (the older delivery, its job, the newer job)."""
    ids = []
    for i in range(2):
        d = new_delivery(f"s-{i}-{uuid.uuid4().hex[:6]}", received_at=at + i, content_key=None)
        (jid,) = store.ingest(d, [replace(new_job(rule="build", target=target), group="build/main")]).job_ids
        ids.append((d.delivery_id, jid))
    policies = Policies(targets={target: TargetPolicy(on_newer="coalesce")})
    (claimed,) = store.claim("fill", 5, lease_seconds=600, now=at + 2, policies=policies)
    assert claimed.id == ids[1][1]
    store.release(claimed.id, "fill")
    return ids[0][0], ids[0][1], ids[1][1]


def _as_duplicate(d):
    # A delivery stored with outcome "duplicate", as ingest records a content duplicate.
    return replace(d, outcome="duplicate", reason="the same push was already accepted", verdicts=[])


def _apply_fates(store, fates, now: float) -> None:
    wanted = dict(fates)
    claimed = store.claim("fill", len(fates) + 1, lease_seconds=600, now=now + 1)
    for job in claimed:
        fate = wanted[job.id]
        if fate == "queued":
            store.release(job.id, "fill")
        elif fate in ("succeeded", "failed", "started"):
            store.record_run(job.id, "fill", Run(remote_id=f"run-{job.id}", state=fate,
                                                 url=f"https://ci.example/job/{job.id}"), now=now)
        elif fate == "dead":
            store.record_dead(job.id, "fill", "target said no (403)", now=now)
        elif fate == "skipped":
            store.record_skipped(job.id, "fill", "no file matches paths", now=now)


_CSRF = re.compile(rb'name="csrf" value="([0-9a-f]+)"')


def csrf_of(page: bytes) -> str:
    found = _CSRF.search(page)
    assert found, "the page carries no CSRF token"
    return found.group(1).decode()


def post_form(client, url: str, data: dict, *, via: str | None = None):
    """POST `data` to `url` with the CSRF token of the page at `via` (default `url`)."""
    page = client.get(via or url)
    return client.post(url, data={**data, "csrf": csrf_of(page.data)})
