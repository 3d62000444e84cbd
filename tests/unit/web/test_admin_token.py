"""The admin guard (`/metrics`) in-process and fast: the bearer token (a wrong one refused even
locally), loopback callers, forwarded requests, remote callers."""
import pytest
from helpers.rules import BASE_RULES

ADMIN = "admin-token-5c1e"


@pytest.fixture
def client(make_app, monkeypatch):
    from bridge.metrics import Metrics
    monkeypatch.setenv("ADMIN_TOKEN", ADMIN)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    app, store = make_app(BASE_RULES + "settings:\n  admin_token: ${env:ADMIN_TOKEN}\n")
    app.extensions["bridge"].metrics = Metrics()
    return app.test_client()


REMOTE = {"REMOTE_ADDR": "10.0.0.5"}


@pytest.mark.parametrize("environ, headers, status", [
    ({}, {}, 200),                                                        # loopback, no token
    ({"REMOTE_ADDR": "::1"}, {}, 200),
    (REMOTE, {}, 403),
    (REMOTE, {"Authorization": f"Bearer {ADMIN}"}, 200),
    ({}, {"Authorization": f"Bearer {ADMIN}x"}, 403),                    # wrong token, even locally
    ({}, {"Authorization": f"Bearer {ADMIN[:-1]}"}, 403),
    ({}, {"Authorization": "Bearer "}, 403),
    (REMOTE, {"Authorization": f"Bearer {ADMIN.upper()}"}, 403),
    (REMOTE, {"Authorization": f"Basic {ADMIN}"}, 403),
    ({}, {"X-Forwarded-For": "1.2.3.4"}, 403),                           # a local proxy forwarded it
    ({}, {"Forwarded": "for=1.2.3.4"}, 403),
    ({}, {"X-Real-IP": "1.2.3.4"}, 403),
    ({}, {"X-Forwarded-For": "1.2.3.4", "Authorization": f"Bearer {ADMIN}"}, 200),
    ({"REMOTE_ADDR": "not-an-address"}, {}, 403),
])
def test_admin_guard(client, environ, headers, status):
    resp = client.get("/metrics", environ_base=environ, headers=headers)
    assert resp.status_code == status, resp.get_data()
    if status == 403:
        assert "admin bearer token" in resp.get_json()["error"]
        assert ADMIN not in resp.get_data(as_text=True)
