"""`cibridge deliveries` and `cibridge deliveries show`: the stored deliveries, listed or one in full.

Input: filters or a delivery id (any unique beginning of it) and the store in the state directory
(no secret, no valid rules file). Output: a table or one delivery's event, verdicts, jobs,
attempts and commit statuses, as text or JSON; exit 1 when the delivery does not exist.
"""
from __future__ import annotations

import json
import sys
import time

import click

from bridge.cli.common import ago, glob_option, rules_option, state_dir_callback, state_option
from bridge.cli.stores import open_operator_store, operator_policies, resolve_delivery_id
from bridge.jobs import JOB_STATES, OUTCOMES
from bridge.providers import host_view


@click.group(invoke_without_command=True)
@rules_option
@state_option
@click.option("--source", default=None, help="only deliveries to this source (its name in rules.yaml)")
@click.option("--repo", default=None, callback=glob_option,
              help="only deliveries to these repositories: a glob as in rules.yaml (acme/*, **/api), "
                   "of any case")
@click.option("--state", "job_state", type=click.Choice(OUTCOMES + JOB_STATES), default=None,
              help="only deliveries with this outcome, or with a job in this state")
@click.option("--limit", default=50, show_default=True, help="show at most this many, newest first")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text for people, json for scripts")
@click.pass_context
def deliveries(ctx, rules_path, state_dir, source, repo, job_state, limit, fmt):
    """List recent deliveries: id, time, repo, ref, rules matched, job states.

    Reads only the store: no secret (but a secret reference in settings.database_url) and no
    valid rules file needed."""
    ctx.obj = {"rules_path": rules_path, "state_dir": state_dir, "fmt": fmt}
    if ctx.invoked_subcommand:
        return
    store = open_operator_store(rules_path, state_dir)
    rows = store.list_deliveries(source=source, repo=repo, state=job_state, limit=limit)
    _add_waiting(store, [j for r in rows for j in r.get("jobs", [])], rules_path, state_dir)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    _echo_table(rows)


def _add_waiting(store, jobs: list[dict], rules_path, state_dir) -> None:
    """Each queued job's "waiting" (why it has not started: the claim's reasons)."""
    queued = [j["id"] for j in jobs if j.get("state") == "queued"]
    if not queued:
        return
    reasons = store.waiting_reasons(queued, operator_policies(rules_path, state_dir), now=time.time())
    for j in jobs:
        if j["id"] in reasons:
            j["waiting"] = reasons[j["id"]]


def _echo_table(rows: list[dict]) -> None:
    click.echo(f"{'DELIVERY':38} {'RECEIVED':19} {'REPO':24} {'REF':24} {'OUTCOME':9} JOBS")
    for r in rows:
        jobs = ", ".join(f"{j['rule']}:{j['state']}" + (f" ({j['waiting']})" if j.get("waiting") else "")
                         for j in r.get("jobs", [])) or r.get("reason", "")
        jobs += f"  (via {r['via']})" if r.get("via") else ""
        click.echo(f"{r['delivery'][:38]:38} {ago(r['received_at']):19} {str(r.get('repo') or '-')[:24]:24} "
                   f"{str(r.get('ref') or '-')[:24]:24} {r['outcome'][:9]:9} {jobs}")


@deliveries.command("show")
@click.option("--rules", "rules_path", default=None, type=click.Path(dir_okay=False),
              help="as `cibridge deliveries --rules` (either place)")
@click.option("--state-dir", default=None, callback=state_dir_callback,
              help="as `cibridge deliveries --state-dir` (either place)")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default=None,
              help="as `cibridge deliveries --format` (either place)")
@click.argument("delivery_id")
@click.pass_obj
def deliveries_show(obj, rules_path, state_dir, fmt, delivery_id):
    """Everything about one delivery: event, verdicts, jobs, every attempt and commit status.

    DELIVERY_ID may be any unique beginning of the id. Each status shows the state as the git
    host got it (GitHub has no "running": it got "pending") and the host's answer."""
    # The group's options (`cibridge deliveries --rules X show ID`) unless given after `show`.
    rules_path, state_dir = rules_path or obj["rules_path"], state_dir or obj["state_dir"]
    store = open_operator_store(rules_path, state_dir)
    d = _shown_delivery(store, delivery_id)
    _add_waiting(store, d.get("jobs", []), rules_path, state_dir)
    if (fmt or obj["fmt"]) == "json":
        click.echo(json.dumps(d, indent=2, default=str))
        return
    _echo_delivery(d)


