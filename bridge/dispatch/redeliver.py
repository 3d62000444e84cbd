"""Reconcile, the delivery log: for each configured hook, the deliveries the host recorded as failed
whose id the bridge does not have, asked for again (GitHub redelivery, GitLab resend).

Input: a `Run` (store, source, host client, report) and one `HookRef`. Output: redeliveries asked
of the host (the host then delivers through the normal ingress: the delivery id dedupes a second
arrival), lines in the run's report, the hook's watermark and asks kept in the store's marks.
Where GitLab cannot resend (before 17.4) the logged payload is ingested instead.
"""
from __future__ import annotations

import json

from bridge.providers.hostapi import ApiDenied, HostDelivery

#: Asks per host delivery before reconcile leaves it to an operator.
MAX_ASKS = 3
#: A redelivery asked this recently (seconds) may still be on its way: the watch waits for it.
PENDING_FOR = 900.0
#: The watermark is kept this much (seconds) behind the newest settled delivery: hosts list an
#: attempt when it ends, not in the order the attempts began.
OVERLAP = 300.0


def asks_key(source: str) -> str:
    return f"asked:{source}"


def recover_hook(run, hook) -> None:
    """One hook's delivery log since the later of the run's window and the hook's watermark."""
    src, store = run.source, run.store
    mark_key = f"log:{src.name}:{hook.name}"
    mark = store.get_mark(mark_key) or {}
    since = max(run.since, float(mark.get("watermark") or 0) - OVERLAP)
    attempts = run.client.deliveries(hook, since=since)
    recover = run.provider.RECOVER_EVENTS
    by_guid: dict[str, list[HostDelivery]] = {}
    for d in attempts:
        if d.guid and d.event in recover:
            by_guid.setdefault(d.guid, []).append(d)
    failed = {g: tries for g, tries in by_guid.items() if not any(t.ok for t in tries)}
    # A 4xx is the bridge's own answer (bad signature, unknown source, too big, not a push): the
    # same body would be refused again, and GitLab counts each refusal towards disabling the hook.
    refused = {g for g, tries in failed.items() if any(_refused(t) for t in tries)}
    failed = {g: tries for g, tries in failed.items() if g not in refused}
    stored = store.stored_ids(failed)
    asks = run.asks
    unsettled: list[float] = []
    for guid, tries in sorted(failed.items(), key=lambda item: item[1][-1].delivered_at):
        newest = tries[0]          # the log is newest first
        if guid in stored:
            continue               # answered meanwhile (a redelivery, or another instance)
        asked = asks.get(guid, {})
        if asked.get("n", 0) >= MAX_ASKS:
            run.found(hook.repo or "-", None, "failed_delivery", "given_up",
                      f"{guid}: asked {asked['n']} times; `cibridge deliveries` has no trace of it")
            continue
        if run.redeliveries_left <= 0:
            unsettled.append(newest.delivered_at)
            continue
        _recover_one(run, hook, guid, newest, asked)
        if not run.dry_run and guid not in run.asks_done:
            unsettled.append(newest.delivered_at)
    newest_seen = max((d.delivered_at for d in attempts), default=0.0)
    watermark = min(unsettled) if unsettled else newest_seen
    if not run.dry_run and watermark:
        run.marks[mark_key] = {"watermark": watermark}
    run.progress(f"{src.name} {hook.name}: {len(attempts)} attempts since "
                 f"{_ago(run.now() - since)}, {len(failed)} never answered 2xx, "
                 f"{len(failed) - len(stored)} not stored"
                 + (f", {len(refused)} refused by the bridge (4xx: not asked again)" if refused else ""))


def _recover_one(run, hook, guid: str, newest: HostDelivery, asked: dict) -> None:
    """Ask the host to deliver `guid` again (or ingest the logged payload where it cannot)."""
    repo = hook.repo or "-"
    code = newest.status_code or "no answer"
    if run.dry_run:
        run.found(repo, None, "failed_delivery", "would_redeliver", f"{guid} (host saw {code})")
        return
    try:
        run.client.redeliver(hook, newest)
    except ApiDenied as exc:
        if exc.status == 404 and newest.payload is not None:
            # GitLab before 17.4 lists events but cannot resend them: ingest the logged body.
            outcome = run.ingest_logged(guid, newest)
            run.found(repo, None, "failed_delivery", outcome, f"{guid} (logged payload; no resend)")
            run.asks_done.add(guid)
            return
        raise
    run.asks[guid] = {"n": asked.get("n", 0) + 1, "at": run.now(), "repo": hook.repo}
    run.redeliveries_left -= 1
    run.count("failed_delivery")
    run.found(repo, None, "failed_delivery", "redelivered", f"{guid} (host saw {code})")


def _refused(d: HostDelivery) -> bool:
    return d.status_code is not None and 400 <= d.status_code < 500


def pending_repos(asks: dict, stored: set, now: float) -> tuple[set, bool]:
    """Repositories with a redelivery asked lately and not arrived yet, and whether one of
    those is an organization hook's (any repository of the source may wait for it)."""
    repos, org = set(), False
    for guid, a in asks.items():
        if guid in stored or now - float(a.get("at") or 0) > PENDING_FOR:
            continue
        if a.get("repo"):
            repos.add(a["repo"].lower())
        else:
            org = True
    return repos, org


def logged_body(d: HostDelivery) -> bytes:
    """The body of a logged delivery as bytes (the host logs it parsed)."""
    return d.payload if isinstance(d.payload, bytes) else json.dumps(d.payload).encode("utf-8")


def _ago(seconds: float) -> str:
    return f"{seconds / 3600:.1f}h ago" if seconds >= 3600 else f"{seconds / 60:.0f}m ago"
