"""Refused deliveries from ingress to the delivery page, through the Flask test client on a real
SQLite store: what a refusal's row keeps (never the body, the signature or another header), at
most one row a second per worker with the rest counted, a failed write that changes no reply,
and the list, filter, chart and page of refusals."""
from __future__ import annotations

import json
import logging
import os
import re

import pytest
from helpers.payloads import sign_github
from helpers.rules import GITHUB_SECRET
from helpers.store import run_sql
from helpers.ui import fill

from bridge.web.refusals import RefusalRecorder

BODY = json.dumps({"ref": "refs/heads/main", "before": "a" * 40, "after": "b" * 40,
                   "repository": {"full_name": "acme/api"}, "commits": [],
                   "marker": "body-must-not-be-kept"}).encode()
WRONG = sign_github(BODY, "not-the-secret")


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def ui(make_app, tmp_path):
    app, store = make_app()
    clock = Clock()
    app.extensions["bridge"].refusals = RefusalRecorder(clock=clock)
    client = app.test_client()
    client.store, client.clock, client.url = store, clock, f"sqlite:///{tmp_path / 'bridge.db'}"
    return client


def send(client, source="github", signature=WRONG, delivery="host-id-1", **kw):
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery, "X-Api-Key": "key-must-not-be-kept",
               "Content-Type": "application/json", **signature}
    with client.post(f"/hooks/{source}", data=BODY, headers=headers, **kw) as resp:   # closed: recorded
        return resp.status_code


def refused_rows(client) -> list[dict]:
    return [r for r in client.store.delivery_page(limit=500).rows if r["outcome"] == "refused"]


def test_a_refusal_keeps_our_reason_and_no_body_signature_or_header(ui):
    assert send(ui) == 401
    (row,) = refused_rows(ui)
    assert (row["source"], row["status"], row["host_delivery"], row["peer"]) == ("github", 401, "host-id-1",
                                                                                 "127.0.0.1")
    assert row["reason"] == "X-Hub-Signature-256 does not match the body" and row["dropped"] == 0
    path = ui.url.split("sqlite:///", 1)[1]
    raw = b"".join(open(p, "rb").read() for p in (path, path + "-wal") if os.path.exists(p))
    assert b"X-Hub-Signature-256 does not match the body" in raw      # the scan sees the row
    for secret in (b"body-must-not-be-kept", b"key-must-not-be-kept", WRONG["X-Hub-Signature-256"].encode()):
        assert secret not in raw


def test_the_clients_address_comes_from_the_trusted_proxy_only(ui):
    headers = {"X-GitHub-Event": "push", "X-Forwarded-For": "203.0.113.7", **WRONG}
    with ui.post("/hooks/github", data=BODY, headers=headers):
        pass
    ui.clock.now += 1
    with ui.post("/hooks/github", data=BODY, headers=headers, environ_base={"REMOTE_ADDR": "198.51.100.4"}):
        pass
    assert [r["peer"] for r in refused_rows(ui)] == ["198.51.100.4", "203.0.113.7"]


def test_at_most_one_row_a_second_the_rest_counted_in_the_next(ui):
    assert [send(ui, delivery=f"burst-{i}") for i in range(6)] == [401] * 6
    assert send(ui, source="nope") == 404
    assert [r["host_delivery"] for r in refused_rows(ui)] == ["burst-0"]
    ui.clock.now += 0.5
    send(ui, delivery="still-too-soon")
    ui.clock.now += 0.5
    assert send(ui, source="no<such>source\x01", delivery="") == 404
    newest = refused_rows(ui)[0]
    assert (newest["source"], newest["dropped"], newest["host_delivery"]) == ("no<such>source\\x01", 7, None)
    assert newest["reason"] == "unknown source 'no<such>source\\x01'"


def test_a_failed_write_is_logged_counted_and_changes_no_reply(ui, caplog):
    run_sql(ui.url, "CREATE TRIGGER no_refusals BEFORE INSERT ON refusals "
                    "BEGIN SELECT RAISE(ABORT, 'injected failure'); END;")
    with caplog.at_level(logging.WARNING, logger="bridge.ingress"):
        assert send(ui) == 401
    assert "refused delivery not recorded: store unavailable: injected failure" in caplog.text
    good = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "good-1", "Content-Type": "application/json",
            **sign_github(BODY, GITHUB_SECRET)}
    with ui.post("/hooks/github", data=BODY, headers=good) as resp:
        assert resp.status_code == 202
    run_sql(ui.url, "DROP TRIGGER no_refusals")
    ui.clock.now += 1
    assert send(ui, delivery="after") == 401
    (row,) = refused_rows(ui)
    assert (row["host_delivery"], row["dropped"]) == ("after", 1)       # the lost one counted


def test_a_reply_never_waits_for_the_write(ui):
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "open-1", **WRONG}
    resp = ui.post("/hooks/github", data=BODY, headers=headers)
    assert resp.status_code == 401 and refused_rows(ui) == []        # written when the reply is done
    ui.clock.now += 1
    assert send(ui, delivery="meanwhile") == 401                      # one write at a time
    resp.close()
    assert [r["host_delivery"] for r in refused_rows(ui)] == ["open-1"]
    ui.clock.now += 1
    send(ui, delivery="next")
    assert refused_rows(ui)[0]["dropped"] == 1


# -- the page ---------------------------------------------------------------------------------

def rows(resp) -> list[str]:
    return re.findall(r'<tr class="delivery( refused)?">', resp.get_data(as_text=True))


def test_the_list_shows_refusals_among_deliveries_and_alone(ui):
    filled = fill(ui.store, 40, refused=10)
    html = ui.get("/ui/").get_data(as_text=True)
    assert len(rows(ui.get("/ui/"))) == 50 and html.count('<tr class="delivery refused">') == 10
    assert "X-Hub-Signature-256 does not match the body" in html and "unknown source &#39;nope&#39;" in html
    assert "more refused just before it, not recorded" in html
    assert '<span class="badge o-refused">refused' in html           # the chart's legend and rows
    only = ui.get("/ui/?outcome=refused").get_data(as_text=True)
    assert only.count('<tr class="delivery refused">') == 10 and 'class="delivery"' not in only
    assert '<option value="refused" selected>refused</option>' in only
    assert 'class="delivery refused"' not in ui.get("/ui/?repo=acme/*").get_data(as_text=True)
    page = ui.get(f"/ui/refused/{filled.refused[1]}")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "unknown source &#39;nope&#39;" in text and "404" in text
    assert "nothing to replay" in text and "r-0001" in text
    assert ui.get("/ui/refused/999999").status_code == 404


def test_pages_of_refusals_follow_their_cursor(ui):
    fill(ui.store, 10, refused=60)
    first = ui.get("/ui/?outcome=refused").get_data(as_text=True)
    nxt = re.search(r'id="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    assert "after=r" in nxt
    second = ui.get(nxt)
    assert second.status_code == 200 and len(rows(second)) == 10
    assert ui.get("/ui/?after=rxyz:1").status_code == 400


def test_a_markup_source_name_is_text(ui):
    assert send(ui, source="<img src=x onerror=alert(1)>") == 404
    for url in ("/ui/", "/ui/?outcome=refused", f"/ui/refused/{refused_rows(ui)[0]['refusal']}"):
        html = ui.get(url).get_data(as_text=True)
        assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
