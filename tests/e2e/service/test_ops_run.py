"""One run of a real `cibridge serve` with every secret kind (${env:}, ${file:}, ${credential:}) and a
Jenkins stand-in, watched through /metrics, the admin endpoints, /readyz and the JSON logs: counts
across processes, sender health, admin protection, and no secret anywhere."""
from __future__ import annotations

import base64
import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from helpers.standins.jenkins import JenkinsStandin
from helpers.payloads import load_payload
from helpers.ports import free_port
from helpers.process import BridgeProcess, wait_for
from helpers.ops import (FORWARDED, GH_PING, GH_PUSH, GL_PUSH, GL_REPO_UPDATE, by_labels, delivery,
                         json_lines, metric_samples, sha)


# --- one run with every secret kind, watched through /metrics and the logs ------------------

RULES_OPS = """\
sources:
  github:
    provider: github
    secrets: ["${env:GH_SECRET}"]
  gitlab:
    provider: gitlab
    secrets: ["${file:gitlab-token}"]
targets:
  mem:
    kind: memory
  ci:
    kind: jenkins
    url: JENKINS_URL
    user: bridge
    token: ${credential:jenkins-token}
    build_token: ${file:jenkins-build-token}
  down:
    kind: jenkins
    url: DOWN_URL
    retry: {initial: 20ms, maximum: 50ms, give_up_after: 1s}
rules:
  - name: to-mem
    on: {source: github, branches: ["**"]}
    run: {target: mem}
  - name: to-jenkins
    on: {source: github, branches: ["**"]}
    run: {target: ci, job: api/build, parameters: {SHA: "${sha}"}}
  - name: to-missing
    on: {source: gitlab, branches: ["**"]}
    run: {target: ci, job: missing/job}
  - name: to-down
    on: {source: gitlab, branches: ["**"]}
    run: {target: down, job: any}
settings:
  durability: normal
  admin_token: ${credential:admin-token}
  follow: {interval: 50ms, max_interval: 200ms}
"""
GOOD_PUSHES = 6


class OpsRun:
    """Everything one run sent and got back, for the tests below to judge."""

    def __init__(self):
        self.sent: list[dict] = []          # source, delivery, status, headers sent
        self.replies: list[requests.Response] = []
        self.metrics: dict[str, str] = {}   # name of the moment -> /metrics text

    def post(self, bridge, source, body, headers, did, expect):
        r = bridge.post(source, body, headers)
        self.replies.append(r)
        self.sent.append({"source": source, "delivery": did, "status": r.status_code,
                          "headers": dict(headers), "expect": expect})
        return r

    def get(self, url, **headers):
        r = requests.get(url, headers=headers, timeout=10)
        self.replies.append(r)
        return r


@pytest.fixture(scope="module")
def ops(tmp_path_factory):
    base = tmp_path_factory.mktemp("ops")
    values = {name: f"{name}-{secrets.token_hex(12)}" for name in
              ("gh", "gl", "admin", "jenkins", "build")}
    creds = base / "credentials"
    creds.mkdir()
    (creds / "admin-token").write_text(values["admin"] + "\n")
    (creds / "jenkins-token").write_text(values["jenkins"])
    jenkins = JenkinsStandin(users={"bridge": values["jenkins"]}, quiet_period=0)
    jenkins.add_job("api/build", ["SHA", "BRIDGE_DELIVERY"], build_token=values["build"])
    jenkins.start()
    rules = (RULES_OPS.replace("JENKINS_URL", jenkins.url)
             .replace("DOWN_URL", f"http://127.0.0.1:{free_port()}/"))
    bridge = BridgeProcess(base / "bridge", rules, workers=3,
                           # debug: the dispatcher's lines about each job are checked below
                           env={"GH_SECRET": values["gh"], "CREDENTIALS_DIRECTORY": str(creds),
                                "BRIDGE_LOG_LEVEL": "debug"})
    (bridge.dir / "gitlab-token").write_text(values["gl"])
    (bridge.dir / "jenkins-build-token").write_text(values["build"])
    run = OpsRun()
    run.bridge, run.jenkins, run.values, run.wrong = bridge, jenkins, values, []
    try:
        bridge.start()
        _traffic(run)
        yield run
    finally:
        bridge.stop()
        jenkins.stop()


