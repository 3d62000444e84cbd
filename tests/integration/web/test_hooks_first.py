"""`HooksFirst`: `POST /hooks/<source>` served in front of Flask, everything else by Flask as before.

Through the real app and Flask's test client, on a real payload signed byte for byte."""
import logging

from werkzeug.exceptions import ClientDisconnected

from helpers.payloads import load_payload, sign_github
from helpers.rules import GITHUB_SECRET

from bridge.web import ingress

PUSH = "github/push__f110-single-commit.json"


def _signed():
    body, headers = load_payload(PUSH)
    headers.update(sign_github(body, GITHUB_SECRET))
    return body, headers


def test_a_delivery_skips_flasks_request_handling(make_app):
    app, store = make_app()
    seen = []
    app.before_request(lambda: seen.append(True))
    body, headers = _signed()
    resp = app.test_client().post("/hooks/github", data=body, headers=headers)
    assert resp.status_code == 202 and store.get_delivery(resp.get_json()["delivery"])
    assert seen == []
    assert app.test_client().get("/healthz").status_code == 200 and seen == [True]


def test_what_flask_routes_otherwise_is_still_flasks(client):
    body, headers = _signed()
    got = client.get("/hooks/github")
    assert got.status_code == 405 and "POST" in got.headers["Allow"]
    assert client.post("/hooks/github/more", data=body, headers=headers).status_code == 404
    assert client.post("/hooks/", data=body, headers=headers).status_code == 404
    assert client.store.list_deliveries() == []


def test_a_source_name_is_read_as_utf8_as_flask_read_it(client):
    resp = client.post("/hooks/d%C3%A9p%C3%B4t", data=b"{}", headers={"X-GitHub-Event": "push"})
    assert resp.status_code == 404
    assert resp.get_json() == {"error": "unknown source 'd\u00e9p\u00f4t'"}


def test_a_client_gone_mid_body_is_werkzeugs_400_and_nothing_stored(client, monkeypatch):
    """What werkzeug raises reading a body cut short (gunicorn's own worker, without the
    bridge's read-ahead) is answered as Flask answered it."""
    def cut_short(req, cap):
        raise ClientDisconnected()

    monkeypatch.setattr(ingress, "read_body", cut_short)
    body, headers = _signed()
    resp = client.post("/hooks/github", data=body, headers=headers)
    assert resp.status_code == 400
    assert client.store.list_deliveries() == []


def test_an_unexpected_error_is_a_json_500_and_logged(client, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("normalizer fault")

    monkeypatch.setattr(ingress, "events_of", broken)
    body, headers = _signed()
    with caplog.at_level(logging.ERROR, logger="bridge.ingress"):
        logging.getLogger("bridge").addHandler(caplog.handler)
        try:
            resp = client.post("/hooks/github", data=body, headers=headers)
        finally:
            logging.getLogger("bridge").removeHandler(caplog.handler)
    assert resp.status_code == 500 and "please redeliver" in resp.get_json()["error"]
    assert any("normalizer fault" in (r.exc_text or "") or r.exc_info for r in caplog.records)
    assert client.store.list_deliveries() == []
