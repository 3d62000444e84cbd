"""Ingress stage: `POST /hooks/<source>`: bytes -> verify -> normalize -> match -> store -> reply.

Input: a webhook delivery. Output: the reply DESIGN.md's table prescribes (401/404/413/400/200/202/503);
a 2xx only after the delivery and its jobs are committed; a refusal also goes to the recorder of
refusals (web/refusals.py), after its reply. Web workers never call a target. A
delivery meaning several events (Bitbucket: one per change) is stored as one row per event, all in
one transaction, each matched and deduplicated on its own (`_receive_many`). `HooksFirst`, in
front of the Flask app, hands each delivery to `deliver` without Flask's request machinery.
"""
from __future__ import annotations

import functools
import json
import logging
import time
import uuid

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request

from bridge.errors import DeliveryError, PayloadTooLarge, StoreUnavailable, UnknownSource
from bridge.events import Ignored
from bridge.providers import (content_key, events_of, get_provider, kept_header_prefixes, secret_headers,
                              stored_body)
from bridge.store import NewDelivery
from bridge.web.peers import client_address

log = logging.getLogger("bridge.ingress")
bp = Blueprint("ingress", __name__)

_KEEP_HEADERS = ("content-type", "user-agent", "idempotency-key", "content-length", "x-request-id")
#: Identification headers the hosts send. An allow-list: a proxy or sidecar may add x-* headers
#: carrying credentials (X-Api-Key, X-Amz-Security-Token) that must never reach the database.
_KEEP_PREFIXES = kept_header_prefixes()
_NEVER_KEEP = secret_headers() + ("authorization", "cookie")


def kept_headers(headers, secret_headers=()) -> dict:
    """The headers stored with a delivery: identification only, never a signature or token."""
    drop = _dropped(tuple(secret_headers))
    out = {}
    for name, value in headers.items():
        low = name.lower()
        if low in drop:
            continue
        if low in _KEEP_HEADERS or low.startswith(_KEEP_PREFIXES):
            out[name] = value[:512]
    return out


@functools.lru_cache(maxsize=64)
def _dropped(secret_headers: tuple) -> frozenset:
    return frozenset(_NEVER_KEEP) | {h.lower() for h in secret_headers}


def read_body(req, cap: int) -> bytes:
    """Read at most `cap` bytes of `req`'s body; refuse larger bodies without reading them."""
    length = req.content_length
    if length is not None and length > cap:
        raise PayloadTooLarge(f"body of {length} bytes is over the {cap}-byte cap")
    body = req.stream.read(cap + 1)
    if len(body) > cap:
        raise PayloadTooLarge(f"body is over the {cap}-byte cap")
    return body


def _clip(delivery: str | None) -> str | None:
    """A delivery id as the host sent it, within the store's column and printable."""
    if not delivery:
        return None
    return delivery[:200] if delivery.isprintable() else delivery.encode("unicode_escape")[:200].decode()


# What Flask's jsonify writes, without its per-call lookups and its per-call encoder.
_ENCODE = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


def _json(body: dict, status: int) -> Response:
    return Response(_ENCODE(body) + "\n", status, mimetype="application/json")


def _error(exc: DeliveryError, delivery: str | None = None):
    body = {"error": exc.message}
    if delivery:
        body["delivery"] = delivery
    resp = _json(body, exc.status)
    if exc.status == 413:
        resp.headers["Connection"] = "close"   # do not drain a huge body for keep-alive
    return resp


@bp.post("/hooks/<source>")
def receive(source: str):
    """The route, for the URL map (and a caller of the Flask app that goes round `HooksFirst`)."""
    return deliver(current_app.extensions["bridge"], source, request._get_current_object())


class HooksFirst:
    """WSGI middleware in front of the Flask app: `POST /hooks/<source>` goes straight to
    `deliver`, without Flask's request context, URL map and response finalizing (a tenth of a
    delivery's CPU in a web worker); every other request, and a /hooks/ path Flask would not
    route to `receive`, goes on to the app. An unexpected error is a JSON 500, logged."""

    def __init__(self, wsgi_app, state):
        self.wsgi_app = wsgi_app
        self.state = state

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "POST" or not path.startswith("/hooks/"):
            return self.wsgi_app(environ, start_response)
        source = path[len("/hooks/"):]
        if not source or "/" in source:
            return self.wsgi_app(environ, start_response)
        # WSGI hands the path over as latin-1; werkzeug's routing reads it as UTF-8, so do we.
        source = source.encode("latin-1").decode("utf-8", "replace")
        try:
            resp = deliver(self.state, source, Request(environ))
        except HTTPException as exc:     # e.g. a body shorter than its Content-Length: 400
            resp = exc
        except Exception:   # noqa: BLE001 - the host gets an answer, the operator the traceback
            log.exception("internal error while receiving a delivery", extra={"source": source})
            resp = _json({"error": "internal error in the bridge; please redeliver (a delivery "
                                   "already stored is recognized as a redelivery)"}, 500)
        return resp(environ, start_response)


