"""Login and logout of the delivery page: the admin token typed into a form becomes a signed
session cookie (HttpOnly, SameSite=Strict, Secure behind TLS), good for 12 hours.

Input: the login form (token, CSRF token). Output: the cookie and a redirect, or the form again
with why; every login and failed attempt is logged with the client's address. After a few failed
logins a minute from one client (ui/throttle.py) its tries get 429 and Retry-After, unchecked.
"""
from __future__ import annotations

import logging

from flask import current_app, redirect, render_template, request, url_for

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
        who = auth.client()
        ok, wait = auth.try_token(request.form.get("token", ""))
        if wait:
            log.warning("ui: login from %s refused for %d s: too many wrong admin tokens", who, wait,
                        extra={"peer": who})
            resp = current_app.make_response((render_template(
                "login.html", disabled=False, next=_next_url(),
                error=f"too many wrong admin tokens from your address: try again in {wait} seconds"), 429))
            resp.headers["Retry-After"] = str(wait)
            return resp
        if ok:
            log.info("ui: login from %s", who, extra={"user": "admin", "peer": who})
            resp = redirect(_next_url(), code=303)
            resp.set_cookie(auth.SESSION_COOKIE, auth.session_cookie(), max_age=auth.SESSION_MAX_AGE,
                            httponly=True, samesite="Strict", secure=auth.secure(),
                            path=request.script_root + "/")
            return resp
        log.warning("ui: failed login from %s", who, extra={"peer": who})
        error = "that is not the admin token"
    return render_template("login.html", disabled=False, error=error, next=_next_url()), \
        401 if error else 200


@bp.post("/ui/logout")
def logout():
    resp = redirect(url_for("ui.login") if auth.ui_has_login() else url_for("ui.deliveries"), code=303)
    resp.delete_cookie(auth.SESSION_COOKIE, path=request.script_root + "/")
    return resp
