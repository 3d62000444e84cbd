"""One delivery meaning several events (Bitbucket: one per change of a `repo:push`) through the app:
no rule for any of them is a 200 counted as no_match; some jobs a 202 counted as accepted with
each rule matched once; a store that cannot be reached a 503 with Retry-After and nothing
stored. The real Bitbucket payload, signed as Bitbucket signs it."""
from __future__ import annotations

import json
import socket

import pytest
from helpers.hosts import host_headers, signed
from helpers.rules import BASE_RULES, HOSTS_RULES
from prometheus_client import CollectorRegistry

from bridge.config.load import load_config
from bridge.metrics import Metrics
from bridge.web.app import create_app

REL = "bitbucket/repo_push__jenkins-multiple-changes.json"
MULTI = "a742f122-2084-52a7-b356-d2a958570b2c"
ONLY_OTHERS = BASE_RULES.replace("targets:", """\
  bitbucket:
    provider: bitbucket
    secrets: ["${env:BB_SECRET}"]
targets:""", 1).split("rules:")[0] + """\
rules:
  - name: elsewhere
    on: {repo: "other/repo"}
    run: {target: mem}
"""


def counted(app) -> tuple[dict, dict]:
    registry = app.extensions["bridge"].metrics.registry
    outcomes, rules = {}, {}
    for family in registry.collect():
        for s in family.samples:
            if s.name == "bridge_deliveries_total" and s.value:
                outcomes[(s.labels["outcome"], s.labels["status"])] = s.value
            if s.name == "bridge_rules_matched_total" and s.value:
                rules[s.labels["rule"]] = s.value
    return outcomes, rules


@pytest.fixture
def app_with(make_app, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)

    def make(text):
        app, store = make_app(text)
        app.extensions["bridge"].metrics = Metrics(registry=CollectorRegistry())
        return app, store
    return make


def test_no_rule_for_any_change_is_a_200_no_match(app_with):
    app, store = app_with(ONLY_OTHERS)
    body, headers = signed("bitbucket", REL)
    resp = app.test_client().post("/hooks/bitbucket", data=body, headers=headers)
    data = resp.get_json()
    assert resp.status_code == 200
    assert (data["delivery"], data["matched"], data["jobs"]) == (MULTI, [], [])
    assert [(e["delivery"], e["matched"], e["jobs"]) for e in data["events"]] == [
        (MULTI, [], []), (MULTI + "+2", [], []), (MULTI + "+3", [], [])]
    assert counted(app) == ({("no_match", "200"): 1}, {})
    assert [d["outcome"] for d in store.list_deliveries()] == ["no_match"] * 3


def test_jobs_are_a_202_and_each_rule_is_counted_once(app_with):
    app, _ = app_with(HOSTS_RULES)
    body, headers = signed("bitbucket", REL)
    resp = app.test_client().post("/hooks/bitbucket", data=body, headers=headers)
    assert resp.status_code == 202
    assert resp.get_json()["matched"] == ["every-branch", "tags"]          # every-branch matched twice
    assert counted(app) == ({("accepted", "202"): 1}, {"every-branch": 1, "tags": 1})
    again = app.test_client().post("/hooks/bitbucket", data=body, headers=headers)
    assert again.get_json() == {"delivery": MULTI, "duplicate_of": MULTI,
                                "reason": "this delivery (same id and body) was already received"}
    assert counted(app)[0] == {("accepted", "202"): 1, ("duplicate", "200"): 1}


def test_a_store_that_cannot_be_reached_is_a_503(write_rules, tmp_path, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    config = load_config(write_rules(HOSTS_RULES + "settings:\n  database_url: "
                                     f"postgresql://postgres@127.0.0.1:{dead_port}/test?connect_timeout=2\n"))
    app = create_app(config, state_dir=str(tmp_path), metrics=Metrics(registry=CollectorRegistry()))
    body, headers = signed("bitbucket", REL)
    resp = app.test_client().post("/hooks/bitbucket", data=body, headers=headers)
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "30"
    assert resp.get_json() == {"delivery": MULTI, "error": "the bridge could not store the delivery; "
                                                           "nothing was accepted, please redeliver"}
    assert counted(app) == ({("unavailable", "503"): 1}, {})


def test_two_changes_are_two_events(app_with):
    # The least that is "several": both changes stored and built, not only the first.
    app, store = app_with(HOSTS_RULES)
    body, headers = signed("bitbucket", REL)
    payload = json.loads(body)
    payload["push"]["changes"] = payload["push"]["changes"][:2]
    two = json.dumps(payload).encode()
    resp = app.test_client().post("/hooks/bitbucket", data=two, headers=host_headers("bitbucket", two, headers))
    assert resp.status_code == 202
    assert [(e["delivery"], e["ref"]) for e in resp.get_json()["events"]] == [
        (MULTI, "refs/heads/main"), (MULTI + "+2", "refs/heads/manchu")]
    assert len(resp.get_json()["jobs"]) == 2 and len(store.list_deliveries()) == 2
