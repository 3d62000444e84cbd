"""Operator commands: serve, web, dispatch, deliveries, replay, send, prune (retry: retry.py).

Input: command-line arguments, rules.yaml and the store in the state directory. Output: running
processes, or tables/JSON on stdout; exit 1 when the thing asked for does not exist or failed.
"""
from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path

import click

from bridge.cli.common import (DEFAULT_BIND, default_state_dir, glob_option, load_accepted_or_exit,
                               load_or_exit, log_options, open_operator_store, open_store, rules_option,
                               state_dir_callback, state_option)
from bridge.events import Ignored
from bridge.jobs import JOB_STATES, OUTCOMES, RERUN_KEY
from bridge.logs import setup
from bridge.policies import parse_duration
from bridge.providers import get_provider, host_view, sign_headers
from bridge.service.dispatcher import run_dispatcher
from bridge.service.listener import BindError, Listener
from bridge.service.supervisor import Supervisor
from bridge.service.web import run_web
from bridge.store import NewJob


def _state(state_dir):
    return state_dir or default_state_dir()


@click.command()
@rules_option
@state_option
@click.option("--bind", envvar="BRIDGE_BIND", default=DEFAULT_BIND, show_default=True,
              help="HOST:PORT (or unix:PATH) for the web workers (env BRIDGE_BIND); "
                   "port 0 takes a free one, printed at start")
@click.option("--workers", type=int, default=None, help="gunicorn workers (default settings.workers)")
@click.option("--no-dispatcher", is_flag=True, help="web workers only (same as `cibridge web`)")
@log_options
def serve(rules_path, state_dir, bind, workers, no_dispatcher):
    """Run the web workers (gunicorn) and the dispatcher together.

    Binds the port itself first (a busy port: exit 1 at once) and keeps it open while the web
    workers restart; ready (READY=1, the `listening on` line) once they answer /healthz on it."""
    setup()
    state_dir = _state(state_dir)
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    # Supervisor.run validates rules.yaml: a start on the last good rules if it is invalid.
    sys.exit(Supervisor(rules_path, state_dir, bind, workers=workers,
                        with_dispatcher=not no_dispatcher).run())


@click.command()
@rules_option
@state_option
@click.option("--bind", envvar="BRIDGE_BIND", default=DEFAULT_BIND, show_default=True,
              help="HOST:PORT or unix:PATH to listen on (env BRIDGE_BIND), or fd://N: a listening "
                   "socket inherited as file descriptor N (how `cibridge serve` hands over its port)")
@click.option("--workers", type=int, default=None,
              help="gunicorn worker processes (default settings.workers, else the gunicorn config's, else 2)")
@click.option("--threads", type=int, default=None, help="threads per worker (default the gunicorn config's)")
@click.option("--gunicorn-config", envvar="BRIDGE_GUNICORN_CONFIG",
              type=click.Path(dir_okay=False, exists=True), default=None,
              help="a gunicorn config file (deploy/gunicorn.conf.py)")
@log_options
def web(rules_path, state_dir, bind, workers, threads, gunicorn_config):
    """Run only the web workers (gunicorn): for hosts that split web and dispatcher.

    Starts on the rules last accepted (a reload, a start of `cibridge serve`), not on an edit of
    rules.yaml nobody reloaded: send SIGHUP (`systemctl reload`) to load the file."""
    setup()
    state_dir = _state(state_dir)
    if not bind.startswith("fd://"):
        # Bound here, before the rules are even read: a busy port is one line and exit 1 at
        # once (gunicorn would retry for 5 s, then exit with a traceback-like log).
        try:
            bind = Listener(bind).detach()
        except BindError as exc:
            click.echo(f"bridge: {exc}; nothing started", err=True)
            sys.exit(1)
    config = load_accepted_or_exit(rules_path, state_dir)
    open_store(config, state_dir).close()
    run_web(rules_path, state_dir, bind, workers=workers, threads=threads, config_file=gunicorn_config,
            config=config)