def _shown_delivery(store, prefix: str) -> dict:
    """The delivery `prefix` names, without its raw body, with its statuses as the host got them;
    or exit 1."""
    delivery_id = resolve_delivery_id(store, prefix)
    d = store.get_delivery(delivery_id)
    if d is None:
        click.echo(f"no delivery '{delivery_id}'", err=True)
        sys.exit(1)
    d = dict(d)
    d.pop("body", None)
    d["statuses"] = [{**s, **host_view(s)} for s in store.statuses_of(delivery_id)]
    return d


def _echo_delivery(d: dict) -> None:
    ev = d.get("event") or {}
    click.echo(f"delivery {d['delivery']}  source {d['source']} ({d['provider']})  "
               f"received {ago(d['received_at'])}  rules {d.get('rules_version')}")
    click.echo(f"outcome  {d['outcome']}" + (f": {d['reason']}" if d.get("reason") else ""))
    if ev:
        click.echo(f"event    {ev.get('kind')} {ev.get('repo')} {ev.get('ref')} "
                   f"{(ev.get('before') or '')[:12]}..{(ev.get('after') or '')[:12]} sha {ev.get('sha') or '- (deleted)'}")
    for v in d.get("verdicts") or []:
        click.echo(f"rule     {'MATCH' if v['matched'] else 'no   '} {v['rule']}: {v['reason']}")
    for j in d.get("jobs", []):
        _echo_job(j)
        _echo_statuses(d["statuses"], j["id"])
    _echo_statuses(d["statuses"], None)     # rules skipped at match time (report_skipped)


def _echo_job(j: dict) -> None:
    click.echo(f"job {j['id']}  {j['rule']} -> {j['target']}  state {j['state']}  "
               f"attempts {j.get('attempts', 0)}"
               + (f"  {j['url']}" if j.get("url") else "")
               + (f"  error: {j['last_error']}" if j.get("last_error") else ""))
    if j.get("waiting"):
        click.echo(f"    {j['waiting']}")
    if j.get("superseded_by"):
        click.echo(f"    superseded by job {j['superseded_by']} (a newer one of its group "
                   f"{j.get('policy_group') or ''})")
    click.echo(f"    request {json.dumps(j.get('request'), ensure_ascii=False)}")
    _echo_detail(j.get("detail") or {})
    for a in j.get("history", []):
        what = a.get("error") or a.get("remote_id") or ""
        click.echo(f"    attempt {a.get('attempt')}  {ago(a.get('finished_at'))}  {a.get('outcome')}"
                   f"  {what}")


def _echo_detail(detail: dict) -> None:
    """What the target said about a job's run: why, which paths, the exit code, the last lines."""
    if detail.get("reason"):
        click.echo(f"    reason  {detail['reason']}")
    if detail.get("paths"):
        click.echo(f"    paths   {detail['paths']}")
    if detail.get("exit_code") is not None:
        click.echo(f"    exit code {detail['exit_code']}")
    if detail.get("output"):
        click.echo("    output (last lines):")
        for line in str(detail["output"]).splitlines()[-10:]:
            click.echo(f"      {line}")


def _echo_statuses(statuses: list[dict], job_id) -> None:
    """The commit statuses of one job (None: of the rules skipped at match time)."""
    for s in (s for s in statuses if s["job_id"] == job_id):
        answer = s["post_state"] + (f" ({s['answer']})" if s.get("answer") else "")
        click.echo(f"    status {s['host_state']:8} {s['context']}  \"{s['description']}\"  -> {answer}"
                   f"  attempts {s['attempts']}"
                   + (f"  {s['target_url']}" if s.get("target_url") else ""))
