"""What users see of `policy:`: the group rendered at ingest and stored with the job, the breaker's
state in `/readyz?targets=1` and `/metrics`, and why a job waits in `cibridge deliveries` and
`deliveries show` (text and JSON), on a real SQLite store through the app and the CLI."""
from __future__ import annotations

import json
import time

from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from bridge.cli.main import cli
from bridge.metrics import Metrics
from bridge.policies import Breaker
from helpers.payloads import load_payload, sign_github
from helpers.rules import BASE_RULES, GITHUB_SECRET

POLICY_RULES = BASE_RULES.replace("""\
  mem:
    kind: memory
""", """\
  mem:
    kind: memory
    policy:
      max_running: 1
      group: "${repo}/${branch}"
      on_newer: coalesce
      breaker: {failures: 1, open_for: 10m}
""")


def push(client, rel="github/push__goscm-branch.json"):
    body, headers = load_payload(rel)
    headers.update(sign_github(body, GITHUB_SECRET))
    resp = client.post("/hooks/github", data=body, headers=headers)
    assert resp.status_code == 202, resp.get_data(as_text=True)
    return resp.get_json()["delivery"]


def test_the_group_is_rendered_at_ingest_and_stored_with_the_job(make_app):
    app, store = make_app(POLICY_RULES)
    delivery = push(app.test_client())
    d = store.get_delivery(delivery)
    ev = d["event"]
    [job] = d["jobs"]
    assert job["policy_group"] == f"{ev['repo']}/{ev['ref_name']}"
    app, store = make_app(BASE_RULES)      # no policy: the rule and the ref
    d = store.get_delivery(push(app.test_client(), "github/push__f110-single-commit.json"))
    assert d["jobs"][0]["policy_group"] == f"every-branch/{d['event']['ref']}"


def test_readyz_and_metrics_show_the_breaker(make_app):
    app, store = make_app(POLICY_RULES)
    app.extensions["bridge"].metrics = Metrics(registry=CollectorRegistry())
    client = app.test_client()
    push(client)
    assert client.get("/readyz?targets=1").get_json()["breakers"] == {"mem": "closed"}
    (job,) = store.claim("d1", 1, lease_seconds=60, now=time.time())
    assert store.record_retry(job.id, "d1", "down", time.time() + 5, now=time.time(),
                              breaker=("mem", Breaker(failures=1, open_for=600)))
    assert client.get("/readyz?targets=1").get_json()["breakers"] == {"mem": "open"}
    text = client.get("/metrics").get_data(as_text=True)
    assert 'bridge_target_breaker{state="open",target="mem"} 1.0' in text
    assert 'bridge_target_breaker{state="closed",target="mem"} 0.0' in text


def test_deliveries_and_show_say_why_a_job_waits(make_app, tmp_path):
    app, store = make_app(POLICY_RULES)
    client = app.test_client()
    first = push(client)
    second = push(client, "github/push__f110-single-commit.json")      # another repo: another group
    (running,) = store.claim("d1", 5, lease_seconds=600, now=time.time(),
                             policies=app.extensions["bridge"].config.policies())
    rules = str(tmp_path / "rules.yaml")
    args = ["deliveries", "--rules", rules, "--state-dir", str(tmp_path)]
    out = CliRunner().invoke(cli, args, env={"BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'bridge.db'}"})
    assert out.exit_code == 0, out.output
    waiting = second if running.delivery == first else first
    line = next(line for line in out.output.splitlines() if line.startswith(waiting[:38]))
    assert "every-branch:queued (waiting: max_running 1 reached)" in line
    env = {"BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'bridge.db'}"}
    shown = CliRunner().invoke(cli, args + ["show", waiting], env=env)
    assert "    waiting: max_running 1 reached" in shown.output.splitlines()
    as_json = CliRunner().invoke(cli, args + ["--format", "json", "show", waiting], env=env)
    assert json.loads(as_json.output)["jobs"][0]["waiting"] == "waiting: max_running 1 reached"
