"""Admin endpoints: `/metrics` (Prometheus), guarded like every admin view.

Input: a GET from the local host (no forwarding headers) or with `Authorization: Bearer
<settings.admin_token>`. Output: the metrics text, or 403. Public traffic comes through the
reverse proxy, which forwards only /hooks/ and /healthz and adds X-Forwarded-For.
"""
from __future__ import annotations

import hmac
import ipaddress

from flask import Blueprint, Response, current_app, jsonify, request

from bridge.config.snapshot import read_status

bp = Blueprint("admin", __name__)
_FORWARDED = ("X-Forwarded-For", "X-Real-IP", "Forwarded")


def admin_allowed() -> bool:
    """The admin bearer token when one is sent (a wrong one is refused even locally); else a
    direct local caller: loopback or a Unix socket, and no proxy in between (a proxy on this
    host connects from loopback too, but says so with a forwarding header)."""
    state = current_app.extensions["bridge"]
    token = getattr(state.config.settings, "admin_token", None)
    auth = request.headers.get("Authorization", "")
    if token and auth.startswith("Bearer "):
        return hmac.compare_digest(auth[7:].encode("utf-8", "replace"), token.encode("utf-8"))
    if any(h in request.headers for h in _FORWARDED):
        return False
    if not request.remote_addr:
        return True   # gunicorn on a Unix socket: only local processes can connect
    try:
        return ipaddress.ip_address(request.remote_addr).is_loopback
    except ValueError:
        return False


def forbidden():
    return jsonify({"error": "admin endpoints answer only on the local host or with the admin "
                             "bearer token (settings.admin_token)"}), 403


@bp.get("/metrics")
def metrics():
    if not admin_allowed():
        return forbidden()
    state = current_app.extensions["bridge"]
    if state.metrics is None:
        return jsonify({"error": "metrics are off in this process"}), 404
    body, content_type = state.metrics.render(state.store, rules_status=read_status(state.state_dir),
                                              policies=state.config.policies())
    return Response(body, content_type=content_type)
