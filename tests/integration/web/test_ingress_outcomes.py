"""Each ingress outcome as operators see it: the delivery counter (source, outcome, status) and
rules-matched counter of /metrics, and the warning when a host reuses a delivery id for a
different body; plus the "why nothing was built" sentence for every count of other rules."""
import json
import logging
import socket

import pytest
from helpers.rules import GITHUB_SECRET, GITHUB_TO_MEMORY
from prometheus_client import CollectorRegistry
from helpers.payloads import sign_github

from bridge.web.ingress import no_match_reason
from bridge.metrics import Metrics
from bridge.rules import Verdict

A, B = "a" * 40, "b" * 40
RULES = GITHUB_TO_MEMORY + """\
rules:
  - name: api-main
    on: {repo: acme/api, branches: [main]}
    run: {target: mem}
"""


def body_of(*, ref="refs/heads/main", after=B, repo="acme/api", extra=None):
    payload = {"ref": ref, "before": A, "after": after, "repository": {"full_name": repo}, "commits": []}
    payload.update(extra or {})
    return json.dumps(payload).encode()


def post(app, body, delivery, event="push", secret=GITHUB_SECRET):
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "Content-Type": "application/json",
               **sign_github(body, secret)}
    return app.test_client().post("/hooks/github", data=body, headers=headers)


@pytest.fixture
def app(make_app, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    app, _ = make_app(RULES)
    app.extensions["bridge"].metrics = Metrics(registry=CollectorRegistry())
    return app


def deliveries(app) -> dict:
    registry = app.extensions["bridge"].metrics.registry
    out = {}
    for family in registry.collect():
        for s in family.samples:
            if s.name == "bridge_deliveries_total" and s.value:
                out[(s.labels["outcome"], s.labels["status"])] = s.value
    return out


def matched(app, rule):
    return app.extensions["bridge"].metrics.registry.get_sample_value(
        "bridge_rules_matched_total", {"rule": rule}) or 0


def test_every_outcome_is_counted_with_its_status(app):
    assert post(app, body_of(), "d-1").status_code == 202
    assert post(app, body_of(), "d-1").status_code == 200                       # same id and body
    assert post(app, body_of(), "d-2").status_code == 200                       # same push, new id
    assert post(app, b'{"zen": "x"}', "d-3", event="ping").status_code == 200   # ignored
    assert post(app, body_of(ref="refs/heads/dev", after="c" * 40), "d-4").status_code == 200  # no rule
    assert post(app, body_of(after="d" * 40), "d-5", secret="wrong").status_code == 401
    assert deliveries(app) == {("accepted", "202"): 1, ("duplicate", "200"): 2, ("ignored", "200"): 1,
                               ("no_match", "200"): 1, ("refused", "401"): 1}
    assert matched(app, "api-main") == 1


def test_a_store_outage_is_counted_as_503(write_rules, tmp_path, monkeypatch):
    from bridge.web.app import create_app
    from bridge.config.load import load_config
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    config = load_config(write_rules(RULES + "settings:\n  database_url: "
                                     f"postgresql://postgres@127.0.0.1:{dead_port}/test?connect_timeout=2\n"))
    app = create_app(config, state_dir=str(tmp_path), metrics=Metrics(registry=CollectorRegistry()))
    resp = post(app, body_of(), "d-1")
    assert resp.status_code == 503
    assert resp.get_json() == {"delivery": "d-1", "error": "the bridge could not store the delivery; nothing "
                                                           "was accepted, please redeliver"}
    assert deliveries(app) == {("unavailable", "503"): 1}


def test_a_reused_delivery_id_with_another_body_is_stored_and_warned_about(app, caplog):
    assert post(app, body_of(), "d-1").status_code == 202
    with caplog.at_level(logging.INFO, logger="bridge.ingress"):
        resp = post(app, body_of(after="e" * 40), "d-1")
    assert resp.status_code == 202
    stored_as = resp.get_json()["delivery"]
    assert stored_as != "d-1"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "already stored with a different body" in warnings[0].getMessage()
    assert getattr(warnings[0], "host_delivery") == "d-1"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bridge.ingress"):
        assert post(app, body_of(), "d-1").status_code == 200       # a true redelivery: no warning
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def near(*names):
    return [Verdict(n, False, "other repo") for n in names]


@pytest.mark.parametrize("verdicts, near_rules, others, reason", [
    (near("r"), [], 0, "no rule matched"),
    (near("r"), [], 1, "no rule matched; 1 other rule names other repositories"),
    (near("r"), [], 2, "no rule matched; 2 other rules name other repositories"),
    ([], [], 0, "no rule names this repository"),
    ([], near("a"), 0, "no rule names this repository; nearest: a (see 'rules')"),
    ([], near("a", "b", "c"), 3, "no rule names this repository; nearest: a, b, c (see 'rules'); "
                                 "3 other rules name other repositories"),
    ([], near("a", "b", "c", "d"), 1, "no rule names this repository; nearest: a, b, c, ... (see 'rules'); "
                                      "1 other rule names other repositories"),
])
def test_no_match_reason(verdicts, near_rules, others, reason):
    assert no_match_reason(verdicts, near_rules, others) == reason
