"""Who may see the delivery page, and the guards of its forms: admin identity, login sessions,
CSRF tokens, the security headers, and the reverse proxy's path prefix.

Input: a request (its peer address, cookies, headers) and settings (admin_token, ui). Output:
the user's name or None; signed cookies (HttpOnly, SameSite=Strict, Secure behind TLS); 403/400
refusals. Keys come from `<state_dir>/ui-secret` (made once, mode 0600), mixed with the admin
token, so every worker agrees and changing the token ends every session.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets

from flask import current_app, g, request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from bridge.web import admin
from bridge.web.peers import in_networks

SESSION_COOKIE = "bridge_ui_session"
CSRF_COOKIE = "bridge_ui_csrf"
SESSION_MAX_AGE = 12 * 3600
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")


def _state():
    return current_app.extensions["bridge"]


def _key_file(state_dir: str) -> bytes:
    """The page's random key in the state directory: created once, atomically, for every worker."""
    path = os.path.join(state_dir, "ui-secret")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path, "rb") as f:
            key = f.read()
        if len(key) >= 32:
            return key
        raise RuntimeError(f"{path} is shorter than 32 bytes: delete it to make a new one")
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def ui_key() -> bytes:
    state = _state()
    cache = current_app.extensions.setdefault("bridge_ui", {})
    token = state.config.settings.admin_token or ""
    cached = cache.get("key")
    if cached is None or not hmac.compare_digest(cached[0].encode("utf-8"), token.encode("utf-8")):
        base = _key_file(state.state_dir)
        cached = (token, hmac.new(base, b"ui|" + token.encode("utf-8"), hashlib.sha256).digest())
        cache["key"] = cached
    return cached[1]


def _sessions() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(ui_key(), salt="bridge-ui-session")


def from_proxy() -> bool:
    """Whether the peer is one of settings.ui.trusted_proxies (default the local host)."""
    return in_networks(request.remote_addr, _state().config.settings.ui.trusted_proxies)


def client() -> str:
    """The client's address: the trusted proxy's X-Forwarded-For, else the peer's."""
    return admin.client()


def current_user() -> str | None:
    """The admin's name: the proxy's user header (from a trusted proxy), a login session, the
    admin bearer token, or "local" for a direct caller on the host; else None."""
    if "ui_user" in g:
        return g.ui_user
    ui = _state().config.settings.ui
    user = None
    if ui.trusted_user_header and from_proxy():
        name = request.headers.get(ui.trusted_user_header, "").strip()
        if name and name.isprintable():
            user = name[:100]
    if user is None and request.cookies.get(SESSION_COOKIE) and _state().config.settings.admin_token:
        try:
            data = _sessions().loads(request.cookies[SESSION_COOKIE], max_age=SESSION_MAX_AGE)
            user = str(data.get("u", "admin"))[:100]
        except BadSignature:
            user = None
    if user is None and admin.admin_allowed():
        user = "token" if request.headers.get("Authorization", "").startswith("Bearer ") else "local"
    g.ui_user = user
    return user


def try_token(given: str) -> tuple[bool, int]:
    """The login form's try of the admin token: web/admin.py's, braked per client together with
    the bearer header's tries."""
    return admin.try_admin_token(given)


def session_cookie() -> str:
    return _sessions().dumps({"u": "admin"})


def secure() -> bool:
    """Behind TLS: the request itself, or the trusted proxy's X-Forwarded-Proto (the prefix
    middleware already set the scheme from it)."""
    return request.is_secure


# --- CSRF: a random cookie, and forms carry its HMAC --------------------------------------------

def _csrf_seed() -> str:
    seed = request.cookies.get(CSRF_COOKIE, "")
    if len(seed) < 20:
        seed = g.get("new_csrf_seed") or secrets.token_urlsafe(24)
        g.new_csrf_seed = seed
    return seed


def csrf_token() -> str:
    return hmac.new(ui_key(), b"csrf|" + _csrf_seed().encode(), hashlib.sha256).hexdigest()


def csrf_ok() -> bool:
    seed = request.cookies.get(CSRF_COOKIE, "")
    given = request.form.get("csrf", "")
    if len(seed) < 20 or not given:
        return False
    want = hmac.new(ui_key(), b"csrf|" + seed.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(given.encode("utf-8", "replace"), want.encode())


def finish(resp):
    """Every page's headers: the CSP (no script at all), no caching, no framing; the CSRF
    cookie when this request made one."""
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "same-origin"
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Frame-Options"] = "DENY"
    seed = g.get("new_csrf_seed")
    if seed:
        resp.set_cookie(CSRF_COOKIE, seed, httponly=True, samesite="Strict", secure=secure(),
                        path=request.script_root + "/ui/")
    return resp


# --- the reverse proxy's prefix -----------------------------------------------------------------

class ProxyPrefix:
    """WSGI middleware: a request from a trusted proxy may say, with X-Forwarded-Prefix, under
    which path the bridge is published (`/bridge`), and with X-Forwarded-Proto that it came over
    TLS; links and cookies then carry the prefix, and cookies the Secure flag. From anyone else
    both headers are ignored."""

    def __init__(self, wsgi_app, trusted):
        self.wsgi_app = wsgi_app
        self.trusted = trusted          # a callable: the current settings.ui.trusted_proxies

    def __call__(self, environ, start_response):
        prefix = environ.get("HTTP_X_FORWARDED_PREFIX", "").rstrip("/")
        proto = environ.get("HTTP_X_FORWARDED_PROTO", "")
        if (prefix or proto) and in_networks(environ.get("REMOTE_ADDR"), self.trusted()):
            if prefix and _PREFIX.match(prefix):
                environ["SCRIPT_NAME"] = prefix + environ.get("SCRIPT_NAME", "")
            if proto.lower() == "https":
                environ["wsgi.url_scheme"] = "https"
        return self.wsgi_app(environ, start_response)


def ui_has_login() -> bool:
    """A login form exists only when settings.admin_token is set (it is the password)."""
    return bool(_state().config.settings.admin_token)