def _traffic(run: OpsRun) -> None:
    bridge, v = run.bridge, run.values

    def wrong() -> str:
        run.wrong.append(secrets.token_hex(16))
        return run.wrong[-1]

    # GitHub: good pushes (concurrently, so several workers answer) with wrong signatures
    # between them, never three in a row; a missing signature; a ping; a redelivered id.
    goods = [delivery(GH_PUSH, secret=v["gh"], after=sha(1000 + i)) for i in range(GOOD_PUSHES)]
    with ThreadPoolExecutor(3) as pool:
        for i in range(3):
            body, headers, did = delivery(GH_PUSH, secret=wrong(), after=sha(2000 + i))
            run.post(bridge, "github", body, headers, did, "refused")
            list(pool.map(lambda g: run.post(bridge, "github", *g, "accepted"),
                          goods[2 * i:2 * i + 2]))
    body, headers, did = delivery(GH_PUSH, secret=None, after=sha(3000))
    run.post(bridge, "github", body, headers, did, "refused")
    run.post(bridge, "github", *delivery(GH_PING, secret=v["gh"]), "ignored")
    body, headers, did = goods[0]
    run.post(bridge, "github", body, headers, did, "duplicate")

    # GitLab: one push (a job for a missing Jenkins job, one for a target that is down), then
    # four wrong tokens in a row (GitLab would disable the hook now), then a good delivery.
    run.post(bridge, "gitlab", *delivery(GL_PUSH, secret=v["gl"], after=sha(4000)), "accepted")
    for i in range(4):
        body, headers, did = delivery(GL_PUSH, secret=wrong(), after=sha(5000 + i))
        run.post(bridge, "gitlab", body, headers, did, "refused")
    run.metrics["after_streak"] = run.get(f"{bridge.url}/metrics").text
    run.post(bridge, "gitlab", *delivery(GL_REPO_UPDATE, secret=v["gl"]), "ignored")

    # A made-up source name.
    run.unknown_source = f"nope-{secrets.token_hex(4)}"
    run.post(bridge, run.unknown_source, b"{}", {"Content-Type": "application/json"}, None, "refused")

    # Admin endpoints, directly and as if through the reverse proxy.
    token = {"Authorization": f"Bearer {v['admin']}"}
    bad_token = {"Authorization": f"Bearer {wrong()}"}
    run.admin = {
        "metrics local": run.get(f"{bridge.url}/metrics").status_code,
        "metrics forwarded": run.get(f"{bridge.url}/metrics", **FORWARDED).status_code,
        "metrics forwarded+token": run.get(f"{bridge.url}/metrics", **FORWARDED, **token).status_code,
        "metrics wrong token": run.get(f"{bridge.url}/metrics", **bad_token).status_code,
        "metrics Forwarded": run.get(f"{bridge.url}/metrics", Forwarded="for=203.0.113.9").status_code,
        "targets forwarded": run.get(f"{bridge.url}/readyz?targets=1", **FORWARDED).status_code,
        "readyz forwarded": run.get(f"{bridge.url}/readyz", **FORWARDED).status_code,
    }
    run.targets = run.get(f"{bridge.url}/readyz?targets=1", **FORWARDED, **token)

    store = bridge.store()
    try:
        last = {}

        def settled():   # Jenkins builds followed to their result, the other two given up
            last.update(store.queue_stats(time.time())["jobs"])
            return last["queued"] == last["running"] == last["started"] == 0 and last["dead"] == 2
        try:
            wait_for(settled, timeout=20, what="every job to reach its end")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; jobs by state: {last}") from None
        run.queue = store.queue_stats(time.time())["jobs"]
        gitlab_push = next(s["delivery"] for s in run.sent if s["source"] == "gitlab"
                           and s["status"] == 202)
        run.gitlab_jobs = store.get_delivery(gitlab_push)["jobs"]
    finally:
        store.close()
    run.metrics["final"] = run.get(f"{bridge.url}/metrics").text


def test_the_run_went_as_planned(ops):
    """The premises of the tests below: every secret kind was used and worked."""
    got = [(s["source"], s["expect"], s["status"]) for s in ops.sent]
    expected_status = {"accepted": 202, "refused": None, "ignored": 200, "duplicate": 200}
    for source, expect, status in got:
        if expected_status[expect] is not None:
            assert status == expected_status[expect], got
    assert ops.admin["metrics forwarded+token"] == 200          # ${credential:} admin token
    builds = [r for r in ops.jenkins.posts() if r.path == "/job/api/job/build/buildWithParameters"]
    assert len(builds) == GOOD_PUSHES                            # ${credential:} Jenkins token
    assert {r.query["token"][0] for r in builds} == {ops.values["build"]}   # ${file:} build token
    assert base64.b64encode(f"bridge:{ops.values['jenkins']}".encode()).decode() in \
        builds[0].headers["authorization"]


