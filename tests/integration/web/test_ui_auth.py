"""Who may use the delivery page: the local host, the admin token's login session (cookie flags),
a trusted proxy's user header, nobody else; CSRF on every form; failed logins braked per client."""
from __future__ import annotations

import pytest
from helpers.rules import BASE_RULES
from helpers.ui import csrf_of

from bridge.web.throttle import FAILURES, TokenBrake

ADMIN = "admin-token-5b1d"
WITH_LOGIN = BASE_RULES + """\
settings:
  admin_token: "${env:BRIDGE_ADMIN}"
  ui:
    trusted_user_header: X-Remote-User
    trusted_proxies: ["127.0.0.1", "10.0.0.0/24"]
"""
PROXY = {"X-Forwarded-For": "203.0.113.9"}


@pytest.fixture
def app(make_app, monkeypatch):
    monkeypatch.setenv("BRIDGE_ADMIN", ADMIN)
    return make_app(WITH_LOGIN)[0]


def test_without_a_token_only_the_local_host_gets_in(client):
    assert client.get("/ui/").status_code == 200
    assert client.get("/ui/", headers=PROXY).status_code == 403
    assert client.get("/ui/", environ_base={"REMOTE_ADDR": "192.0.2.4"}).status_code == 403
    assert client.get("/ui/login").status_code == 404


def test_a_proxied_request_logs_in_with_the_admin_token(app):
    c = app.test_client()
    resp = c.get("/ui/attention", headers=PROXY)
    assert resp.status_code == 302 and "/ui/login?next=/ui/attention" in resp.headers["Location"]
    form = c.get("/ui/login", headers=PROXY)
    token = csrf_of(form.data)
    wrong = c.post("/ui/login", data={"csrf": token, "token": "guess"}, headers=PROXY)
    assert wrong.status_code == 401 and ADMIN not in wrong.get_data(as_text=True)
    ok = c.post("/ui/login", data={"csrf": token, "token": ADMIN, "next": "/ui/attention"},
                headers={**PROXY, "X-Forwarded-Proto": "https"})
    assert ok.status_code == 303 and ok.headers["Location"].endswith("/ui/attention")
    cookie = next(h for h in ok.headers.getlist("Set-Cookie") if h.startswith("bridge_ui_session="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie
    assert ADMIN not in cookie
    assert c.get("/ui/attention", headers=PROXY).status_code == 200


def test_login_without_tls_sets_no_secure_flag_and_never_redirects_away(app):
    c = app.test_client()
    token = csrf_of(c.get("/ui/login", headers=PROXY).data)
    ok = c.post("/ui/login", data={"csrf": token, "token": ADMIN, "next": "//evil.example/x"},
                headers=PROXY)
    assert ok.headers["Location"].endswith("/ui/") and "evil" not in ok.headers["Location"]
    cookie = next(h for h in ok.headers.getlist("Set-Cookie") if h.startswith("bridge_ui_session="))
    assert "Secure" not in cookie


def test_a_forged_session_cookie_is_refused(app):
    c = app.test_client()
    c.set_cookie("bridge_ui_session", "eyJ1IjoiYWRtaW4ifQ.forged.sig")
    assert c.get("/ui/", headers=PROXY).status_code == 302


def test_the_user_header_counts_only_from_a_trusted_proxy(app):
    c = app.test_client()
    trusted = c.get("/ui/", headers={**PROXY, "X-Remote-User": "alice"},
                    environ_base={"REMOTE_ADDR": "10.0.0.5"})
    assert trusted.status_code == 200 and "<span>alice</span>" in trusted.get_data(as_text=True)
    stranger = c.get("/ui/", headers={**PROXY, "X-Remote-User": "alice"},
                     environ_base={"REMOTE_ADDR": "10.0.1.5"})
    assert stranger.status_code == 302


def test_a_post_without_the_csrf_token_is_refused(client):
    page = client.get("/ui/explain")
    assert page.status_code == 200
    no_token = client.post("/ui/explain", data={"source": "github", "event": "push", "payload": "{}"})
    assert no_token.status_code == 400 and "CSRF" in no_token.get_data(as_text=True)
    wrong = client.post("/ui/explain", data={"csrf": "0" * 64, "source": "github", "payload": "{}"})
    assert wrong.status_code == 400
    assert client.post("/ui/jobs/1/retry", data={"confirm": "yes"}).status_code == 400
    cookie = next(h for h in page.headers.getlist("Set-Cookie") if h.startswith("bridge_ui_csrf="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_the_json_api_needs_json_and_an_admin(client):
    assert client.post("/api/explain", data="source=github").status_code == 415
    assert client.post("/api/explain", json={"source": "github"},
                       environ_base={"REMOTE_ADDR": "192.0.2.4"}).status_code == 403


class Clock:
    def __init__(self):
        self.now = 500.0

    def __call__(self):
        return self.now


def test_failed_logins_from_one_client_get_429_then_pass_after_the_window(app):
    clock = Clock()
    app.extensions["bridge"].brake = TokenBrake(clock=clock)
    c = app.test_client()
    token = csrf_of(c.get("/ui/login", headers=PROXY).data)

    def login(secret, headers=PROXY):
        return c.post("/ui/login", data={"csrf": token, "token": secret}, headers=headers)
    assert [login(f"guess-{i}").status_code for i in range(FAILURES)] == [401] * FAILURES
    clock.now += 15
    locked = login(ADMIN)                       # even the right token is not looked at now
    assert locked.status_code == 429 and locked.headers["Retry-After"] == "45"
    assert "too many wrong admin tokens" in locked.get_data(as_text=True)
    assert "bridge_ui_session=" not in " ".join(locked.headers.getlist("Set-Cookie"))
    other = login(ADMIN, {"X-Forwarded-For": "203.0.113.10"})     # another client behind the proxy
    assert other.status_code == 303
    clock.now += 45
    assert login(ADMIN).status_code == 303      # the window has passed
    # a success forgets the failures: a new run of them starts from none
    assert [login("guess").status_code for _ in range(FAILURES)] == [401] * FAILURES
    assert login("guess").status_code == 429


def test_a_successful_login_is_never_counted(app):
    c = app.test_client()
    token = csrf_of(c.get("/ui/login", headers=PROXY).data)
    for _ in range(FAILURES * 3):
        assert c.post("/ui/login", data={"csrf": token, "token": ADMIN}, headers=PROXY).status_code == 303