@click.command()
@rules_option
@state_option
@click.option("--concurrency", type=int, default=None, help="jobs at once (default settings)")
@log_options
def dispatch(rules_path, state_dir, concurrency):
    """Run a dispatcher alone: claims queued jobs and starts them on their targets.

    Starts on the rules last accepted (a reload, a start of `cibridge serve`), not on an edit of
    rules.yaml nobody reloaded: send SIGHUP (`systemctl reload`) to load the file."""
    setup()
    state_dir = _state(state_dir)
    config = load_accepted_or_exit(rules_path, state_dir)
    run_dispatcher(rules_path, state_dir, concurrency=concurrency, config=config)


def _store(rules_path, state_dir):
    """The store for the operator commands: no secret read, no validation (cli/common.py)."""
    return open_operator_store(rules_path, _state(state_dir))


def _ago(ts) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _delivery_id(store, prefix: str) -> str:
    """The one stored delivery id that is `prefix` or starts with it, or exit 1 naming the
    candidates."""
    found = store.delivery_ids(prefix)
    if len(found) == 1:
        return found[0]
    if not found:
        click.echo(f"no delivery '{prefix}'", err=True)
        sys.exit(1)
    more = " ..." if len(found) > 10 else ""
    click.echo(f"'{prefix}' is ambiguous: it starts {'more than 10' if more else len(found)} delivery ids: "
               f"{', '.join(found[:10])}{more}; give more of the id", err=True)
    sys.exit(1)


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
    store = _store(rules_path, state_dir)
    rows = store.list_deliveries(source=source, repo=repo, state=job_state, limit=limit)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    click.echo(f"{'DELIVERY':38} {'RECEIVED':19} {'REPO':24} {'REF':24} {'OUTCOME':9} JOBS")
    for r in rows:
        jobs = ", ".join(f"{j['rule']}:{j['state']}" for j in r.get("jobs", [])) or r.get("reason", "")
        jobs += f"  (via {r['via']})" if r.get("via") else ""
        click.echo(f"{r['delivery'][:38]:38} {_ago(r['received_at']):19} {str(r.get('repo') or '-')[:24]:24} "
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
    obj = {"rules_path": rules_path or obj["rules_path"], "state_dir": state_dir or obj["state_dir"],
           "fmt": fmt or obj["fmt"]}
    store = _store(obj["rules_path"], obj["state_dir"])
    delivery_id = _delivery_id(store, delivery_id)
    d = store.get_delivery(delivery_id)
    if d is None:
        click.echo(f"no delivery '{delivery_id}'", err=True)
        sys.exit(1)
    d = dict(d)
    d.pop("body", None)
    d["statuses"] = [{**s, **host_view(s)} for s in store.statuses_of(delivery_id)]

    def echo_statuses(job_id):
        for s in (s for s in d["statuses"] if s["job_id"] == job_id):
            answer = s["post_state"] + (f" ({s['answer']})" if s.get("answer") else "")
            click.echo(f"    status {s['host_state']:8} {s['context']}  \"{s['description']}\"  -> {answer}"
                       f"  attempts {s['attempts']}"
                       + (f"  {s['target_url']}" if s.get("target_url") else ""))
    if obj["fmt"] == "json":
        click.echo(json.dumps(d, indent=2, default=str))
        return
    ev = d.get("event") or {}
    click.echo(f"delivery {d['delivery']}  source {d['source']} ({d['provider']})  "
               f"received {_ago(d['received_at'])}  rules {d.get('rules_version')}")
    click.echo(f"outcome  {d['outcome']}" + (f": {d['reason']}" if d.get("reason") else ""))
    if ev:
        click.echo(f"event    {ev.get('kind')} {ev.get('repo')} {ev.get('ref')} "
                   f"{(ev.get('before') or '')[:12]}..{(ev.get('after') or '')[:12]} sha {ev.get('sha') or '- (deleted)'}")
    for v in d.get("verdicts") or []:
        click.echo(f"rule     {'MATCH' if v['matched'] else 'no   '} {v['rule']}: {v['reason']}")
    for j in d.get("jobs", []):
        click.echo(f"job {j['id']}  {j['rule']} -> {j['target']}  state {j['state']}  "
                   f"attempts {j.get('attempts', 0)}"
                   + (f"  {j['url']}" if j.get("url") else "")
                   + (f"  error: {j['last_error']}" if j.get("last_error") else ""))
        click.echo(f"    request {json.dumps(j.get('request'), ensure_ascii=False)}")
        detail = j.get("detail") or {}
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
        for a in j.get("history", []):
            what = a.get("error") or a.get("remote_id") or ""
            click.echo(f"    attempt {a.get('attempt')}  {_ago(a.get('finished_at'))}  {a.get('outcome')}"
                       f"  {what}")
        echo_statuses(j["id"])
    echo_statuses(None)     # rules skipped at match time (report_skipped)


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
    store = _store(rules_path, state_dir)
    delivery_id = _delivery_id(store, delivery_id)
    d = store.get_delivery(delivery_id)
    if d is None:
        click.echo(f"no delivery '{delivery_id}'", err=True)
        sys.exit(1)
    jobs = _stored_jobs(d) if no_rematch else _rematched_jobs(rules_path, d)
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


def _stored_jobs(d: dict) -> list:
    return [NewJob(rule=j["rule"], target=j["target"], kind=j["kind"],
                   request={k: v for k, v in j["request"].items() if k != RERUN_KEY},
                   needs_files=j["needs_files"], path_filter=j.get("path_filter"))
            for j in d.get("jobs", [])]


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
    return [NewJob(rule=j.rule, target=j.target, kind=j.kind, request=j.request,
                   needs_files=j.needs_files, path_filter=j.path_filter)
            for v in verdicts if v.matched for j in v.jobs]


@click.command()
@rules_option
@state_option
@click.option("--older-than", default="30d", show_default=True,
              help="age of the deliveries to delete: 30d, 12h, ...")
def prune(rules_path, state_dir, older_than):
    """Delete finished deliveries (and their jobs) older than the given age."""
    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than")
    store = _store(rules_path, state_dir)
    n = store.prune(time.time() - age)
    click.echo(f"pruned {n} deliveries older than {older_than}")


@click.command()
@rules_option
@click.option("--source", "source_name", required=True,
              help="source name from rules.yaml: its provider signs the payload with its first secret")
@click.option("--url", default=None, help="bridge base URL (default http://$BRIDGE_BIND)")
@click.option("--event", "event_name", default=None, help="event header value (default: push)")
@click.option("--headers", "headers_file", type=click.File("rb"), default=None,
              help="JSON file of extra headers")
@click.option("--delivery", default=None, help="delivery id to send (default: a fresh one)")
@click.argument("payload", type=click.File("rb"))
def send(rules_path, source_name, url, event_name, headers_file, delivery, payload):
    """Sign a payload with the source's first secret and POST it, as GitHub or GitLab would."""
    import requests
    config = load_or_exit(rules_path)
    src = config.sources.get(source_name)
    if src is None:
        click.echo(f"unknown source '{source_name}'; sources: {', '.join(config.sources)}", err=True)
        sys.exit(1)
    body = payload.read()
    headers = json.load(headers_file) if headers_file else {}
    headers.update(sign_headers(src.provider, body, src.secrets[0], event=event_name,
                                delivery=delivery or str(uuid.uuid4())))
    base = url or f"http://{os.environ.get('BRIDGE_BIND', DEFAULT_BIND)}"
    try:
        resp = requests.post(f"{base.rstrip('/')}/hooks/{source_name}", data=body, headers=headers,
                             timeout=30)
    except requests.RequestException as exc:
        click.echo(f"could not reach {base}: {exc.__class__.__name__}", err=True)
        sys.exit(1)
    click.echo(f"{resp.status_code} {resp.text.strip()}")
    sys.exit(0 if resp.ok else 1)