def test_metrics_count_what_was_sent_across_workers_and_the_dispatcher(ops):
    final = metric_samples(ops.metrics["final"])
    sent: dict[tuple, int] = {}
    outcome_of = {202: "accepted", 401: "refused", 404: "refused"}
    for s in ops.sent:
        source = s["source"] if s["status"] != 404 else "(unknown)"
        outcome = outcome_of.get(s["status"], s["expect"])
        key = (source, outcome, str(s["status"]))
        sent[key] = sent.get(key, 0) + 1
    assert by_labels(final, "bridge_deliveries_total", "source", "outcome", "status") == sent
    assert ops.unknown_source not in ops.metrics["final"]   # caller-chosen names are no labels

    assert by_labels(final, "bridge_verification_failures_total", "source") == \
        {("github",): 4, ("gitlab",): 4}
    assert by_labels(final, "bridge_rules_matched_total", "rule") == {
        ("to-mem",): GOOD_PUSHES, ("to-jenkins",): GOOD_PUSHES, ("to-missing",): 1, ("to-down",): 1}
    per_source: dict[tuple, int] = {}
    for (source, _, _), n in sent.items():
        per_source[(source,)] = per_source.get((source,), 0) + n
    assert by_labels(final, "bridge_ack_latency_seconds_count", "source") == per_source

    # The dispatcher's counts, checked against what the store recorded.
    down_job = next(j for j in ops.gitlab_jobs if j["target"] == "down")
    retries = sum(1 for a in down_job["history"] if a["outcome"] == "retry")
    assert retries >= 1
    assert by_labels(final, "bridge_job_outcomes_total", "target", "state") == {
        ("mem", "succeeded"): GOOD_PUSHES, ("ci", "started"): GOOD_PUSHES,
        ("ci", "succeeded"): GOOD_PUSHES, ("ci", "dead"): 1, ("down", "dead"): 1}
    assert by_labels(final, "bridge_dead_letters_total", "target") == {("ci",): 1, ("down",): 1}
    assert by_labels(final, "bridge_job_retries_total", "target") == {("down",): retries}
    assert by_labels(final, "bridge_build_results_total", "target", "result") == \
        {("mem", "succeeded"): GOOD_PUSHES, ("ci", "succeeded"): GOOD_PUSHES}
    assert by_labels(final, "bridge_dispatch_latency_seconds_count", "target") == \
        {("mem",): GOOD_PUSHES, ("ci",): GOOD_PUSHES}
    by_state = by_labels(final, "bridge_jobs", "state")
    assert {k[0]: v for k, v in by_state.items()} == ops.queue
    assert final[("bridge_queue_depth", ())] == ops.queue["queued"] == 0
    assert ops.queue["dead"] == 2 and ops.queue["succeeded"] == 2 * GOOD_PUSHES
    assert final[("bridge_oldest_queued_job_age_seconds", ())] == 0


def test_sender_health_counts_error_replies_in_a_row_across_workers(ops):
    streak = by_labels(metric_samples(ops.metrics["after_streak"]),
                       "bridge_sender_consecutive_errors", "source")
    assert streak[("gitlab",)] == 4
    final = by_labels(metric_samples(ops.metrics["final"]), "bridge_sender_consecutive_errors", "source")
    assert final == {("github",): 0, ("gitlab",): 0}
    warnings = [l for l in json_lines(ops.bridge.logs())
                if l["level"] == "warning" and l.get("streak") is not None]
    assert [(l["source"], l["streak"]) for l in warnings] == [("gitlab", 3), ("gitlab", 4)]
    assert "'gitlab'" in warnings[0]["message"] and "GitLab disables a hook after 4" in warnings[0]["message"]


def test_admin_endpoints_refuse_proxied_callers_without_the_token(ops):
    assert ops.admin == {
        "metrics local": 200, "metrics forwarded": 403, "metrics forwarded+token": 200,
        "metrics wrong token": 403, "metrics Forwarded": 403, "targets forwarded": 403,
        "readyz forwarded": 200,
    }
    targets = ops.targets.json()["targets"]
    assert set(targets) == {"mem", "ci", "down"}
    assert targets["down"].startswith("unreachable") and ops.targets.status_code == 503


