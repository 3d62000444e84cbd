"""The delivery page's read views through the Flask test client on a real SQLite store: the
list with its filters, chart and pages, one delivery with its trace, escaping, hidden secrets,
the security headers, and links under the proxy's prefix."""
from __future__ import annotations

import re
from dataclasses import replace

import pytest
from helpers.store import new_delivery, new_job
from helpers.ui import SCRIPT_BRANCH, fill, supersede

NOW_FILL = dict(start=1_000_000.0, step=30.0)


@pytest.fixture
def ui(make_app):
    app, store = make_app()
    filled = fill(store, 60, **NOW_FILL)
    client = app.test_client()
    client.store, client.filled = store, filled
    return client


def rows(resp) -> list[str]:
    return re.findall(r'href="/ui/deliveries/([^"]+)" class="open"', resp.get_data(as_text=True))


def test_the_list_shows_newest_first_with_badges_and_pages_by_keyset(ui):
    first = ui.get("/ui/")
    assert first.status_code == 200
    html = first.get_data(as_text=True)
    got = rows(first)
    assert len(got) == 50 and got[0] == ui.filled.newest
    assert 'class="badge s-dead"' in html and ">accepted<" in html and ">no match<" in html
    assert '<svg viewBox="0 -12 1440 126"' in html and "Rules in force" in html
    nxt = re.search(r'id="next" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    second = ui.get(nxt)
    assert len(rows(second)) == 10 and not set(rows(second)) & set(got)
    assert "<svg" not in second.get_data(as_text=True)          # the chart heads the first page only


def test_filters_by_repo_state_outcome_and_ref(ui):
    acme = rows(ui.get("/ui/?repo=acme/api"))
    assert acme and all(ui.store.get_delivery(d)["repo"] == "acme/api" for d in acme)
    dead = rows(ui.get("/ui/?state=dead"))
    assert dead and all(any(j["state"] == "dead" for j in ui.store.get_delivery(d)["jobs"]) for d in dead)
    assert set(rows(ui.get("/ui/?outcome=ignored"))) == set(ui.filled.by_outcome["ignored"])
    assert rows(ui.get("/ui/?repo=ACME/*&outcome=matched&ref=main"))
    bad = ui.get("/ui/?outcome=accepted")
    assert bad.status_code == 400 and "unknown outcome" in bad.get_data(as_text=True)
    assert ui.get("/ui/?since=soon").status_code == 400


def test_one_delivery_shows_its_event_trace_jobs_and_attempts(ui):
    did = ui.filled.by_outcome["matched"][3]
    html = ui.get(f"/ui/deliveries/{did}").get_data(as_text=True)
    assert "Verdicts when it arrived" in html and "Explained under today" in html
    assert 'id="job-' in html and "Attempt" in html
    assert ui.get("/ui/deliveries/no-such-id").status_code == 404


def test_a_script_branch_is_text_everywhere(ui):
    did = ui.filled.script_delivery
    for url in ("/ui/", f"/ui/deliveries/{did}", "/ui/attention"):
        html = ui.get(url).get_data(as_text=True)
        assert SCRIPT_BRANCH not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_secret_sounding_request_keys_are_hidden(make_app):
    app, store = make_app()
    got = store.ingest(new_delivery("d-secret"), [new_job(api_token="tok-123", nested={"Password": "pw"})])
    html = app.test_client().get("/ui/deliveries/d-secret").get_data(as_text=True)
    assert got.job_ids and "tok-123" not in html and "pw\"" not in html and "(hidden)" in html


def test_every_answer_carries_a_strict_csp(ui):
    for url in ("/ui/", "/ui/attention", "/ui/explain", "/ui/static/ui.css"):
        resp = ui.get(url)
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp and "unsafe" not in csp
        assert resp.headers["X-Frame-Options"] == "DENY"
    assert "<script" not in ui.get("/ui/").get_data(as_text=True)


def test_links_carry_the_proxys_prefix_only_from_a_trusted_proxy(ui):
    behind = ui.get("/ui/", headers={"X-Forwarded-Prefix": "/bridge"})
    assert behind.status_code == 200     # no X-Forwarded-For: the local host itself
    assert 'href="/bridge/ui/static/ui.css"' in behind.get_data(as_text=True)
    stranger = ui.get("/ui/", headers={"X-Forwarded-Prefix": "/evil"},
                      environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert stranger.status_code == 403 and "/evil" not in stranger.get_data(as_text=True)


def test_via_shows_on_the_row_and_the_delivery(make_app):
    app, store = make_app()
    store.ingest(replace(new_delivery("d-recovered", received_at=1000.0), via="reconcile"), [new_job()])
    store.ingest(new_delivery("d-again", received_at=1001.0, after="c" * 40), [new_job()])
    store.mark_via(["d-again"], "redelivery")
    store.ingest(new_delivery("d-plain", received_at=1002.0, after="d" * 40), [new_job()])
    c = app.test_client()
    html = c.get("/ui/").get_data(as_text=True)
    assert html.count('<span class="badge via"') == 2
    assert ">via reconcile</span>" in html and ">via redelivery</span>" in html
    page = c.get("/ui/deliveries/d-recovered").get_data(as_text=True)
    assert 'id="via"' in page and "recovered by reconcile" in page
    assert 'id="via"' not in c.get("/ui/deliveries/d-plain").get_data(as_text=True)


def test_a_superseded_job_is_a_badge_of_its_own_and_names_its_successor(make_app):
    app, store = make_app()
    older, job, newer = supersede(store)
    c = app.test_client()
    html = c.get("/ui/").get_data(as_text=True)
    assert re.search(rf'<span class="badge s-superseded" title="build -> mem; superseded by job {newer}">'
                     r"build: superseded</span>", html)
    assert "<option value=\"superseded\"" in html
    assert rows(c.get("/ui/?state=superseded")) == [older]
    page = c.get(f"/ui/deliveries/{older}").get_data(as_text=True)
    assert f"job {newer}, a newer job of its group" in page
    assert ".s-superseded {" in c.get("/ui/static/ui.css").get_data(as_text=True)
