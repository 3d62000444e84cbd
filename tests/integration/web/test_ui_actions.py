"""The delivery page's actions through the Flask test client: retry one dead job, retry all a
filter finds, replay a delivery, each after a confirmation and logged with who; and "try a
payload", whose JSON answer is the CLI's `explain --format json`."""
from __future__ import annotations

import json
import logging

import pytest
from click.testing import CliRunner
from helpers.payloads import load_payload, payload_files, payloads_dir, sign_github
from helpers.rules import GITHUB_SECRET
from helpers.ui import csrf_of, fill, post_form

from bridge.cli.main import cli


@pytest.fixture
def ui(make_app):
    app, store = make_app()
    client = app.test_client()
    client.store, client.filled = store, fill(store, 40)
    return client


def test_retry_asks_first_then_queues_the_dead_job_and_logs_who(ui, caplog):
    job = ui.filled.by_state["dead"][0]
    ask = ui.get(f"/ui/jobs/{job}/retry")
    assert ask.status_code == 200 and b"Queue job" in ask.data
    assert ui.store.find_jobs(ids=[job])[0]["state"] == "dead"           # asking changed nothing
    unconfirmed = ui.post(f"/ui/jobs/{job}/retry", data={"csrf": csrf_of(ask.data)})
    assert unconfirmed.status_code == 200 and ui.store.find_jobs(ids=[job])
    with caplog.at_level(logging.INFO, logger="bridge.ui"):
        done = post_form(ui, f"/ui/jobs/{job}/retry", {"confirm": "yes"})
    assert done.status_code == 200 and b"queued again" in done.data
    d = ui.store.get_delivery(ui.store.find_jobs(states=["queued"], ids=[job])[0]["delivery"])
    assert d["jobs"][0]["history"][-1]["error"] == "queued again by local (was dead)"
    assert any(r.getMessage().startswith("ui: local retried job") for r in caplog.records)
    again = post_form(ui, f"/ui/jobs/{job}/retry", {"confirm": "yes"}, via="/ui/attention")
    assert again.status_code == 409


def test_retry_all_that_a_filter_finds(ui):
    dead = set(ui.filled.by_state["dead"])
    page = ui.get("/ui/attention?state=dead")
    assert all(f'id="job-row-{j}"'.encode() in page.data for j in dead)
    ask = ui.get("/ui/retry?state=dead")
    assert f"Queue these {len(dead)} job(s) again?".encode() in ask.data
    done = ui.post("/ui/retry", data={"csrf": csrf_of(ask.data), "confirm": "yes", "state": "dead"})
    assert f"queued {len(dead)} job(s) again".encode() in done.data
    assert {j["id"] for j in ui.store.find_jobs(states=["queued"], ids=list(dead))} == dead


def test_replay_under_todays_rules_and_as_stored(ui):
    body, headers = load_payload(next(p for p in payload_files("github") if "push" in p))
    headers.update(sign_github(body, GITHUB_SECRET))
    did = ui.post("/hooks/github", data=body, headers=headers).get_json()["delivery"]
    before = len(ui.store.get_delivery(did)["jobs"])
    ask = ui.get(f"/ui/deliveries/{did}/replay")
    assert b"every-branch" in ask.data          # the base rules' rule, matched again
    done = post_form(ui, f"/ui/deliveries/{did}/replay", {"confirm": "yes"})
    assert b"queued 1 job(s)" in done.data
    stored = post_form(ui, f"/ui/deliveries/{did}/replay", {"confirm": "yes", "as": "stored"})
    assert b"queued 2 job(s)" in stored.data            # the first one and the replayed one
    rules = [j["rule"] for j in ui.store.get_delivery(did)["jobs"]]
    assert before == 1 and rules == ["every-branch"] * 4


@pytest.mark.parametrize("rel", payload_files("github")[:8])
def test_api_explain_answers_what_the_cli_prints(client, write_rules, tmp_path, rel):
    body, headers = load_payload(rel)
    event = headers["X-GitHub-Event"]
    api = client.post("/api/explain", json={"source": "github", "event": event,
                                            "payload": body.decode("utf-8")})
    rules = write_rules()
    out = CliRunner().invoke(cli, ["explain", "--rules", str(rules), "--source", "github", "--event",
                                   event, "--format", "json", str(payloads_dir() / rel)])
    assert api.status_code == 200 and out.exit_code == 0, out.output
    assert api.get_json() == json.loads(out.output)


def test_try_a_payload_page_shows_the_trace_and_stores_nothing(client):
    body, _ = load_payload(next(p for p in payload_files("github") if "push" in p))
    resp = post_form(client, "/ui/explain", {"source": "github", "event": "push",
                                             "payload": body.decode("utf-8")})
    assert resp.status_code == 200 and b"every-branch" in resp.data and b'class="trace"' in resp.data
    bad = post_form(client, "/ui/explain", {"source": "github", "event": "push", "payload": "not json"})
    assert bad.status_code == 400 and b't-error' in bad.data
    assert client.store.delivery_page().rows == []
