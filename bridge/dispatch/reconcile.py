"""Reconcile: recovering deliveries the bridge never received, for every source with API access.
First each configured hook's delivery log (redeliver.py), then the watched branch heads and tags
(watch.py); the dispatcher runs it every `settings.reconcile.interval` on one instance at a time
(a store lease), `cibridge reconcile` on demand.

Input: the config, the store, the hosts' APIs. Output: a `Report` (what was found, what was done,
warnings), redeliveries asked of hosts, synthesized deliveries stored through the same ingest
(delivery id and content key dedupe), `bridge_recovered_deliveries_total` by source and reason.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from bridge.dispatch import redeliver, watch
from bridge.events import Ignored
from bridge.providers import content_key, get_provider
from bridge.providers.hostapi import ApiDenied, ApiError, ApiRateLimited, ApiUnavailable
from bridge.store import NewDelivery

log = logging.getLogger("bridge.reconcile")

LEASE = "reconcile"
#: How long a host's refusal (401/403/404) keeps a hook or repository out of the periodic runs.
DENIED_FOR = 6 * 3600.0


@dataclass
class Found:
    """One thing a run found: where, why (failed_delivery, branch_head, new_branch, new_tag,
    moved_tag) and what it did (redelivered, ingested, duplicate, no_match, would_*, given_up)."""
    source: str
    repo: str
    ref: str | None
    reason: str
    action: str
    detail: str = ""


@dataclass
class Report:
    found: list[Found] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    calls: int = 0
    wait: float | None = None       # a host's rate limit: seconds until it resets


class Run:
    """One source's part of a run: what redeliver.py and watch.py work with."""

    def __init__(self, rec: "Reconciler", source, client, *, since: float, dry_run: bool,
                 report: Report, budget: int):
        self.rec, self.source, self.client, self.report = rec, source, client, report
        self.store, self.config, self.now = rec.store, rec.config, rec.now
        self.provider = get_provider(source.provider)
        self.since, self.dry_run = since, dry_run
        self.redeliveries_left = budget
        self.marks: dict = {}
        self.asks: dict = self.store.get_mark(redeliver.asks_key(source.name)) or {}
        self.asks_done: set = set()

    def progress(self, line: str) -> None:
        self.rec.progress(line)

    def found(self, repo, ref, reason, action, detail="") -> None:
        self.report.found.append(Found(self.source.name, repo, ref, reason, action, detail))

    def count(self, reason: str) -> None:
        if self.rec.metrics is not None:
            self.rec.metrics.recovered(self.source.name, reason)

    def synthesize(self, repo: str, ref: str, *, before: str, after: str, sha: str, reason: str,
                   key_head: str | None = None) -> str:
        """Store the push the host never delivered; returns what happened. `key_head`: the first
        part of the content key of the repository's stored pushes ("github", "gitlab@HOST"):
        this push names the same git host, so it has the key the host's own delivery would have."""
        if self.dry_run:
            return "would_ingest"
        digest = hashlib.sha256(f"{self.source.name}|{repo}|{ref}|{before}|{after}".encode()).hexdigest()
        delivery = f"reconcile-{digest[:32]}"
        # The mirror tries the source's clone_url first, then this (on the source's clone_hosts).
        host = key_head.split("@", 1)[1] if key_head and "@" in key_head else \
            getattr(self.provider, "PUBLIC_HOST", None) if key_head else None
        clone = (f"https://{host}/{repo}.git" if host else
                 self.provider.clone_url(self.source.reconcile.api_url, repo))
        headers, body = self.provider.synthesize_push(repo=repo, ref=ref, before=before, after=after,
                                                      sha=sha, clone=clone, delivery=delivery)
        return self._ingest(delivery, headers, body, reason)

    def ingest_logged(self, guid: str, d) -> str:
        """A logged delivery's payload through normalize and ingest (no resend on this host)."""
        return self._ingest(guid, safe_headers(self.provider, d.headers or {}), redeliver.logged_body(d),
                            "failed_delivery")

    def _ingest(self, delivery: str, headers: dict, body: bytes, reason: str) -> str:
        result = self.provider.normalize(headers, body, source=self.source.name, delivery_id=delivery)
        record, jobs = record_for(self.config, self.source, delivery, headers, body, result, self.now())
        ingested = self.store.ingest(record, jobs)
        if ingested.duplicate_of or ingested.content_duplicate_of:
            return "duplicate"
        self.count(reason)
        log.info("recovered %s %s (%s): %d job(s)", getattr(result, "repo", "-"),
                 getattr(result, "ref", "-"), reason, len(jobs),
                 extra={"delivery": ingested.delivery, "source": self.source.name})
        return "ingested" if jobs else record.outcome


