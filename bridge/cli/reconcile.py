"""`cibridge reconcile`: recover deliveries the bridge never received, now, from the hosts' hook
delivery logs and the watched branch heads and tags (what the dispatcher does every interval).

Input: the rules (with their API tokens), the store, `--source`, `--since`, `--dry-run`. Output:
a progress line per hook and repository, then what was found and what was done (or would be),
and the warnings; exit 1 when a host refused or could not be reached.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict

import click

from bridge.cli.common import default_state_dir, duration_option, load_or_exit, rules_option, state_option
from bridge.cli.stores import open_store
from bridge.dispatch.reconcile import Reconciler


@click.command()
@rules_option
@state_option
@click.option("--source", default=None, help="only this source (its name in rules.yaml)")
@click.option("--since", callback=duration_option, default=None,
              help="how far back the delivery logs are read: 30m, 24h, 3d (default "
                   "settings.reconcile.since, 24h; GitHub keeps 3 days, GitLab 7)")
@click.option("--dry-run", is_flag=True,
              help="say what would be redelivered or synthesized; ask nothing, store nothing")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text for people, json for scripts (progress lines go to stderr)")
def reconcile(rules_path, state_dir, source, since, dry_run, fmt):
    """Recover missed deliveries: failed ones in the hosts' delivery logs are redelivered, and
    watched branches and tags ahead of the deliveries get a synthesized push (`via: reconcile`)."""
    config = load_or_exit(rules_path)
    if source is not None and source not in config.sources:
        click.echo(f"error: no source '{source}' in {rules_path}", err=True)
        sys.exit(1)
    state_dir = state_dir or default_state_dir()
    store = open_store(config, state_dir)
    echo = (lambda line: click.echo(line, err=True)) if fmt == "json" else click.echo
    try:
        rec = Reconciler(config, store, progress=echo)
        if not rec.sources(source):
            click.echo("nothing to reconcile: no source has a reconcile: (or report:) token with "
                       "hooks: or watched repositories (a source's watch:, a rule's watch: true)",
                       err=True)
            sys.exit(1)
        report = rec.run(source=source, since=since, dry_run=dry_run)
    finally:
        store.close()
    if fmt == "json":
        click.echo(json.dumps({"dry_run": dry_run, **asdict(report)}, indent=2))
    else:
        _text(report, dry_run)
    if report.warnings:
        sys.exit(1)


def _text(report, dry_run: bool) -> None:
    for f in report.found:
        where = f"{f.repo} {f.ref}" if f.ref else f.repo
        click.echo(f"{f.source:16} {where:40} {f.reason:16} {f.action:16} {f.detail}")
    for w in report.warnings:
        click.echo(f"warning: {w}", err=True)
    done = len([f for f in report.found if f.action in ("redelivered", "ingested")])
    click.echo(f"{len(report.found)} found, " + ("nothing done (--dry-run)" if dry_run else
                                                 f"{done} recovered") + f"; {report.calls} API calls"
               + (f"; rate limited, wait {report.wait:.0f}s" if report.wait else ""))
