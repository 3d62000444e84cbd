"""Admin endpoints (`/metrics`, Prometheus) and the one check of settings.admin_token that every
admin view goes through (this guard, `/readyz?targets=1`, the delivery page and its login form).

Input: a GET from the local host (no forwarding headers) or with `Authorization: Bearer
<settings.admin_token>`. Output: the metrics text, or 403; 429 with Retry-After, the token not
looked at, for a client that sent too many wrong tokens (web/throttle.py). Public traffic comes
through the reverse proxy, which forwards only /hooks/ and /healthz and adds X-Forwarded-For.
"""
from __future__ import annotations

import hmac
import ipaddress
import logging

from flask import Blueprint, Response, abort, current_app, g, jsonify, request

from bridge.config.snapshot import read_status
from bridge.web.peers import client_address

bp = Blueprint("admin", __name__)
log = logging.getLogger("bridge.admin")
_FORWARDED = ("X-Forwarded-For", "X-Real-IP", "Forwarded")


def client() -> str:
    """The client's address: the trusted proxy's X-Forwarded-For, else the peer's."""
    return client_address(request.remote_addr, request.headers,
                          current_app.extensions["bridge"].config.settings.ui.trusted_proxies)


def try_admin_token(given: str) -> tuple[bool, int]:
    """A try of the admin token, braked per client: (whether it is the token, 0), or (False,
    seconds to wait) for a client with too many wrong tries in the last minute, whose token is
    then not compared at all. A wrong one counts against the client, the right one clears its
    count. The login form and the bearer header share the count (one per worker)."""
    state = current_app.extensions["bridge"]
    token = state.config.settings.admin_token or ""
    who = client()
    wait = state.brake.wait(who)
    if wait:
        return False, wait
    if token and hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8")):
        state.brake.succeeded(who)
        return True, 0
    state.brake.failed(who)
    return False, 0


def admin_allowed() -> bool:
    """The admin bearer token when one is sent (a wrong one is refused even locally; too many
    wrong ones end the request with 429); else a direct local caller: loopback or a Unix socket,
    and no proxy in between (a proxy on this host connects from loopback too, but says so with a
    forwarding header). Decided once per request: one bearer header is one try."""
    if "bridge_admin" not in g:
        g.bridge_admin = _admin_allowed()
    return g.bridge_admin


def _admin_allowed() -> bool:
    token = current_app.extensions["bridge"].config.settings.admin_token
    auth = request.headers.get("Authorization", "")
    if token and auth.startswith("Bearer "):
        ok, wait = try_admin_token(auth[7:])
        if wait:
            log.warning("admin: bearer token from %s refused for %d s: too many wrong admin tokens",
                        client(), wait, extra={"peer": client()})
            abort(too_many(wait))
        if not ok:
            log.warning("admin: wrong bearer token from %s", client(), extra={"peer": client()})
        return ok
    if any(h in request.headers for h in _FORWARDED):
        return False
    if not request.remote_addr:
        return True   # gunicorn on a Unix socket: only local processes can connect
    try:
        return ipaddress.ip_address(request.remote_addr).is_loopback
    except ValueError:
        return False


def too_many(wait: int) -> Response:
    resp = jsonify({"error": f"too many wrong admin tokens from your address: try again in {wait} "
                             "seconds"})
    resp.status_code = 429
    resp.headers["Retry-After"] = str(wait)
    return resp


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