def deliver(state, source: str, req):
    """One delivery to `/hooks/<source>`: `req` a werkzeug Request, `state` the app's AppState.
    Returns the reply (a Response)."""
    started = time.perf_counter()
    config = state.config
    headers = req.headers
    delivery = None
    src = config.sources.get(source)
    try:
        if src is None:
            raise UnknownSource(f"unknown source '{source}'")
        provider = get_provider(src.provider)
        # Read before verifying, only so that a refusal's log line names the host's delivery.
        delivery = _clip(provider.delivery_id(headers))
        body = read_body(req, config.settings.max_body_bytes)
        provider.verify(headers, body, src.secrets, **src.verify_options)
        delivery = delivery or f"bridge-{uuid.uuid4()}"
        result = events_of(provider, headers, body, source=source, delivery_id=delivery)
        body = stored_body(provider, body)      # never a secret the host put in it
    except DeliveryError as exc:
        state.observe(source, exc.status, started, outcome="refused")
        log.warning("refused: %s", exc.message,
                    extra={"delivery": delivery, "source": source, "status": exc.status})
        resp = _error(exc, delivery)
        # For the delivery page, after the reply: rate-limited, never the body or a secret.
        state.refusals.note(state.store, resp, source=source, status=exc.status, reason=exc.message,
                            delivery=delivery, peer=client_address(
                                req.remote_addr, headers, config.settings.ui.trusted_proxies))
        return resp

    kept = kept_headers(headers, provider.SECRET_HEADERS)
    if not isinstance(result, Ignored) and len(result) > 1:
        return _receive_many(state, src, source, body, kept, result, started)
    result = result if isinstance(result, Ignored) else result[0]
    record, verdicts, jobs, others = _record(config, src, source, delivery, body, kept, result)
    try:
        ingested = state.store.ingest(record, jobs)
    except StoreUnavailable as exc:
        state.observe(source, 503, started, outcome="unavailable")
        log.error("store unavailable, delivery not accepted: %s", exc,
                  extra={"delivery": delivery, "source": source, "status": 503})
        resp = _json({"error": "the bridge could not store the delivery; nothing was accepted, "
                               "please redeliver", "delivery": delivery}, 503)
        resp.headers["Retry-After"] = "30"
        return resp
    return _reply(state, source, started, record, verdicts, jobs, ingested, others)


def _record(config, src, source: str, delivery: str, body: bytes, kept: dict, result):
    """The delivery to store and its jobs: `result` (an Event, or Ignored by its provider)
    matched against the rules. Returns (record, verdicts, jobs, others)."""
    if isinstance(result, Ignored):
        record = NewDelivery(source=source, provider=src.provider, delivery_id=delivery,
                             received_at=time.time(), headers=kept, body=body, event=None,
                             outcome="ignored", reason=result.reason, verdicts=[],
                             rules_version=config.version, content_key=None)
        verdicts, jobs, others = [], [], 0
    else:
        event = result
        verdicts = config.ruleset.match(event)
        jobs = [j for v in verdicts if v.matched for j in v.jobs]
        matched = [v.rule for v in verdicts if v.matched]
        near, others = [], 0
        if not matched:
            # Why nothing built: also the rules for a repo near this one, and a count of the rest.
            near, others = config.ruleset.nearest(event, verdicts)
        reason = "" if matched else no_match_reason(verdicts, near, others)
        verdicts = verdicts + near
        record = NewDelivery(source=source, provider=src.provider, delivery_id=delivery,
                             received_at=time.time(), headers=kept, body=body,
                             event=event, outcome="matched" if matched else "no_match",
                             reason=reason, verdicts=[v.to_dict() for v in verdicts],
                             rules_version=config.version, content_key=content_key(event))
    return record, verdicts, jobs, others


