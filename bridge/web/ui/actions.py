"""Jobs needing attention, and the page's actions: retry one job, retry every job a filter finds,
replay a delivery (re-matched under today's rules, or its stored jobs as they were).

Input: a GET shows what would happen and asks; the POST of that confirmation (with its CSRF
token and `confirm=yes`) does it, through the store's operator functions (`find_jobs`,
`retry_jobs`, `add_jobs`: what `cibridge retry` and `replay` use). Output: the result page; every
action is logged with who did it.
"""
from __future__ import annotations

import logging
import time

from flask import current_app, render_template, request
from werkzeug.datastructures import Headers

from bridge.errors import DeliveryError
from bridge.events import Ignored
from bridge.globs import GlobError
from bridge.policies import parse_duration
from bridge.providers import events_of, get_provider
from bridge.store.operators import RETRYABLE_STATES
from bridge.store.reads import stored_jobs
from bridge.web.ingress import kept_headers
from bridge.web.ingress import _record as match_record
from bridge.web.ui import auth
from bridge.web.ui.base import bp, refused

log = logging.getLogger("bridge.ui")
SHOWN = 200


def _store():
    return current_app.extensions["bridge"].store


def _job_filters(args) -> dict:
    states = [s for s in args.getlist("state") if s] or ["dead"]
    bad = [s for s in states if s not in RETRYABLE_STATES]
    if bad:
        raise ValueError(f"only {' or '.join(RETRYABLE_STATES)} jobs are retried, not '{bad[0]}'")
    since = args.get("since", "").strip()
    return {"states": tuple(states), "since": time.time() - parse_duration(since) if since else None,
            "target": args.get("target", "").strip() or None, "rule": args.get("rule", "").strip() or None,
            "repo": args.get("repo", "").strip() or None}


@bp.get("/ui/attention")
def attention():
    """Dead and failed jobs, newest first, with retry (one, or all the filter finds)."""
    args = request.args
    try:
        filters = _job_filters(args) if args.getlist("state") else {**_job_filters(args),
                                                                    "states": RETRYABLE_STATES}
        found = _store().find_jobs(**filters)
    except (ValueError, GlobError) as exc:
        return refused(400, f"bad filter: {exc}")
    found.reverse()
    return render_template("attention.html", jobs=found[:SHOWN], total=len(found),
                           args={k: v for k, v in args.items() if v}, states=RETRYABLE_STATES)


@bp.route("/ui/jobs/<int:job_id>/retry", methods=["GET", "POST"])
def retry_job(job_id: int):
    found = _store().find_jobs(states=RETRYABLE_STATES, ids=[job_id])
    if request.method == "GET" or request.form.get("confirm") != "yes":
        if not found:
            return refused(404, f"job {job_id} does not exist or is not dead or failed")
        return render_template("confirm.html", what=f"Queue job {job_id} again?", jobs=found,
                               action_args={}, note=_retry_note(found))
    done = _store().retry_jobs([job_id], now=time.time(), states=RETRYABLE_STATES,
                               who=auth.current_user())
    _log("retried job %s", job_id, done=done)
    return render_template("done.html", title="Retry",
                           message=f"job {job_id} queued again" if done else
                           f"job {job_id} was left alone: it is no longer dead or failed",
                           jobs=done), 200 if done else 409


@bp.route("/ui/retry", methods=["GET", "POST"])
def retry_filtered():
    """Every job the filter finds (the attention page's filter), after a look at them."""
    args = request.values
    try:
        filters = _job_filters(args)
        found = _store().find_jobs(**filters)
    except (ValueError, GlobError) as exc:
        return refused(400, f"bad filter: {exc}")
    if request.method == "GET" or request.form.get("confirm") != "yes":
        return render_template("confirm.html", what=f"Queue these {len(found)} job(s) again?",
                               jobs=found[:SHOWN], total=len(found), note=_retry_note(found),
                               action_args={k: v for k, v in args.items()
                                            if k in ("since", "target", "rule", "repo") and v},
                               states=filters["states"])
    done = _store().retry_jobs([j["id"] for j in found], now=time.time(), states=filters["states"],
                               who=auth.current_user())
    _log("retried %d job(s) by filter %s", len(done), {k: v for k, v in filters.items() if v},
         done=done)
    left = len(found) - len(done)
    return render_template("done.html", title="Retry", jobs=done,
                           message=f"queued {len(done)} job(s) again"
                           + (f"; {left} left alone: they moved on meanwhile" if left else ""))


def _retry_note(found) -> str:
    return ("A failed job runs again as a new build; a dead one as the same job."
            if any(j["state"] == "failed" for j in found) else "")


@bp.route("/ui/deliveries/<path:delivery_id>/replay", methods=["GET", "POST"])
def replay(delivery_id: str):
    state = current_app.extensions["bridge"]
    d = state.store.get_delivery(delivery_id)
    if d is None:
        return refused(404, f"no delivery '{delivery_id}'")
    as_stored = request.values.get("as") == "stored"
    try:
        jobs = stored_jobs(d) if as_stored else rematched_jobs(state.config, d)
    except DeliveryError as exc:
        return refused(409, f"the delivery cannot be matched again: {exc.message}")
    if request.method == "GET" or request.form.get("confirm") != "yes":
        return render_template("replay.html", d=d, jobs=jobs, as_stored=as_stored)
    if not jobs:
        return render_template("done.html", title="Replay", jobs=[],
                               message="nothing queued: " + ("the delivery had no jobs" if as_stored
                                                             else "no rule matches under today's rules"))
    try:
        ids = state.store.add_jobs(delivery_id, jobs, now=time.time())
    except (LookupError, ValueError) as exc:
        return refused(409, f"cannot replay {delivery_id}: {exc}")
    _log("replayed delivery %s (%s): jobs %s", delivery_id, "as stored" if as_stored else "re-matched",
         ids, done=ids)
    return render_template("done.html", title="Replay", jobs=ids, delivery=delivery_id,
                           message=f"queued {len(ids)} job(s) for delivery {delivery_id}")


def rematched_jobs(config, d: dict) -> list:
    """The jobs today's rules call for, from the stored body and headers, as ingress matches
    them (no secret is needed: the delivery was verified when it arrived). A delivery that
    means several events (Bitbucket) was stored as one row each: this row's event is matched."""
    src = config.sources.get(d["source"])
    if src is None:
        return []
    provider = get_provider(src.provider)
    result = events_of(provider, Headers(d["headers"]), bytes(d["body"]), source=d["source"],
                       delivery_id=d["delivery"])
    if isinstance(result, Ignored):
        return []
    event = next((e for e in result if e.delivery_id == d["delivery"]), result[0])
    _, _, jobs, _ = match_record(config, src, d["source"], d["delivery"], bytes(d["body"]),
                                 kept_headers(Headers(d["headers"])), event)
    return jobs


def _log(message: str, *args, done) -> None:
    who = auth.current_user()
    log.info("ui: %s " + message, who, *args,
             extra={"user": who, "peer": request.remote_addr, "jobs": list(done)})
