"""/metrics of a real `cibridge serve`: build info, the last reload (Prometheus' convention),
process metrics of the supervisor, gunicorn master and workers and the dispatcher, jobs by state
apart from the queue depth, one count per retry; the shipped alert rules use only metrics it
exports; one info log line for an accepted delivery whose build succeeds."""
from __future__ import annotations

import json
import re
import signal
import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bridge import __version__
from helpers.payloads import load_payload, sign_github
from helpers.process import ROOT, BridgeProcess, wait_for

pytestmark = pytest.mark.slow

SECRET = "metrics-scrape-secret"
RULES = """\
sources:
  github: {provider: github, secrets: ["${env:GH_SECRET}"]}
targets:
  mem: {kind: memory}
rules:
  - name: every-push
    on: {repo: "**", branches: ["**"]}
    run: {target: mem}
"""
ALERTS = ROOT / "deploy" / "prometheus" / "bridge-alerts.yml"


def scrape(bridge) -> dict[str, list]:
    """{family name: [(labels, value), ...]}; the parser refuses a malformed exposition."""
    text = requests.get(f"{bridge.url}/metrics", timeout=10).text
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(samples, name, **labels):
    hits = [v for l, v in samples.get(name, []) if all(l.get(k) == w for k, w in labels.items())]
    assert len(hits) == 1, (name, labels, samples.get(name))
    return hits[0]


@pytest.fixture(scope="module")
def bridge(tmp_path_factory):
    b = BridgeProcess(tmp_path_factory.mktemp("scrape"), RULES, env={"GH_SECRET": SECRET},
                      workers=2)
    b.started_at = time.time()
    b.start()
    yield b
    b.stop()


def post_push(bridge, status=202) -> str:
    body, headers = load_payload("github/push__goscm-branch.json")
    delivery = str(uuid.uuid4())
    headers.update(sign_github(body, SECRET))
    headers["X-GitHub-Delivery"] = delivery
    r = bridge.post("github", body, headers)
    assert r.status_code == status if status else r.ok, r.text
    return delivery


def test_build_info_and_process_metrics_of_every_bridge_process(bridge):
    expected = {("supervisor", bridge.proc.pid), ("web", bridge.child("web")),
                ("dispatcher", bridge.child("dispatch"))}
    # gunicorn starts its workers one at a time: on a loaded machine the second may come later
    workers = wait_for(lambda: bridge.web_workers() if len(bridge.web_workers()) == 2 else None,
                       what="both web workers")
    expected |= {("web-worker", pid) for pid in workers}
    assert len(expected) == 5

    def registered():   # the dispatcher may still be starting when the web port answers
        s = scrape(bridge)
        got = {(l["role"], int(l["pid"])) for l, _ in s.get("process_resident_memory_bytes", [])}
        return s if got == expected else None
    samples = wait_for(registered, what="every process in /metrics")
    assert value(samples, "bridge_build_info", version=__version__) == 1
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total",
                 "process_start_time_seconds", "process_open_fds", "process_max_fds"):
        got = {(l["role"], int(l["pid"])) for l, _ in samples[name]}
        assert got == expected, name
        assert all(v > 0 for l, v in samples[name] if name != "process_cpu_seconds_total")


def test_last_reload_successful_and_its_time_follow_reloads(bridge):
    samples = scrape(bridge)
    assert value(samples, "bridge_config_last_reload_successful") == 1
    first = value(samples, "bridge_config_last_reload_success_timestamp_seconds")
    assert bridge.started_at - 1 <= first <= time.time()

    good = bridge.rules.read_text()
    bridge.rules.write_text(good + "  - name: broken\n    on: {repo: 1}\n")
    bridge.signal(signal.SIGHUP)
    wait_for(lambda: value(scrape(bridge), "bridge_config_last_reload_successful") == 0,
             what="the refused reload in /metrics")
    assert value(scrape(bridge), "bridge_config_last_reload_success_timestamp_seconds") == first

    bridge.rules.write_text(good + "# edited\n")
    bridge.signal(signal.SIGHUP)
    wait_for(lambda: value(scrape(bridge), "bridge_config_last_reload_successful") == 1,
             what="the good reload in /metrics")
    assert value(scrape(bridge), "bridge_config_last_reload_success_timestamp_seconds") > first


def test_jobs_by_state_are_not_the_queue_depth_and_one_accepted_push_logs_one_info_line(bridge):
    delivery = post_push(bridge)

    def done():
        s = scrape(bridge)
        counted = [v for l, v in s.get("bridge_job_outcomes_total", []) if l["state"] == "succeeded"]
        # The dispatcher records the result, then counts it: wait for both.
        return s if value(s, "bridge_jobs", state="succeeded") >= 1 and counted else None
    samples = wait_for(done, what="the job to succeed and be counted")
    assert value(samples, "bridge_queue_depth") == 0
    assert [labels for labels, _ in samples["bridge_queue_depth"]] == [{}]
    assert {l["state"] for l, _ in samples["bridge_jobs"]} >= {"queued", "running", "succeeded",
                                                               "dead"}
    assert value(samples, "bridge_job_outcomes_total", target="mem", state="succeeded") >= 1
    # A retry is counted once: bridge_job_retries_total, not a state of another counter.
    assert not any(l.get("state") == "retry" for l, _ in samples.get("bridge_job_outcomes_total", []))
    assert "bridge_jobs_total" not in samples

    def lines():
        out = []
        for line in bridge.logs().splitlines():
            if line.startswith("{") and f'"{delivery}"' in line:
                out.append(json.loads(line))
        return out
    wait_for(lambda: lines(), what="the delivery's log line")
    info = [(l["level"], l["message"]) for l in lines() if l["level"] != "debug"]
    assert info == [("info", "accepted: 1 job(s) for every-push")]


def test_the_shipped_alerts_use_only_exported_metrics_and_the_readme_shows_them(bridge):
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    assert [r["alert"] for r in rules] == ["BridgeQueueGrowing", "BridgeOldestJobWaiting",
                                          "BridgeSenderErrors"]
    post_push(bridge, status=None)   # a reply (202, or 200 as a duplicate): the sender gauge has a sample
    exported = set(scrape(bridge))
    for rule in rules:
        for name in re.findall(r"\bbridge_[a-z_]+", rule["expr"]):
            assert name in exported, (rule["alert"], name)
    readme = (ROOT / "README.md").read_text()
    assert ALERTS.read_text().split("groups:", 1)[1] in readme