def safe_headers(provider, headers: dict) -> dict:
    """A logged request's headers as a stored delivery keeps them: the host's identification
    headers only (a hook's custom headers may carry credentials), never a token or signature."""
    dropped = {h.lower() for h in provider.SECRET_HEADERS}     # header names, not values
    return {k: str(v)[:512] for k, v in headers.items()
            if k.lower() not in dropped and (k.lower() in ("content-type", "user-agent", "idempotency-key")
                                            or k.lower().startswith(provider.KEEP_PREFIXES))}


def record_for(config, src, delivery: str, headers: dict, body: bytes, result, now: float):
    """The delivery to store (`via: reconcile`) and its jobs: `result` matched against the rules,
    with the content key ingress gives a push."""
    if isinstance(result, Ignored):
        return NewDelivery(source=src.name, provider=src.provider, delivery_id=delivery, received_at=now,
                           headers=headers, body=body, event=None, outcome="ignored",
                           reason=result.reason, verdicts=[], rules_version=config.version,
                           content_key=None, via="reconcile"), []
    verdicts = config.ruleset.match(result)
    jobs = [j for v in verdicts if v.matched for j in v.jobs]
    matched = [v.rule for v in verdicts if v.matched]
    record = NewDelivery(
        source=src.name, provider=src.provider, delivery_id=delivery, received_at=now,
        headers=headers, body=body, event=result,
        outcome="matched" if matched else "no_match",
        reason="recovered by reconcile" + ("" if matched else "; no rule matched"),
        verdicts=[v.to_dict() for v in verdicts], rules_version=config.version,
        content_key=content_key(result), via="reconcile")
    return record, jobs


