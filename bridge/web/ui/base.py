"""The delivery page's blueprint and its guard: admin only, CSRF on every form POST, the
security headers on every answer.

Input: a request. Output: the request let through, or a refusal (403, 400, a redirect to the
login form); the views (pages, actions, tryout, session) register on `bp`.
"""
from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, request, url_for

from bridge.web.ui import auth

bp = Blueprint("ui", __name__, template_folder="templates", static_folder="static",
               static_url_path="/ui/static")
#: Endpoints a visitor reaches before logging in.
_OPEN = ("ui.login", "ui.static")


@bp.before_request
def guard():
    """Admin only; every POST of a form carries the CSRF token (the JSON API needs a JSON body,
    which no cross-site form can send)."""
    if request.endpoint in _OPEN:
        if request.method == "POST" and not auth.csrf_ok():
            return refused(400, "the form's CSRF token is missing or wrong: reload the page and "
                                "send it again")
        return None
    if auth.current_user() is None:
        if request.endpoint == "ui.api_explain":
            return {"error": "admin only: the local host, the admin bearer token or a login"}, 403
        if auth.ui_has_login():
            return redirect(url_for("ui.login", next=request.full_path))
        return refused(403, "the delivery page answers only on the local host, behind a trusted "
                            "proxy that names the user, or after a login with settings.admin_token")
    if request.method == "POST":
        if request.endpoint == "ui.api_explain":
            if not request.is_json:
                abort(415)
        elif not auth.csrf_ok():
            return refused(400, "the form's CSRF token is missing or wrong: reload the page and "
                                "send it again")
    return None


@bp.after_request
def headers(resp):
    return auth.finish(resp)


@bp.app_context_processor
def helpers():
    return {"csrf_token": auth.csrf_token, "ui_user": auth.current_user}


def refused(status: int, message: str):
    return render_template("refused.html", status=status, message=message), status
