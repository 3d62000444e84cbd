"""The brake on guessing settings.admin_token covers the bearer header of every admin endpoint
(the delivery page, its JSON API, /metrics, /readyz?targets=1), counted per client together with
the login form's tries: after 5 wrong tokens a minute, 429 with Retry-After and the token not
accepted; the right token works again once the oldest wrong one is a minute old, and clears the
count; the local host without a token and a login session are not braked. The real app, in
process, with the brake's clock in the test's hand; and one real `cibridge serve`."""
from __future__ import annotations

import logging

import pytest
import requests
from helpers.payloads import load_payload
from helpers.process import BridgeProcess
from helpers.rules import BASE_RULES
from helpers.ui import csrf_of

from bridge.metrics import Metrics
from bridge.web.throttle import FAILURES, TokenBrake

ADMIN = "admin-token-7c2a"
RULES = BASE_RULES + """\
settings:
  admin_token: "${env:BRIDGE_ADMIN}"
  ui:
    trusted_proxies: ["127.0.0.1", "10.0.0.0/24"]
"""
#: A client behind the reverse proxy (nginx on this host, a trusted proxy).
PROXY = {"X-Forwarded-For": "203.0.113.9"}
OTHER = {"X-Forwarded-For": "203.0.113.10"}


def bearer(token: str, headers=PROXY) -> dict:
    return {**headers, "Authorization": f"Bearer {token}"}


class Clock:
    def __init__(self):
        self.now = 500.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def app(make_app, monkeypatch, clock):
    monkeypatch.setenv("BRIDGE_ADMIN", ADMIN)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    app = make_app(RULES)[0]
    app.extensions["bridge"].metrics = Metrics()
    app.extensions["bridge"].brake = TokenBrake(clock=clock)
    return app


#: Each family of admin endpoints: (method, path, payload to explain, the answer to a wrong token).
FAMILIES = {
    "metrics": ("GET", "/metrics", None, 403),
    "readyz targets": ("GET", "/readyz?targets=1", None, 403),
    "delivery page": ("GET", "/ui/attention", None, 302),          # to the login form
    "explain api": ("POST", "/api/explain", "github/push__goscm-branch.json", 403),
}


def call(c, family, headers):
    method, path, payload, _ = FAMILIES[family]
    body = None if payload is None else {"source": "github", "event": "push",
                                         "payload": load_payload(payload)[0].decode("utf-8")}
    return c.open(path, method=method, json=body, headers=headers)


@pytest.mark.parametrize("family", FAMILIES)
def test_wrong_bearer_tokens_are_braked_then_the_right_one_works_after_the_window(app, clock, family):
    c = app.test_client()
    wrong_status = FAMILIES[family][3]
    assert call(c, family, bearer(ADMIN)).status_code == 200
    assert [call(c, family, bearer(f"guess-{i}")).status_code for i in range(FAILURES)] \
        == [wrong_status] * FAILURES
    clock.now += 15
    locked = call(c, family, bearer(ADMIN))             # even the right token is not taken now
    assert locked.status_code == 429 and locked.headers["Retry-After"] == "45"
    assert "too many wrong admin tokens" in locked.get_json()["error"]
    assert ADMIN not in locked.get_data(as_text=True)
    assert call(c, family, bearer(f"guess-{FAILURES}")).status_code == 429   # nor a wrong one
    assert call(c, family, bearer(ADMIN, OTHER)).status_code == 200          # another client
    clock.now += 44
    assert call(c, family, bearer(ADMIN)).status_code == 429
    clock.now += 1
    assert call(c, family, bearer(ADMIN)).status_code == 200                 # the window passed
    # the right token cleared the count: a new run of wrong ones starts from none
    assert [call(c, family, bearer("guess")).status_code for _ in range(FAILURES)] \
        == [wrong_status] * FAILURES
    assert call(c, family, bearer("guess")).status_code == 429


def test_the_delivery_page_braked_keeps_its_security_headers(app):
    c = app.test_client()
    for i in range(FAILURES):
        c.get("/ui/", headers=bearer(f"guess-{i}"))
    locked = c.get("/ui/", headers=bearer(ADMIN))
    assert locked.status_code == 429 and "default-src 'none'" in locked.headers["Content-Security-Policy"]


def login(c, token, csrf, headers=PROXY):
    return c.post("/ui/login", data={"csrf": csrf, "token": token}, headers=headers)


