"""The `cibridge` command line (click, as Flask uses): check, explain, serve, dispatch and the operator commands.

Input: arguments and the BRIDGE_* environment. Output: exit status 0 on success, 1 on a
reported problem, 2 on a usage error; human text by default, JSON where `--format json` says so.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from bridge import __version__
from bridge.cli import db, deliveries, mirrors, prune, reconcile, replay, retry, run, send
from bridge.cli.common import (DEFAULT_RULES, default_state_dir, load_or_exit, log_options, open_store,
                               resolve_delivery_id, rules_option, state_option)
from bridge.cli.explain import MAX_HEADERS_FILE, explain_payload, read_headers, render_text
from bridge.config import secrets as secret_refs
from bridge.config.load import read_rules_text
from bridge.config.schema import rules_schema
from bridge.config.yamlload import load
from bridge.errors import BridgeError, TargetError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="cibridge")
@log_options
def cli():
    """bridge: webhook bridge from git pushes to CI builds."""


@cli.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--online", is_flag=True, help="also ask each target whether the jobs/projects exist")
@click.option("--no-secrets", is_flag=True,
              help="do not read secrets (for a rules repository's CI, which holds none): references "
                   "are checked for syntax only and a missing secret is no problem")
def check(file, online, no_secrets):
    """Validate rules.yaml (every problem at once, with its line). Exit 0 if valid, 1 if not."""
    path = file or os.environ.get("BRIDGE_RULES") or DEFAULT_RULES
    if online and no_secrets:
        raise click.UsageError("--online needs the targets' secrets: it cannot go with --no-secrets")
    config = _load_or_exit(path, resolve_secrets=not no_secrets)
    click.echo(f"{path}: OK ({len(config.sources)} sources, {len(config.targets)} targets, "
               f"{len(config.rules)} rules; version {config.version})")
    if no_secrets:
        click.echo("secrets not read (--no-secrets): references checked for syntax only; "
                   "a secret that is missing on the host still stops the start there")
    if online:
        _report_online(config)


def _report_online(config):
    """The online problems on stdout after the OK line, in order (one stream: a pipe or a log
    keeps them together), then a summary; exit 1 if there is any."""
    problems = online_problems(config)
    for p in problems:
        click.echo(p)
    if problems:
        click.echo(f"online check: {len(problems)} problem(s)")
        sys.exit(1)
    click.echo("online check: every target answered and every job/project is there")


def _load_or_exit(rules_path, *, resolve_secrets: bool):
    """load_or_exit for check and explain: optionally reading no secret (explain verifies none),
    and pointing at --no-secrets when only unreadable secrets failed a check."""
    def hint(problems):
        if resolve_secrets and all(": secret ${" in p for p in problems):
            return ("(only secrets are missing: `cibridge check --no-secrets` checks a rules file "
                    "on a machine that holds none, such as a rules repository's CI)")
        return None
    return load_or_exit(rules_path, resolve_secrets=resolve_secrets, hint=hint)


def online_problems(config) -> list[str]:
    problems = []
    targets = config.build_targets()
    rules_file = os.path.basename(config.path)
    for name, target in targets.items():
        runs = [(r.name, r.line, r.run) for r in config.rules if r.target == name]
        if not runs:
            continue
        try:
            problems.extend(target.check_online(runs, rules_file=rules_file))
        except TargetError as exc:
            problems.append(f"target '{name}': {exc}")
        finally:
            target.close()
    return problems


@cli.command()
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
    config = load_or_exit(rules_path) if resolve_files else _load_or_exit(rules_path, resolve_secrets=False)
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
    from dataclasses import replace
    return replace(config, settings=replace(config.settings, database_url=url))
@cli.command()
def schema():
    """Print the JSON Schema of rules.yaml (editor completion; `cibridge check` stays the judge).

    Save it beside the rules (`cibridge schema > rules.schema.json`) and point the file at it with
    a first line `# yaml-language-server: $schema=rules.schema.json`."""
    click.echo(json.dumps(rules_schema(), indent=2, ensure_ascii=False))


def _add_commands():
    """Commands that live in their own modules (one module per area)."""
    for cmd in (run.serve, run.web, run.dispatch, deliveries.deliveries, replay.replay,
                retry.retry, send.send, prune.prune, mirrors.mirrors, db.db, reconcile.reconcile):
        cli.add_command(cmd)


_add_commands()


def main():
    cli(prog_name="cibridge")


