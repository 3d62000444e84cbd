"""`cibridge explain`: a payload file -> normalize -> match, offline, with every rule's reason.

Input: a Config, a source name, raw body bytes and headers (`read_headers` takes them from a
file). Output: a JSON-able dict
`{"rules_version", "source", "provider", "event" | null, "events", "ignored" | null, "files",
"rules": [...], "matches": [...]}` (its shape is documented in the README: scripts read it) and a
text rendering of it. A delivery meaning several events (Bitbucket) lists them all in `events`,
each matched on its own in `matches`; `event`, `files` and `rules` are the first one's.
"""
from __future__ import annotations

import json
import re
from dataclasses import replace

from werkzeug.datastructures import Headers

from bridge.dispatch.changes import resolve_for_source
from bridge.dispatch.files import files_from_payload
from bridge.dispatch.mirror import Mirrors
from bridge.errors import BadPayload, InvalidValue, UnknownSource
from bridge.events import Ignored
from bridge.providers import events_of, get_provider
from bridge.rules import decide_paths

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")     # RFC 9110 token
#: Lines GitHub's "Recent Deliveries" shows next to the headers; copied along, they are skipped.
_NOT_HEADERS = ("request url", "request method")
MAX_HEADERS_FILE = 1 << 20


def read_headers(data: bytes) -> dict[str, str]:
    """Request headers from a file: a JSON object `{"X-GitHub-Event": "push", ...}` or
    `Name: value` lines (as GitHub's Recent Deliveries and GitLab's Recent events show them).
    Raises InvalidValue with a message for the user on anything else."""
    if len(data) > MAX_HEADERS_FILE:
        raise InvalidValue(f"the headers file is larger than {MAX_HEADERS_FILE} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidValue("the headers file is not UTF-8 text") from None
    if text.lstrip().startswith(("{", "[")):
        return _json_headers(text)
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if name.lower() in _NOT_HEADERS:
            continue
        if not colon or not _HEADER_NAME.match(name):
            raise InvalidValue(f"line {number}: expected 'Name: value' (a header name, a colon, its "
                             f"value), not {line.strip()[:60]!r}; or give a JSON object of headers")
        headers[name] = value.strip()
    return headers


def _json_headers(text: str) -> dict[str, str]:
    try:
        data = json.loads(text)
    except RecursionError:
        raise InvalidValue("the headers file is not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise InvalidValue(f"the headers file is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidValue("the headers file holds a JSON list: give a JSON object "
                         "of headers, {\"X-GitHub-Event\": \"push\", ...}, or 'Name: value' lines")
    if data and all(isinstance(v, dict) for v in data.values()):
        raise InvalidValue("the headers file maps names to sets of headers (as shared/payloads/"
                         "headers.json does): give one set, {\"X-GitHub-Event\": \"push\", ...}")
    headers = {}
    for name, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InvalidValue(f"header {name!r}: the value must be a string, not {json.dumps(value)[:60]}")
        if not _HEADER_NAME.match(name):
            raise InvalidValue(f"{name!r} is not a header name")
        value = str(value)
        if any(c in value for c in "\r\n\0") or not _encodes(value):
            raise InvalidValue(f"header {name!r}: the value holds a line break, a NUL or a lone surrogate")
        headers[name] = value
    return headers


def _encodes(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def explain_payload(config, source_name: str, body: bytes, *, headers=None, event_name=None,
                    resolve_files=False, state_dir="var") -> dict:
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
    out["matches"] = [_explain_event(config, src, event, resolve_files, state_dir) for event in result]
    out.update(out["matches"][0])
    return out


def _explain_event(config, src, event, resolve_files: bool, state_dir) -> dict:
    """One event's `files` (where its changed files come from) and every rule's verdict."""
    verdicts = config.ruleset.explain(event)
    # The dispatcher's own chain: the same reason it would record, offline up to the mirror.
    resolution = files_from_payload(event)
    resolved = None         # the mirror's answer (--resolve-files), for the rules waiting on it
    if resolution.source == "unknown":
        if resolve_files and any(v.needs_files for v in verdicts):
            resolution = resolved = resolve_for_source(
                event, Mirrors.for_settings(state_dir, config.settings), src)
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


def render_text(result: dict) -> str:
    lines = []
    stored = result.get("delivery")
    if stored:     # `cibridge explain --delivery`: what happened then, explained under today's rules
        lines.append(f"delivery: {stored['delivery']} (source {result['source']}): {stored['outcome']}"
                     + (f": {stored['reason']}" if stored.get("reason") else "")
                     + f" under rules {stored['rules_version']}")
    if result["ignored"]:
        return "\n".join(lines + [f"ignored: {result['ignored']}"])
    matches = result.get("matches") or [{"files": result["files"], "rules": result["rules"]}]
    for e, match in zip(result.get("events") or [result["event"]], matches):
        lines += _event_lines(e, match, result["rules_version"])
    return "\n".join(lines)


def _event_lines(e: dict, match: dict, version: str) -> list[str]:
    lines = [f"event: {e['kind']} {e['repo']} {e['ref']} {e['before'][:8]}..{e['after'][:8]} "
             + (f"(build {e['sha'][:12]})" if e["sha"] else "(no commit to build: the ref was deleted)")
             + f" by {e['pusher'] or '?'}"]
    flags = [f for f in ("created", "deleted", "forced") if e[f]]
    if flags:
        lines.append(f"       {', '.join(flags)}")
    lines.append(f"       {len(e['commits'])} commit(s) in the payload"
                 + ("" if e["commits_complete"] else " (the list may be incomplete)"))
    files = match["files"]
    if files:
        shown = files["files"]
        lines.append(f"files: {files['source']}: {files['reason']}"
                     + (f" ({len(shown)} file(s))" if shown is not None else ""))
    lines.append(f"rules (version {version}):")
    for r in match["rules"]:
        mark = "MATCH " if r["matched"] else "no    "
        lines.append(f"  {mark} {r['name']}: {r['reason']}")
        for j in r["jobs"]:
            lines.append(f"           -> {j['target']} ({j['kind']}): {j['request']}")
    return lines
