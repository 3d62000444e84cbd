"""The read pages: the deliveries list (filters, keyset pages, the 24-hour chart, the rules in
force; refused deliveries among them), one delivery (event, stored verdicts, today's explain
trace, jobs with attempts and statuses, headers and body) and one refusal (what little is kept).

Input: GET requests with filters in the query string. Output: HTML from the templates; 400 for
a filter that does not parse, 404 for an unknown delivery. Reads only the store and the config.
"""
from __future__ import annotations

import json
import math
import os
import time

from flask import current_app, render_template, request

from bridge.config.snapshot import read_status
from bridge.errors import BridgeError, DeliveryError
from bridge.explain import explain_payload
from bridge.globs import GlobError
from bridge.jobs import JOB_STATES, LISTED_OUTCOMES, REFUSED
from bridge.policies import parse_duration
from bridge.providers import host_view
from bridge.store.reads import DeliveryFilter
from bridge.web.ui import chart
from bridge.web.ui.base import bp, refused

PAGE_SIZE = 50
#: Every outcome the list shows, in the filter's order.
OUTCOME_LABELS = {"matched": "accepted", "no_match": "no match", "ignored": "ignored",
                  "refused": "refused", "duplicate": "duplicate"}
#: Where a delivery came from when the host did not simply send it (deliveries.via).
VIA_LABELS = {"reconcile": "recovered by reconcile: made from the host's records, the host never "
                           "delivered it",
              "redelivery": "redelivered: the host sent it again when reconcile asked"}
#: Request keys never shown (a rule's `run:` holds no secret today; a future one must not leak).
_SECRET_WORDS = ("token", "secret", "password", "passwd", "credential", "signature", "authorization")


def _state():
    return current_app.extensions["bridge"]


def parse_filter(args) -> DeliveryFilter:
    """The list's filters from the query string; ValueError with a message on a bad one."""
    def arg(name):
        value = args.get(name, "").strip()
        if "\x00" in value:       # no stored text holds one, and PostgreSQL refuses it
            raise ValueError(f"a NUL character in {name}")
        return value or None
    outcome, state = arg("outcome"), arg("state")
    if outcome and outcome not in LISTED_OUTCOMES:
        raise ValueError(f"unknown outcome '{outcome}'")
    if state and state not in JOB_STATES:
        raise ValueError(f"unknown job state '{state}'")
    since = until = None
    now = time.time()
    if arg("since"):
        since = now - parse_duration(arg("since"))
    if arg("until"):
        until = now - parse_duration(arg("until"))
    return DeliveryFilter(source=arg("source"), repo=arg("repo"), ref=arg("ref"), rule=arg("rule"),
                          outcome=outcome, job_state=state, since=since, until=until)


def parse_cursor(value: str | None):
    """`<received_at>:<id>` after a delivery, `r<received_at>:<id>` after a refusal (the float
    as repr'd, which reads back exactly), or None. ValueError for anything else: a time that is
    not a finite number, a refusal id that is not an integer, a NUL (PostgreSQL refuses it)."""
    if not value:
        return None
    refusal = value.startswith("r")
    ts, sep, key = value[refusal:].partition(":")
    if not sep or "\x00" in key:
        raise ValueError("a bad page cursor")
    at = float(ts)
    if not math.isfinite(at):
        raise ValueError("a bad page cursor")
    return (at, int(key), REFUSED) if refusal else (at, key)


def format_cursor(cursor) -> str:
    if len(cursor) == 3:
        return f"r{cursor[0]!r}:{cursor[1]}"
    return f"{cursor[0]!r}:{cursor[1]}"


def rules_in_force() -> dict:
    state = _state()
    config = state.config
    status = read_status(state.state_dir) or {}
    return {"version": config.version, "file": os.path.abspath(config.path), "rules": len(config.rules),
            "loaded": status.get("success_time"),
            "error": None if status.get("ok", True) else status.get("problems", [])[:20]}


@bp.get("/ui/")
def deliveries():
    state = _state()
    try:
        f = parse_filter(request.args)
        cursor = parse_cursor(request.args.get("after"))
        page = state.store.delivery_page(f, after=cursor, limit=PAGE_SIZE)
    except (ValueError, GlobError) as exc:
        return refused(400, f"bad filter: {exc}")
    now = time.time()
    counts = current_app.extensions.setdefault("bridge_ui", {}).setdefault("counts", chart.Counts())
    graph = counts.chart(state.store, now) if cursor is None else None
    args = {k: v for k, v in request.args.items() if k != "after" and v}
    nxt = dict(args, after=format_cursor(page.next)) if page.next else None
    return render_template("deliveries.html", page=page, args=args, next_args=nxt, chart=graph,
                           chart_size=(chart.WIDTH, chart.HEIGHT), outcomes=OUTCOME_LABELS,
                           job_states=JOB_STATES, sources=sorted(state.config.sources),
                           rules=rules_in_force(), first=cursor is None, via=VIA_LABELS)


@bp.get("/ui/deliveries/<path:delivery_id>")
def delivery(delivery_id: str):
    state = _state()
    # No stored id holds a NUL (ingress escapes them), and PostgreSQL refuses to compare one.
    d = None if "\x00" in delivery_id else state.store.get_delivery(delivery_id)
    if d is None:
        return refused(404, f"no delivery '{delivery_id}'")
    statuses = [{**s, **host_view(s)} for s in state.store.statuses_of(delivery_id)]
    for j in d["jobs"]:
        j["request"] = hide_secrets(j.get("request"))
        j["statuses"] = [s for s in statuses if s["job_id"] == j["id"]]
    try:
        trace, trace_error = explain_payload(state.config, d["source"], d["body"],
                                             headers=d["headers"]), None
    except (DeliveryError, BridgeError) as exc:
        trace, trace_error = None, str(exc)
    return render_template("delivery.html", d=d, body=pretty_body(d["body"]), trace=trace,
                           trace_error=trace_error, skipped=[s for s in statuses if s["job_id"] is None],
                           outcomes=OUTCOME_LABELS, via=VIA_LABELS)


@bp.get("/ui/refused/<int:refusal>")
def refusal(refusal: int):
    """A refused delivery: only what the record keeps (no body, no headers: nothing to replay)."""
    r = _state().store.get_refusal(refusal)
    if r is None:
        return refused(404, f"no refused delivery {refusal} (only the newest are kept)")
    return render_template("refusal.html", r=r)


def hide_secrets(value):
    """A job's request with the values of secret-sounding keys hidden, at any depth."""
    if isinstance(value, dict):
        return {k: "(hidden)" if any(w in str(k).lower() for w in _SECRET_WORDS) else hide_secrets(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [hide_secrets(v) for v in value]
    return value


def pretty_body(body: bytes) -> str:
    """The stored body for people: indented JSON when it is JSON, else the text as received."""
    text = body.decode("utf-8", "replace")
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


@bp.app_template_filter("when")
def when(ts) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


@bp.app_template_filter("tojson_pretty")
def tojson_pretty(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str, sort_keys=True)


@bp.app_template_test("web_url")
def web_url(value) -> bool:
    """Only http(s) links are drawn as links (a build URL is the target's word)."""
    return isinstance(value, str) and value.lower().startswith(("http://", "https://"))