class Reconciler:
    """Runs reconcile over the sources (see the module docstring). `denied` remembers the hosts'
    refusals across runs of one process: each is warned about once, then left alone for
    DENIED_FOR seconds instead of being asked again every interval."""

    def __init__(self, config, store, *, metrics=None, now: Callable[[], float] = time.time,
                 progress: Callable[[str], None] | None = None):
        self.config, self.store, self.metrics, self.now = config, store, metrics, now
        self.progress = progress or (lambda line: log.info("%s", line))
        self.denied: dict[tuple, float] = {}

    def sources(self, only: str | None = None) -> list:
        """Sources reconcile can work on: with API access and hooks or watches."""
        watched = {w.source for w in self.config.watches}
        return [s for name, s in self.config.sources.items()
                if (only is None or name == only) and s.reconcile is not None
                and (s.reconcile.hooks or name in watched)
                and hasattr(get_provider(s.provider), "Reconcile")]

    def run(self, *, source: str | None = None, since: float | None = None,
            dry_run: bool = False) -> Report:
        report = Report()
        policy = self.config.settings.reconcile
        since = self.now() - (since if since is not None else policy.since)
        for src in self.sources(source):
            client = get_provider(src.provider).Reconcile(src.reconcile.api_url, src.reconcile.token,
                                                          timeout=src.reconcile.timeout, now=self.now)
            run = Run(self, src, client, since=since, dry_run=dry_run, report=report,
                      budget=policy.max_redeliveries)
            try:
                self._source(run)
            except ApiRateLimited as exc:
                report.wait = max(report.wait or 0.0, exc.wait or 60.0)
                self._warn(report, None, f"source '{src.name}': rate limited by the host ({exc.message}); "
                                         f"the rest waits {report.wait:.0f}s")
            finally:
                report.calls += client.calls
                client.close()
                if not dry_run:
                    self._keep(run)
        return report

    def _source(self, run: Run) -> None:
        src = run.source
        for hook in src.reconcile.hooks:
            self._guarded(run, ("hook", src.name, hook.name), hook.name,
                          lambda hook=hook: redeliver.recover_hook(run, hook))
        specs: dict[str, list] = {}
        for w in self.config.watches:
            if w.source == src.name:
                specs.setdefault(w.repo, []).append(w)
        if not specs:
            return
        stored = self.store.stored_ids(run.asks)
        waiting, org = redeliver.pending_repos(run.asks, stored, self.now())
        for repo, repo_specs in specs.items():
            self._guarded(run, ("repo", src.name, repo.lower()), repo,
                          lambda repo=repo, repo_specs=repo_specs: watch.watch_repo(
                              run, repo, repo_specs, waiting=org or repo.lower() in waiting))

    def _guarded(self, run: Run, key: tuple, what: str, step) -> None:
        """One hook or repository: a refusal is warned about once and then left alone; a host
        that does not answer is tried again at the next run."""
        if self.denied.get(key, 0) > self.now():
            run.progress(f"{run.source.name} {what}: skipped (the host refused the token earlier)")
            return
        try:
            step()
        except ApiDenied as exc:
            self.denied[key] = self.now() + DENIED_FOR
            scopes = getattr(run.provider, "RECONCILE_SCOPES", "")
            hint = (" (the hook id is wrong, or the token's user cannot see it: GitHub answers 404 "
                    "without admin access)") if exc.status == 404 else ""
            self._warn(run.report, run.source.name,
                       f"source '{run.source.name}' {what}: the host refused: {exc.message}{hint}; "
                       f"the token needs {scopes}. Not asked again for {DENIED_FOR / 3600:.0f}h "
                       "(or until the dispatcher restarts)")
        except ApiUnavailable as exc:
            self._warn(run.report, run.source.name,
                       f"source '{run.source.name}' {what}: {exc.message}; tried again next run")
        except ApiError as exc:
            if isinstance(exc, ApiRateLimited):
                raise
            self._warn(run.report, run.source.name, f"source '{run.source.name}' {what}: {exc.message}")

    def _warn(self, report: Report, source, message: str) -> None:
        report.warnings.append(message)
        log.warning("%s", message, extra={"source": source})

    def _keep(self, run: Run) -> None:
        """The run's marks, and the redeliveries it asked, in the store; redelivered deliveries
        that arrived are marked `via: redelivery`."""
        if run.asks:
            stored = self.store.stored_ids(run.asks)
            self.store.mark_via(stored, "redelivery")
            now = self.now()
            run.marks[redeliver.asks_key(run.source.name)] = {
                g: a for g, a in run.asks.items()
                if g not in stored and now - float(a.get("at") or 0) < 4 * 86400}
        self.store.set_marks(run.marks, now=self.now())


class Periodic:
    """The dispatcher's reconcile: every `settings.reconcile.interval`, on whichever instance
    holds the store lease "reconcile" (taken for one interval and not given back, so the
    instances together run it once per interval). `config()` gives the current rules."""

    def __init__(self, config: Callable, store, owner: str, *, metrics=None,
                 now: Callable[[], float] = time.time):
        self.config, self.store, self.owner, self.metrics, self.now = config, store, owner, metrics, now
        self.next_at = 0.0
        self._reconciler: Reconciler | None = None

    def tick(self) -> Report | None:
        config = self.config()
        policy = config.settings.reconcile
        now = self.now()
        if not policy.enabled or now < self.next_at:
            return None
        self.next_at = now + policy.interval
        rec = self._reconciler
        if rec is None or rec.config is not config:
            denied = rec.denied if rec is not None else {}
            rec = self._reconciler = Reconciler(config, self.store, metrics=self.metrics, now=self.now,
                                                progress=lambda line: log.debug("%s", line))
            rec.denied = denied
        if not rec.sources():
            return None
        if not self.store.take_lease(LEASE, self.owner, policy.interval, now=now):
            return None
        report = rec.run()
        if report.wait:
            self.next_at = max(self.next_at, now + report.wait)
        if report.found:
            log.info("reconcile: %d found (%s)", len(report.found),
                     ", ".join(sorted({f"{f.reason}:{f.action}" for f in report.found})))
        return report

    def loop(self, stop: threading.Event, poll: float = 1.0) -> None:
        """Tick until `stop` is set (the dispatcher's reconcile thread)."""
        while not stop.wait(poll):
            try:
                self.tick()
            except Exception:   # noqa: BLE001 - a failed run must not end reconciling
                log.error("reconcile run failed", exc_info=True)
