"""`cibridge explain`: a payload file (or a stored delivery) -> normalize -> match, offline, with
every rule's reason.

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
import os
import re
import sys
from dataclasses import replace
from pathlib import Path

import click

from bridge.cli.common import (default_state_dir, load_or_exit, load_rules_or_exit, rules_option,
                               state_option)
from bridge.cli.stores import open_store, resolve_delivery_id
from bridge.config import secrets as secret_refs
from bridge.config.load import read_rules_text
from bridge.config.yamlload import load
from bridge.dispatch.changes import resolve_for_source
from bridge.dispatch.mirror import Mirrors
from bridge.errors import BridgeError, InvalidValue
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


@click.command()
@rules_option
@click.option("--source", "source_name", default=None,
              help="source name from rules.yaml (the one whose URL received the payload)")
@click.option("--event", "event_name", default=None,
              help="the event header's value: push, ping, 'Push Hook', 'Tag Push Hook', 'System Hook'")
@click.option("--headers", "headers_file", type=click.File("rb"), default=None,
              help="file of request headers: 'Name: value' lines (as GitHub's Recent Deliveries "
                   "shows them) or a JSON object {\"X-GitHub-Event\": \"push\", ...}")
@click.option("--delivery", "delivery_id", default=None,
              help="explain a delivery the bridge stored (its raw body and headers, from the "
                   "state directory's database) instead of a PAYLOAD file; ID may be any unique "
                   "beginning of the id")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              help="text for people; json for scripts (shape in the README)")
@click.option("--resolve-files", is_flag=True,
              help="compute changed files as the dispatcher would (fetches into the git mirror)")
@state_option
@click.argument("payload", type=click.File("rb"), required=False)
def explain(rules_path, source_name, event_name, headers_file, delivery_id, fmt, resolve_files,
            state_dir, payload):
    """Run normalize -> match offline on a payload and say, for every rule, why it matches or not.

    PAYLOAD is a webhook body saved to a file (with --source); or --delivery ID explains one
    the bridge received (ID may be any unique beginning of the id), under the current rules.
    Reads no webhook secret (nothing is verified); --resolve-files reads them, for clone_token."""
    if delivery_id is not None and (payload is not None or headers_file or event_name or source_name):
        raise click.UsageError("--delivery explains a stored delivery: it takes no PAYLOAD, "
                               "--source, --headers or --event")
    if delivery_id is None and (payload is None or source_name is None):
        raise click.UsageError("give a PAYLOAD file and --source, or --delivery ID")
    config = load_or_exit(rules_path) if resolve_files else load_rules_or_exit(rules_path, resolve_secrets=False)
    state_dir = state_dir or default_state_dir()
    stored = None
    headers = {}
    if delivery_id is not None:
        stored = _stored_delivery(config, state_dir, delivery_id)
        source_name, headers, body = stored["source"], dict(stored["headers"] or {}), bytes(stored["body"])
    else:
        if headers_file:
            try:
                headers = read_headers(headers_file.read(MAX_HEADERS_FILE + 1))
            except BridgeError as exc:
                click.echo(f"error: --headers {headers_file.name}: {exc}", err=True)
                sys.exit(1)
        body = payload.read()
    try:
        result = explain_payload(config, source_name, body, headers=headers,
                                 event_name=event_name, resolve_files=resolve_files, state_dir=state_dir)
    except BridgeError as exc:
        click.echo(f"error: {exc.args[0] if exc.args else exc}", err=True)
        sys.exit(1)
    if stored is not None:
        result = {"delivery": {key: stored.get(key) for key in
                               ("delivery", "received_at", "outcome", "reason", "rules_version")},
                  **result}
    if fmt == "json":
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        click.echo(render_text(result))


def _stored_delivery(config, state_dir, delivery_id) -> dict:
    """The stored delivery `delivery_id` names (any unique beginning of its id; as `deliveries
    show`), with its raw body and kept headers, or exit 1 saying why not."""
    url = _database_url(config, state_dir)
    db = Path(state_dir).resolve() / "bridge.db"
    if url == f"sqlite:///{db}" and not db.exists():
        click.echo(f"error: no database in the state directory {state_dir} (give --state-dir "
                   "or BRIDGE_STATE_DIR)", err=True)
        sys.exit(1)
    store = open_store(_with_database_url(config, url), state_dir, create=False)
    try:
        delivery_id = resolve_delivery_id(store, delivery_id, lead="error: ",
                                          where=f" in the store ({state_dir})")
        found = store.get_delivery(delivery_id)
    finally:
        store.close()
    if found is None:
        click.echo(f"error: no delivery '{delivery_id}' in the store ({state_dir})", err=True)
        sys.exit(1)
    if found["source"] not in config.sources:
        click.echo(f"error: delivery '{delivery_id}' came to source '{found['source']}', which "
                   f"{os.path.basename(config.path)} no longer has", err=True)
        sys.exit(1)
    return found


def _database_url(config, state_dir) -> str:
    """The store's URL. Loaded without secrets, a `database_url` given as a secret reference is
    read on its own (it is no webhook secret)."""
    if config.secrets_resolved or config.settings.database_url:
        return config.database_url(state_dir)
    try:
        doc = load(read_rules_text(config.path))
        settings = doc.get("settings") if isinstance(doc, dict) else None
        ref = settings.get("database_url") if isinstance(settings, dict) else None
        if secret_refs.is_reference(ref):
            return secret_refs.resolve(ref, os.environ, os.path.dirname(os.path.abspath(config.path)))
    except BridgeError as exc:
        click.echo(f"error: settings.database_url: {exc}", err=True)
        sys.exit(1)
    return config.database_url(state_dir)


def _with_database_url(config, url):
    return replace(config, settings=replace(config.settings, database_url=url))