def _receive_many(state, src, source: str, body: bytes, kept: dict, events, started):
    """Several events of one delivery: one stored row each (the first under the host's id, the
    others under the ids their provider gave them), all in one transaction."""
    config = state.config
    parts = [_record(config, src, source, event.delivery_id, body, kept, event) for event in events]
    try:
        stored = state.store.ingest_all([(record, jobs) for record, _, jobs, _ in parts])
    except StoreUnavailable as exc:
        state.observe(source, 503, started, outcome="unavailable")
        log.error("store unavailable, delivery not accepted: %s", exc,
                  extra={"delivery": events[0].delivery_id, "source": source, "status": 503})
        resp = _json({"error": "the bridge could not store the delivery; nothing was accepted, "
                               "please redeliver", "delivery": events[0].delivery_id}, 503)
        resp.headers["Retry-After"] = "30"
        return resp
    first = stored[0].delivery
    if all(i.duplicate_of for i in stored):
        state.observe(source, 200, started, outcome="duplicate")
        return _json({"delivery": first, "duplicate_of": stored[0].duplicate_of,
                      "reason": "this delivery (same id and body) was already received"}, 200)
    out, matched, all_jobs = [], [], []
    for (record, verdicts, jobs, _), ingested, event in zip(parts, stored, events):
        entry = {"delivery": ingested.delivery, "ref": event.ref, "kind": event.kind,
                 "matched": [v.rule for v in verdicts if v.matched]}
        if ingested.duplicate_of or ingested.content_duplicate_of:
            entry["duplicate_of"] = ingested.duplicate_of or ingested.content_duplicate_of
        else:
            entry["jobs"] = [{"id": jid, "rule": j.rule, "target": j.target, "request": j.request,
                              "needs_files": j.needs_files} for jid, j in zip(ingested.job_ids, jobs)]
            matched += [m for m in entry["matched"] if m not in matched]
            all_jobs += entry["jobs"]
        out.append(entry)
    status = 202 if all_jobs else 200
    state.observe(source, status, started, outcome="accepted" if all_jobs else "no_match",
                  **({"matched": matched} if all_jobs else {}))
    log.info("%d event(s), %d job(s)", len(events), len(all_jobs),
             extra={"delivery": first, "source": source, "status": status})
    return _json({"delivery": first, "matched": matched, "jobs": all_jobs, "events": out}, status)


def no_match_reason(verdicts, near, others: int) -> str:
    """Why nothing was built, counting the rules the answer's `rules` list leaves out (they
    name other repositories)."""
    rest = f"{others} other rule{'s' if others != 1 else ''} name{'s' if others == 1 else ''} " \
           "other repositories" if others else ""
    if verdicts:
        head = "no rule matched"
    else:
        head = "no rule names this repository"
        if near:
            head += (f"; nearest: {', '.join(v.rule for v in near[:3])}{', ...' if len(near) > 3 else ''}"
                     f" (see 'rules')")
    return head + (f"; {rest}" if rest else "")


def _reply(state, source, started, record, verdicts, jobs, ingested, others=0):
    delivery = ingested.delivery
    extra = {"delivery": delivery, "source": source}
    if ingested.reused_id and not ingested.duplicate_of:
        # Not a redelivery (GitHub's and GitLab's resend the same body): stored on its own.
        log.warning("delivery id %s was already stored with a different body; this one is a "
                    "delivery of its own, stored as %s", ingested.reused_id, delivery,
                    extra={**extra, "host_delivery": ingested.reused_id})
    if ingested.duplicate_of:
        state.observe(source, 200, started, outcome="duplicate")
        log.info("duplicate delivery id, nothing new stored", extra={**extra, "status": 200})
        return _json({"delivery": delivery, "duplicate_of": ingested.duplicate_of,
                      "reason": "this delivery (same id and body) was already received"}, 200)
    if ingested.content_duplicate_of:
        state.observe(source, 200, started, outcome="duplicate")
        pull = record.event is not None and record.event.number is not None
        what = "the same pull request change" if pull else "the same push"
        log.info("%s already accepted as %s; no jobs", what, ingested.content_duplicate_of,
                 extra={**extra, "status": 200})
        return _json({"delivery": delivery, "duplicate_of": ingested.content_duplicate_of,
                      "reason": "the same pull request change (number, action, head, time) was already "
                                "accepted" if pull else
                                "the same push (repo, ref, before, after) was already accepted"}, 200)
    if record.outcome == "ignored":
        state.observe(source, 200, started, outcome="ignored")
        log.info("ignored: %s", record.reason, extra={**extra, "status": 200})
        return _json({"delivery": delivery, "ignored": record.reason}, 200)
    rules = [{"rule": v.rule, "matched": v.matched, "reason": v.reason} for v in verdicts]
    if not jobs:
        state.observe(source, 200, started, outcome="no_match")
        log.info("no rule matched", extra={**extra, "status": 200, "rules": rules})
        return _json({"delivery": delivery, "matched": [], "reason": record.reason,
                      "rules": rules, "other_rules": others}, 200)
    matched = [v.rule for v in verdicts if v.matched]
    state.observe(source, 202, started, outcome="accepted", matched=matched)
    log.info("accepted: %d job(s) for %s", len(jobs), ", ".join(matched),
             extra={**extra, "status": 202})
    return _json({
        "delivery": delivery, "matched": matched,
        "jobs": [{"id": jid, "rule": j.rule, "target": j.target, "request": j.request,
                  "needs_files": j.needs_files} for jid, j in zip(ingested.job_ids, jobs)],
        "rules": rules,
    }, 202)
