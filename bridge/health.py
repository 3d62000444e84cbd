"""Health endpoints: `/healthz` (the process answers) and `/readyz` (store writable, rules loaded).

Input: a GET. Output: 200 or 503 with a short JSON body.
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from .errors import StoreUnavailable

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    state = current_app.extensions["bridge"]
    body = {"rules_version": state.config.version, "rules": len(state.config.rules)}
    try:
        state.store.ping()
    except StoreUnavailable as exc:
        body.update(status="unavailable", store=str(exc))
        return jsonify(body), 503
    body.update(status="ready", store="ok")
    return jsonify(body)
