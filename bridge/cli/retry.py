"""`cibridge retry`: dead or failed jobs queued again, by id or in bulk by filter, after a look.

Input: job ids or filters (state, age, target, rule, repository), the store in the state
directory (no secret, no valid rules file). Output: the jobs found, a question on a terminal
(or --yes), and the count queued; exit 1 when nothing could be queued as asked.
"""
from __future__ import annotations

import sys
import time

import click

from bridge.cli.common import (ago, default_state_dir, duration_option, glob_option, rules_option,
                               state_option)
from bridge.cli.stores import open_operator_store
from bridge.store.operators import RETRYABLE_STATES


@click.command()
@rules_option
@state_option
@click.argument("job_ids", nargs=-1, type=int)
@click.option("--state", "states", multiple=True, type=click.Choice(RETRYABLE_STATES),
              help="with filters: jobs in this state (repeatable; default dead). failed: the build "
                   "ran and failed, and runs again as a new build")
@click.option("--since", callback=duration_option, default=None,
              help="only jobs that failed or died within this long: 30m, 1h, 2d")
@click.option("--target", default=None, help="only jobs of this target (its name in rules.yaml)")
@click.option("--rule", default=None, callback=glob_option, help="only jobs of these rules (a glob)")
@click.option("--repo", default=None, callback=glob_option,
              help="only jobs of deliveries to these repositories (a glob, of any case)")
@click.option("--yes", "-y", is_flag=True,
              help="queue the jobs the filters find without asking (required without a terminal)")
def retry(rules_path, state_dir, job_ids, states, since, target, rule, repo, yes):
    """Queue dead or failed jobs again: the given JOB_IDS, or every job the filters find
    (`--state failed --since 1h --target local`), after showing them and asking.

    A dead job (never accepted, or given up on) runs again as the same job; a failed one (its
    build ran and failed) as a new build of the same job."""
    filters = bool(states or since is not None or target or rule or repo)
    if not job_ids and not filters:
        raise click.UsageError("give job ids, or filters such as --state failed --since 1h "
                               "--target local")
    store = open_operator_store(rules_path, state_dir or default_state_dir())
    now = time.time()
    if not filters:
        _retry_ids(store, job_ids, now)
        return
    found = store.find_jobs(states=states or ("dead",), ids=job_ids or None,
                            since=None if since is None else now - since, target=target, rule=rule,
                            repo=repo)
    which = " or ".join(states or ("dead",))
    if not found:
        click.echo(f"no {which} job matches; nothing queued")
        return
    for j in found[:20]:
        click.echo(f"job {j['id']}  {j['rule']} -> {j['target']}  {j['state']}  {ago(j['updated_at'])}  "
                   f"{j.get('repo') or '-'} {j.get('ref') or '-'}"
                   + (f"  error: {j['last_error'][:80]}" if j.get("last_error") else ""))
    if len(found) > 20:
        click.echo(f"... and {len(found) - 20} more")
    if not yes:
        if not sys.stdin.isatty():
            click.echo(f"{len(found)} {which} job(s) match; there is no terminal to confirm on: "
                       "add --yes to queue them again", err=True)
            sys.exit(1)
        click.confirm(f"Queue these {len(found)} {which} job(s) again?", abort=True)
    done = store.retry_jobs([j["id"] for j in found], now=time.time(), states=states or ("dead",))
    click.echo(f"queued {len(done)} job(s) again")
    if len(done) < len(found):
        click.echo(f"{len(found) - len(done)} job(s) left alone: they moved on meanwhile")


def _retry_ids(store, job_ids, now: float) -> None:
    refused = []
    for job_id in job_ids:
        if store.retry_job(job_id, now=now):
            click.echo(f"job {job_id} queued again")
        else:
            refused.append(job_id)
            click.echo(f"job {job_id} does not exist or is not dead or failed", err=True)
    if refused:
        sys.exit(1)
