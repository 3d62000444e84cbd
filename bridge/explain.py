"""The explain trace: a payload -> normalize -> match, offline, with every rule's reason; shared
by `cibridge explain` and the delivery page (web/ui), which stores nothing.

Input: a Config, a source name, raw body bytes, headers and an event name, and optionally a
`resolve(event, source)` that asks a mirror for the changed files (the CLI's --resolve-files; the
web never does). Output: the JSON-able dict `{"rules_version", "source", "provider", "event" |
null, "events", "ignored" | null, "files", "rules": [...], "matches": [...]}` (its shape is in
the README: scripts read it); a delivery meaning several events (Bitbucket) has each matched on
its own in `matches`, and `event`, `files` and `rules` are the first one's.
"""
from __future__ import annotations

from dataclasses import replace

from werkzeug.datastructures import Headers

from bridge.errors import BadPayload, UnknownSource
from bridge.events import Ignored
from bridge.payload_files import files_from_payload
from bridge.providers import events_of, get_provider
from bridge.rules import decide_paths


def explain_payload(config, source_name: str, body: bytes, *, headers=None, event_name=None,
                    resolve=None) -> dict:
    """The trace of `body` under `config`'s rules. Raises UnknownSource, BadPayload (no event
    name) and the provider's DeliveryErrors for a body it cannot read."""
    src = config.sources.get(source_name)
    if src is None:
        raise UnknownSource(f"unknown source '{source_name}'; sources: {', '.join(config.sources)}")
    provider = get_provider(src.provider)
    hdrs = Headers(headers or {})
    if event_name:
        hdrs[provider.EVENT_HEADER] = event_name
    if provider.EVENT_HEADER not in hdrs:
        raise BadPayload(f"no event name: pass --event or a --headers file with "
                         f"{provider.EVENT_HEADER}")
    delivery = provider.delivery_id(hdrs) or "explain"
    result = events_of(provider, hdrs, body, source=source_name, delivery_id=delivery)
    out = {"rules_version": config.version, "source": source_name, "provider": src.provider,
           "event": None, "events": [], "ignored": None, "files": None, "rules": [], "matches": []}
    if isinstance(result, Ignored):
        out["ignored"] = result.reason
        return out
    out["event"] = result[0].to_dict()
    out["events"] = [event.to_dict() for event in result]
    # Each event is matched on its own; `files` and `rules` repeat the first one's.
    out["matches"] = [_explain_event(config, src, event, resolve) for event in result]
    out.update(out["matches"][0])
    return out


def _explain_event(config, src, event, resolve) -> dict:
    """One event's `files` (where its changed files come from) and every rule's verdict."""
    verdicts = config.ruleset.explain(event)
    # The dispatcher's own chain: the same reason it would record, offline up to the mirror.
    resolution = files_from_payload(event)
    resolved = None         # the mirror's answer (--resolve-files), for the rules waiting on it
    if resolution.source == "unknown":
        if resolve is not None and any(v.needs_files for v in verdicts):
            resolution = resolved = resolve(event, src)
        else:
            resolution = replace(resolution, reason=f"{resolution.reason}; the dispatcher "
                                 "fetches them into its git mirror (--resolve-files does too)")
    out = {"files": {"source": resolution.source, "reason": resolution.reason,
                     "files": sorted(resolution.files) if resolution.files is not None else None},
           "rules": []}
    for v in verdicts:
        entry = {"name": v.rule, "matched": v.matched, "reason": v.reason,
                 "needs_files": v.needs_files,
                 "jobs": [{"target": j.target, "kind": j.kind, "request": j.request} for j in v.jobs]}
        if v.needs_files and resolved is not None:
            run, why = decide_paths(v.jobs[0].path_filter, resolved)
            entry.update(matched=run, reason=why, needs_files=False)
            if not run:
                entry["jobs"] = []
        out["rules"].append(entry)
    return out
