"""Health endpoints: `/healthz` (the process answers) and `/readyz` (store writable, rules loaded;
with `?targets=1` each target's answer and its policy breaker's state).

Input: a GET. Output: 200 or 503 with a short JSON body.
"""
from __future__ import annotations

import os
import time

from flask import Blueprint, current_app, jsonify, request

from bridge.config.snapshot import read_status
from bridge.errors import StoreUnavailable
from bridge.web.admin import admin_allowed, forbidden

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Ready = store writable and rules loaded. A rules.yaml that failed to reload is reported
    (the last good rules keep serving, so it does not make the bridge unready)."""
    state = current_app.extensions["bridge"]
    body = {"rules_version": state.config.version, "rules_file": os.path.abspath(state.config.path),
            "rules": len(state.config.rules)}
    status = read_status(state.state_dir)
    if status and not status.get("ok"):
        body["rules_reload_error"] = status.get("problems", [])[:20]
    ok = True
    try:
        state.store.ping()
        body["store"] = "ok"
    except StoreUnavailable as exc:
        body["store"] = str(exc)
        ok = False
    if request.args.get("targets"):
        if not admin_allowed():
            return forbidden()
        body["targets"] = target_reachability(state.config)
        ok = ok and all(t.startswith("ok") for t in body["targets"].values())
        try:       # policy breakers: "open" while the bridge holds a target's jobs back
            breakers = state.store.breaker_states(state.config.policies(), now=time.time())
        except StoreUnavailable:
            breakers = {}
        if breakers:
            body["breakers"] = breakers
    body["status"] = "ready" if ok else "unavailable"
    return jsonify(body), 200 if ok else 503


def target_reachability(config) -> dict:
    """Each target's own answer to "are you there?" (a cheap authenticated call)."""
    out = {}
    for name, target in config.build_targets().items():
        try:
            out[name] = target.ping() or "ok"
        except Exception as exc:   # any failure is the answer: report it, never raise
            out[name] = f"unreachable: {exc}"
        finally:
            target.close()
    return out
