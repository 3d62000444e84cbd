"""`cibridge replay`: a stored delivery's builds queued again, re-matched or as they were.

Input: a delivery id (any unique beginning of it), the store in the state directory and, unless
--no-rematch, the current rules.yaml (valid; no secret read). Output: the verdicts and the ids of
the jobs queued; exit 1 when the delivery does not exist or cannot be queued.
"""
from __future__ import annotations

import sys
import time

import click

from bridge.cli.common import load_or_exit, rules_option, state_option
from bridge.cli.stores import open_operator_store, resolve_delivery_id
from bridge.events import Ignored
from bridge.jobs import Job
from bridge.providers import get_provider
from bridge.store.reads import stored_jobs


@click.command()
@rules_option
@state_option
@click.option("--no-rematch", is_flag=True,
              help="queue the delivery's stored jobs again as they were, without reading rules.yaml")
@click.argument("delivery_id")
def replay(rules_path, state_dir, no_rematch, delivery_id):
    """Queue a stored delivery's builds again: re-matched against the CURRENT rules (rules.yaml
    must be valid; no secret is read), or with --no-rematch its stored jobs as they were.

    DELIVERY_ID may be any unique beginning of the id."""
    store = open_operator_store(rules_path, state_dir)
    delivery_id = resolve_delivery_id(store, delivery_id)
    d = store.get_delivery(delivery_id)
    if d is None:
        click.echo(f"no delivery '{delivery_id}'", err=True)
        sys.exit(1)
    jobs = stored_jobs(d) if no_rematch else _rematched_jobs(rules_path, d)
    if not jobs:
        click.echo("the delivery had no jobs; nothing queued (without --no-rematch the current "
                   "rules decide)" if no_rematch else "no rule matches under the current rules; nothing queued")
        return
    try:
        ids = store.add_jobs(delivery_id, jobs, now=time.time())
    except (LookupError, ValueError) as exc:
        click.echo(f"cannot replay {delivery_id}: {exc}", err=True)
        sys.exit(1)
    click.echo(f"queued {len(ids)} job(s): {', '.join(map(str, ids))}")


def _rematched_jobs(rules_path, d: dict) -> list:
    """The jobs the current rules call for (printing every verdict); exits when ignored."""
    from werkzeug.datastructures import Headers
    config = load_or_exit(rules_path, resolve_secrets=False)    # matching reads no secret
    src = config.sources.get(d["source"])
    provider = get_provider(src.provider if src else d["provider"])
    result = provider.normalize(Headers(d["headers"]), bytes(d["body"]), source=d["source"],
                                delivery_id=d["delivery"])
    if isinstance(result, Ignored):
        click.echo(f"delivery {d['delivery']} is ignored by its provider: {result.reason}")
        sys.exit(0)
    verdicts = config.ruleset.match(result)
    for v in verdicts:
        click.echo(f"{'MATCH' if v.matched else 'no   '} {v.rule}: {v.reason}")
    return [Job(rule=j.rule, target=j.target, kind=j.kind, request=j.request,
                needs_files=j.needs_files, path_filter=j.path_filter)
            for v in verdicts if v.matched for j in v.jobs]
