"""`cibridge explain`: a payload file -> normalize -> match, offline, with every rule's reason.

Input: a Config, a source name, raw body bytes and headers (`read_headers` takes them from a
file). Output: bridge.explain's JSON-able dict
`{"rules_version", "source", "provider", "event" | null, "events", "ignored" | null, "files",
"rules": [...], "matches": [...]}` (its shape is documented in the README: scripts read it; the
delivery page's /api/explain answers the same), with the mirror asked on --resolve-files, and
a text rendering of it. A delivery meaning several events (Bitbucket) lists them all in
`events`, each matched on its own in `matches`; `event`, `files` and `rules` are the first one's.
"""
from __future__ import annotations

import json
import re

from bridge.dispatch.changes import resolve_for_source
from bridge.dispatch.mirror import Mirrors
from bridge.errors import InvalidValue
from bridge.explain import explain_payload as explain_trace

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
    """bridge.explain's trace; with `resolve_files` a mirror in `state_dir` is asked for the
    changed files the payload does not prove."""
    resolve = None
    if resolve_files:
        def resolve(event, src):
            return resolve_for_source(event, Mirrors.for_settings(state_dir, config.settings), src)
    return explain_trace(config, source_name, body, headers=headers, event_name=event_name,
                         resolve=resolve)


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


def _pull_lines(e: dict) -> list[str]:
    """A pull request or a comment on one: number, action, branches, head, who."""
    who = e["author"] + (f" ({e['author_association']})" if e["author_association"] else "")
    head = f"build {e['sha'][:12]}" if e["sha"] else "head asked of the host by the dispatcher"
    lines = [f"event: {e['kind']} {e['repo']} #{e['number']} {e['action']} ({e['host_action'] or '-'}): "
             f"{e['head_ref'] or '?'} -> {e['base_ref'] or '?'} ({head}) by {who or '?'}"]
    flags = [f for f in ("fork", "draft", "merged") if e[f]]
    if flags:
        lines.append(f"       {', '.join(flags)}" + (f" (head repository {e['head_repo']})" if e["fork"] else ""))
    return lines


def _event_lines(e: dict, match: dict, version: str) -> list[str]:
    if e.get("number") is not None:
        lines = _pull_lines(e)
    else:
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
