"""Login and logout of the delivery page: the admin token typed into a form becomes a signed
session cookie (HttpOnly, SameSite=Strict, Secure behind TLS), good for 12 hours.

Input: the login form (token, CSRF token). Output: the cookie and a redirect, or the form again
with why; every login and failed attempt is logged with the peer's address.
"""
from __future__ import annotations

import logging

from flask import redirect, render_template, request, url_for

from bridge.web.ui import auth
from bridge.web.ui.base import bp

log = logging.getLogger("bridge.ui")


def _next_url() -> str:
    """Where to go after the login: a path of this page only (never another site)."""
    nxt = request.values.get("next", "")
    root = request.script_root + "/ui/"
    return nxt if nxt.startswith(root) and "//" not in nxt and "\\" not in nxt else url_for("ui.deliveries")


@bp.route("/ui/login", methods=["GET", "POST"])
def login():
    if not auth.ui_has_login():
        return render_template("login.html", disabled=True), 404
    error = None
    if request.method == "POST":
        if auth.token_matches(request.form.get("token", "")):
            log.info("ui: login from %s", request.remote_addr, extra={"user": "admin"})
            resp = redirect(_next_url(), code=303)
            resp.set_cookie(auth.SESSION_COOKIE, auth.session_cookie(), max_age=auth.SESSION_MAX_AGE,
                            httponly=True, samesite="Strict", secure=auth.secure(),
                            path=request.script_root + "/")
            return resp
        log.warning("ui: failed login from %s", request.remote_addr)
        error = "that is not the admin token"
    return render_template("login.html", disabled=False, error=error, next=_next_url()), \
        401 if error else 200


@bp.post("/ui/logout")
def logout():
    resp = redirect(url_for("ui.login") if auth.ui_has_login() else url_for("ui.deliveries"), code=303)
    resp.delete_cookie(auth.SESSION_COOKIE, path=request.script_root + "/")
    return resp