def test_the_login_form_and_the_bearer_header_share_one_count(app, clock):
    c = app.test_client()
    csrf = csrf_of(c.get("/ui/login", headers=PROXY).data)
    # 3 wrong logins and 2 wrong bearer tokens from one client: the brake is on for both
    assert [login(c, f"guess-{i}", csrf).status_code for i in range(3)] == [401] * 3
    assert [c.get("/metrics", headers=bearer(f"guess-{i}")).status_code for i in range(2)] == [403] * 2
    form = login(c, ADMIN, csrf)
    assert form.status_code == 429 and form.headers["Retry-After"] == "60"
    assert "too many wrong admin tokens" in form.get_data(as_text=True)
    assert "bridge_ui_session=" not in " ".join(form.headers.getlist("Set-Cookie"))
    assert c.get("/metrics", headers=bearer(ADMIN)).status_code == 429
    clock.now += 60
    # the right bearer token clears the count the login form made, and the other way round
    assert [login(c, f"guess-{i}", csrf).status_code for i in range(FAILURES - 1)] == [401] * 4
    assert c.get("/metrics", headers=bearer(ADMIN)).status_code == 200
    assert [c.get("/metrics", headers=bearer(f"guess-{i}")).status_code
            for i in range(FAILURES - 1)] == [403] * 4
    assert login(c, ADMIN, csrf).status_code == 303
    assert [login(c, f"guess-{i}", csrf).status_code for i in range(FAILURES)] == [401] * FAILURES
    assert c.get("/readyz?targets=1", headers=bearer(ADMIN)).status_code == 429


def test_the_local_host_without_a_token_and_a_login_session_are_not_braked(app):
    c = app.test_client()
    csrf = csrf_of(c.get("/ui/login", headers=PROXY).data)
    assert login(c, ADMIN, csrf).status_code == 303       # a session cookie for 203.0.113.9
    for i in range(FAILURES):
        assert c.get("/metrics", headers=bearer(f"guess-{i}")).status_code == 403
    assert c.get("/metrics", headers=bearer(ADMIN)).status_code == 429
    assert c.get("/ui/attention", headers=PROXY).status_code == 200          # the session
    local = app.test_client()                             # straight from 127.0.0.1
    for i in range(FAILURES):
        assert local.get("/metrics", headers=bearer(f"guess-{i}", {})).status_code == 403
    assert local.get("/metrics", headers=bearer(ADMIN, {})).status_code == 429
    assert local.get("/metrics").status_code == 200                          # no token: as before
    assert local.get("/readyz?targets=1").status_code == 200
    assert local.get("/ui/").status_code == 200


def test_a_bearer_header_without_an_admin_token_configured_is_not_counted(make_app):
    app = make_app(BASE_RULES)[0]
    c = app.test_client()
    for _ in range(FAILURES * 2):
        assert c.get("/ui/", headers={"Authorization": "Bearer anything"}).status_code == 200
        assert c.get("/ui/", headers=bearer("anything")).status_code == 403   # forwarded: not local


def test_wrong_bearer_tokens_are_logged_by_client_never_the_token(app, caplog):
    c = app.test_client()
    with caplog.at_level(logging.WARNING, logger="bridge.admin"):
        for i in range(FAILURES + 1):
            c.get("/metrics", headers=bearer(f"guess-{i}-{ADMIN}"))
    lines = [r.getMessage() for r in caplog.records if r.name == "bridge.admin"]
    assert lines[:FAILURES] == ["admin: wrong bearer token from 203.0.113.9"] * FAILURES
    assert lines[FAILURES] == ("admin: bearer token from 203.0.113.9 refused for 60 s: too many "
                               "wrong admin tokens")
    assert not any(ADMIN in line or "guess" in line for line in lines)


def test_one_brake_per_worker_of_a_real_serve(tmp_path):
    """One gunicorn worker: the bearer header on /metrics and the login form count together,
    straight from 127.0.0.1 and for a client behind nginx on this host."""
    with BridgeProcess(tmp_path / "b", RULES, env={"BRIDGE_ADMIN": ADMIN, "GH_SECRET": "s",
                                                    "GH_SECRET_OLD": "o", "GL_TOKEN": "t"},
                       workers=1, dispatcher=False) as bridge:
        url = bridge.url
        for i in range(FAILURES - 1):
            r = requests.get(f"{url}/metrics", headers=bearer(f"guess-{i}"), timeout=10)
            assert r.status_code == 403
        s = requests.Session()
        csrf = csrf_of(s.get(f"{url}/ui/login", headers=PROXY, timeout=10).content)
        wrong = s.post(f"{url}/ui/login", data={"csrf": csrf, "token": "guess"}, headers=PROXY,
                       timeout=10, allow_redirects=False)
        assert wrong.status_code == 401
        form = s.post(f"{url}/ui/login", data={"csrf": csrf, "token": ADMIN}, headers=PROXY,
                      timeout=10, allow_redirects=False)
        assert form.status_code == 429 and 1 <= int(form.headers["Retry-After"]) <= 60
        locked = requests.get(f"{url}/metrics", headers=bearer(ADMIN), timeout=10)
        assert locked.status_code == 429 and 1 <= int(locked.headers["Retry-After"]) <= 60
        assert requests.get(f"{url}/metrics", headers=bearer(ADMIN, OTHER), timeout=10).ok
        assert requests.get(f"{url}/metrics", timeout=10).status_code == 200   # local, no token
        logs = bridge.logs()
    assert logs.count("wrong bearer token from 203.0.113.9") == FAILURES - 1
    assert ADMIN not in logs and "guess" not in logs