def test_readyz_targets_reaches_an_authenticated_jenkins(ops):
    ci = ops.targets.json()["targets"]["ci"]
    assert ci.startswith("ok") and "Jenkins 2.578" in ci, ci


def test_admin_endpoints_refuse_non_loopback_callers(ops, monkeypatch):
    """REMOTE_ADDR cannot be faked over loopback HTTP: the same app, in this process, from 10.0.0.5."""
    from bridge.config.load import load_config
    from bridge.metrics import Metrics
    from bridge.web.app import create_app
    monkeypatch.setenv("GH_SECRET", ops.values["gh"])
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(ops.bridge.dir.parent / "credentials"))
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    config = load_config(ops.bridge.rules)
    app = create_app(config, state_dir=str(ops.bridge.state), metrics=Metrics())
    client = app.test_client()
    remote = {"REMOTE_ADDR": "10.0.0.5"}
    token = {"Authorization": f"Bearer {ops.values['admin']}"}
    assert client.get("/metrics", environ_base=remote).status_code == 403
    assert client.get("/readyz?targets=1", environ_base=remote).status_code == 403
    assert client.get("/metrics", environ_base=remote, headers=token).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    app.extensions["bridge"].store.close()


def test_logs_are_json_one_line_per_decision_with_the_delivery_id(ops):
    lines = json_lines(ops.bridge.logs())
    decisions: dict[str, list[int]] = {}
    for l in lines:
        if l["logger"] == "bridge.ingress" and l.get("delivery"):
            decisions.setdefault(l["delivery"], []).append(l["status"])
    verified = [s for s in ops.sent if s["status"] not in (401, 404)]
    expected: dict[str, list[int]] = {}
    for s in verified:
        expected.setdefault(s["delivery"], []).append(s["status"])
    assert {d: sorted(v) for d, v in decisions.items() if d in expected} == \
        {d: sorted(v) for d, v in expected.items()}
    refused = [l for l in lines if l["logger"] == "bridge.ingress" and l.get("status") in (401, 404)]
    assert len(refused) == sum(1 for s in ops.sent if s["status"] in (401, 404))

    # Every dispatcher line about a job carries its delivery's id.
    job_lines = [l for l in lines if "job" in l]
    assert job_lines and all(l["delivery"] for l in job_lines)
    store = ops.bridge.store()
    try:
        for l in job_lines:
            assert any(j["id"] == l["job"] for j in store.get_delivery(l["delivery"])["jobs"])
    finally:
        store.close()


def test_a_refused_delivery_is_logged_with_the_hosts_delivery_id(ops):
    lines = json_lines(ops.bridge.logs())
    logged = {l["delivery"] for l in lines if l["logger"] == "bridge.ingress" and l.get("status") == 401}
    assert logged == {s["delivery"] for s in ops.sent if s["status"] == 401}


def test_logs_carry_no_body_and_no_secret_bearing_header(ops):
    log = ops.bridge.logs()
    for rel in (GH_PUSH, GL_PUSH):
        body = json.loads(load_payload(rel)[0])
        assert body["commits"][0]["message"].strip() not in log
        assert body["commits"][0]["author"]["email"] not in log
    for s in ops.sent:
        for name in ("X-Hub-Signature-256", "X-Gitlab-Token"):
            if name in s["headers"]:
                assert s["headers"][name] not in log


def test_no_secret_value_anywhere(ops):
    """Logs, every reply (bodies and headers), every /metrics text, every file in the state
    directory (the database and its WAL included), and the wrong secrets senders sent."""
    forbidden = list(ops.values.values()) + ops.wrong
    forbidden.append(base64.b64encode(f"bridge:{ops.values['jenkins']}".encode()).decode())
    places = {"logs": ops.bridge.logs().encode()}
    for i, r in enumerate(ops.replies):
        places[f"reply {i} {r.url}"] = r.content + json.dumps(dict(r.headers)).encode()
    for name, text in ops.metrics.items():
        places[f"metrics {name}"] = text.encode()
    files = [p for p in Path(ops.bridge.state).rglob("*") if p.is_file()]
    assert any(p.name == "bridge.db" for p in files)
    for p in files:
        places[str(p)] = p.read_bytes()
    for where, data in places.items():
        for value in forbidden:
            assert value.encode() not in data, f"a secret appears in {where}"
