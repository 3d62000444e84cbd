"""End to end: a signed delivery posted to a real `cibridge serve` becomes a build on the Jenkins
stand-in or on moto's CodeBuild server, all over real HTTP on 127.0.0.1; plus `cibridge check --online`.

What the bridge sent to CodeBuild is read from a small recording proxy in front of moto (moto
ignores the idempotency token and the overrides, and the dispatcher runs in another process).
"""
from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from bridge.jobs import Job
from bridge.targets.codebuild import console_url, idempotency_token
from helpers.standins.jenkins import JenkinsStandin
from helpers.payloads import signed_request
from helpers.process import BridgeProcess, wait_for

SECRET = "e2e-webhook-secret-41c7"
PAYLOAD = "github/push__f110-single-commit.json"        # f110/test, refs/heads/test, one commit
OTHER_PAYLOAD = "github/push__f110-nine-commits.json"   # another push to f110/test
SHA = "002ab36d7679fb3f5b1502063ae06b273b9f897c"
BRANCH = "test"
# Not eu-west-1: moto's in-process backends (per region) are shared with test_codebuild.py.
REGION = "eu-central-1"
ACCOUNT = "123456789012"                                  # moto's default account
PARAMS = ["GIT_SHA", "BRANCH", "BRIDGE_DELIVERY"]
#: A job the target accepted: "started", or already "succeeded" once the dispatcher followed it.
ACCEPTED = ("started", "succeeded")
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": "/nonexistent/aws-config",
           "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
           "AWS_EC2_METADATA_DISABLED": "true"}
AWS_UNSET = ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_CODEBUILD",
             "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI")
# Short retries so "down for a while" takes a second, not minutes.
RETRY = "retry: {initial: 0.1, maximum: 0.3, give_up_after: 60}"


def rules(*, jenkins: str | None = None, codebuild: str | None = None, rules_yaml: str,
          timeout: float = 5, settings: str = "") -> str:
    targets = ""
    if jenkins:
        targets += (f"  ci:\n    kind: jenkins\n    url: {jenkins}\n    user: bridge\n"
                    f"    token: ${{env:JENKINS_TOKEN}}\n    timeout: {timeout}\n    {RETRY}\n")
    if codebuild:
        targets += (f"  aws:\n    kind: codebuild\n    region: {REGION}\n    endpoint_url: {codebuild}\n"
                    f"    {RETRY}\n")
    return (settings + "sources:\n  github:\n    provider: github\n    secrets: [\"${env:GH_SECRET}\"]\n"
            f"targets:\n{targets}rules:\n{rules_yaml}")


JENKINS_RULE = """\
  - name: api-build
    on: {repo: f110/test, branches: ["**"]}
    run:
      target: ci
      job: team/api/build
      parameters: {GIT_SHA: "${sha}", BRANCH: "${branch}"}
"""

CODEBUILD_RULE = """\
  - name: api-codebuild
    on: {repo: f110/test, branches: ["**"]}
    run:
      target: aws
      project: api
      env:
        BRANCH: "${branch}"
        PUSHER: "${pusher}"
        NPM_TOKEN: {parameter_store: /ci/npm-token}
"""


# --- outside world: the Jenkins stand-in, moto, and a recording proxy in front of moto --------

@pytest.fixture
def standin():
    s = JenkinsStandin(quiet_period=0.2)   # the build starts within the adapter's bounded wait
    s.add_job("team/api/build", PARAMS)
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def moto():
    with pytest.MonkeyPatch.context() as mp:
        for key, value in AWS_ENV.items():
            mp.setenv(key, value)
        for key in AWS_UNSET:
            mp.delenv(key, raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("codebuild", region_name=REGION, endpoint_url=endpoint)
        client.create_project(
            name="api", source={"type": "GITHUB", "location": "https://github.com/f110/test"},
            artifacts={"type": "NO_ARTIFACTS"},
            environment={"type": "LINUX_CONTAINER", "image": "aws/codebuild/standard:7.0",
                         "computeType": "BUILD_GENERAL1_SMALL"},
            serviceRole=f"arn:aws:iam::{ACCOUNT}:role/codebuild")
        try:
            yield endpoint, client
        finally:
            requests.post(f"{endpoint}/moto-api/reset", timeout=10)
            server.stop()


class RecordingProxy:
    """Forwards every request to `upstream` and records (X-Amz-Target, JSON body). While `fail`
    is above zero, StartBuild is answered with a ThrottlingException instead (and counted down)."""

    def __init__(self, upstream: str):
        self.upstream = upstream.removeprefix("http://")
        self.sent: list[tuple[str, dict]] = []
        self.fail = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = (self.headers.get("X-Amz-Target") or "").rpartition(".")[2]
                proxy.sent.append((action, json.loads(body or b"{}")))
                if action == "StartBuild" and proxy.fail > 0:
                    proxy.fail -= 1
                    return self.reply(400, json.dumps({"__type": "ThrottlingException",
                                                       "message": "Rate exceeded"}).encode(),
                                      "application/x-amz-json-1.1")
                conn = http.client.HTTPConnection(proxy.upstream, timeout=10)
                try:
                    conn.request("POST", self.path, body, dict(self.headers))
                    resp = conn.getresponse()
                    self.reply(resp.status, resp.read(), resp.getheader("Content-Type", ""))
                finally:
                    conn.close()

            def reply(self, status, data, content_type):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def calls(self, action: str) -> list[dict]:
        return [body for a, body in self.sent if a == action]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(moto):
    p = RecordingProxy(moto[0])
    yield p
    p.close()


# --- the bridge ---------------------------------------------------------------------------

def bridge_env(standin: JenkinsStandin | None = None) -> dict:
    env = {"GH_SECRET": SECRET, **AWS_ENV}
    if standin is not None:
        env["JENKINS_TOKEN"] = standin.users["bridge"]
    return env


@pytest.fixture
def bridge(tmp_path):
    """bridge(rules_text, env) -> a started BridgeProcess (web + dispatcher), stopped afterwards."""
    started = []

    def start(text: str, env: dict) -> BridgeProcess:
        bp = BridgeProcess(tmp_path / "bridge", text, env=env, workers=1)
        for key in AWS_UNSET:
            bp.env.pop(key, None)
        started.append(bp)
        bp.start()
        bp.store_ = bp.store()
        return bp

    yield start
    for bp in started:
        bp.stop()
        if hasattr(bp, "store_"):
            bp.store_.close()


def deliver(bp: BridgeProcess, payload: str = PAYLOAD) -> str:
    body, headers = signed_request("github", payload, SECRET)
    reply = bp.post("github", body, headers)
    assert reply.status_code == 202, reply.text
    return reply.json()["delivery"]


def the_job(bp: BridgeProcess, delivery: str) -> dict:
    [job] = bp.store_.get_delivery(delivery)["jobs"]
    return job


def retries(bp: BridgeProcess, delivery: str) -> int:
    """Attempts of the delivery's one job that ended in a transient failure."""
    return sum(a["outcome"] == "retry" for a in the_job(bp, delivery)["history"])


def wait_job(bp: BridgeProcess, delivery: str, predicate, what: str) -> dict:
    def ready():
        job = the_job(bp, delivery)
        return job if predicate(job) else None

    try:
        return wait_for(ready, timeout=20, what=what)
    except AssertionError:
        raise AssertionError(f"{what}; job: {the_job(bp, delivery)}\n{bp.logs()[-3000:]}") from None


def bridge_cli(bp: BridgeProcess, *args: str) -> subprocess.CompletedProcess:
    """`bridge COMMAND --rules R --state-dir S ARGS...` as an operator runs it."""
    command, *rest = args
    return subprocess.run([sys.executable, "-m", "bridge", command, "--rules", str(bp.rules),
                           "--state-dir", str(bp.state), *rest],
                          env=bp.env, capture_output=True, text=True, timeout=60)


# --- Jenkins ------------------------------------------------------------------------------

def test_delivery_becomes_a_jenkins_build_with_its_link_recorded(standin, bridge):
    bp = bridge(rules(jenkins=standin.url, rules_yaml=JENKINS_RULE), bridge_env(standin))
    delivery = deliver(bp)

    job = wait_job(bp, delivery, lambda j: j["state"] in ACCEPTED, "the job to start")
    [post] = standin.posts()
    assert post.status == 201
    assert post.path == "/job/team/job/api/job/build/buildWithParameters"
    assert post.query == {"GIT_SHA": [SHA], "BRANCH": [BRANCH],
                          "BRIDGE_DELIVERY": [f"{delivery}-{job['id']}"]}
    [build] = standin.job("team/api/build").builds.values()
    assert build.params == {"GIT_SHA": SHA, "BRANCH": BRANCH, "BRIDGE_DELIVERY": f"{delivery}-{job['id']}"}
    link = f"{standin.url}job/team/job/api/job/build/1/"
    assert (job["url"], job["remote_id"]) == (link, "team/api/build#1")

    shown = bridge_cli(bp, "deliveries", "show", delivery)
    assert shown.returncode == 0, shown.stderr
    [line] = [x for x in shown.stdout.splitlines() if x.startswith(f"job {job['id']}  api-build -> ci")]
    assert line.endswith(f"attempts 1  {link}")
    assert standin.users["bridge"] not in bp.logs() + shown.stdout


def test_jenkins_quiet_period_records_the_queue_item_then_the_build_link(standin, bridge):
    standin.quiet_period = 5.0                        # Jenkins' default: longer than our 2 s wait
    bp = bridge(rules(jenkins=standin.url, rules_yaml=JENKINS_RULE), bridge_env(standin))
    delivery = deliver(bp)
    job = wait_job(bp, delivery, lambda j: j["state"] in ACCEPTED, "the build request")
    # While queued the link is the job's page (a queue item's page 404s in Jenkins' UI).
    assert (job["url"], job["remote_id"]) == (f"{standin.url}job/team/job/api/job/build/",
                                              "team/api/build#queue/1")
    assert job["detail"]["queue_url"] == f"{standin.url}queue/item/1/"

    standin.advance(5.0)                              # the quiet period passes: the build starts
    link = f"{standin.url}job/team/job/api/job/build/1/"
    job = wait_job(bp, delivery, lambda j: j["url"] == link, "the dispatcher to follow the queue item")
    assert job["remote_id"] == "team/api/build#1"
    assert [p.status for p in standin.posts()] == [201]


def test_jenkins_down_for_a_while_then_up_builds_exactly_once(standin, bridge):
    standin.stop()                                    # the port stays ours to start again
    bp = bridge(rules(jenkins=standin.url, rules_yaml=JENKINS_RULE), bridge_env(standin))
    delivery = deliver(bp)
    # Two attempts that failed, read from the history: the job's `attempts` counts claims (it is
    # the number of the attempt under way), so `attempts >= 2` may be an attempt still running,
    # which Jenkins, started meanwhile, then accepts as the second and not the third.
    wait_for(lambda: retries(bp, delivery) >= 2, timeout=20, what="two failed attempts")
    assert the_job(bp, delivery)["state"] in ("queued", "running")
    assert not standin.posts()

    standin.start()
    job = wait_job(bp, delivery, lambda j: j["state"] in ACCEPTED, "the build after Jenkins is back")
    attempts = bp.store_.get_delivery(delivery)["jobs"][0]["history"]
    outcomes = [a["outcome"] for a in attempts]
    started = outcomes.index("started")
    assert set(outcomes[:started]) == {"retry"} and started >= 2
    assert "Jenkins target 'ci' is unreachable (connection refused or reset)" in attempts[0]["error"]
    assert [p.status for p in standin.posts()] == [201]
    assert len(standin.job("team/api/build").builds) == 1
    assert job["url"] == f"{standin.url}job/team/job/api/job/build/1/"


def test_jenkins_too_slow_to_answer_still_builds_once(standin, bridge):
    """Jenkins queued the request but answered after our timeout: the retry must find that build
    by its BRIDGE_DELIVERY instead of requesting a second one."""
    text = rules(jenkins=standin.url, rules_yaml=JENKINS_RULE, timeout=1,
                 settings="settings: {dispatcher_concurrency: 1}\n")
    bp = bridge(text, bridge_env(standin))
    first = deliver(bp)                               # the one dispatcher thread has its crumb now
    wait_job(bp, first, lambda j: j["state"] in ACCEPTED, "the first build")

    standin.slow = 1.5                                # every answer comes after the 1 s timeout
    second = deliver(bp, OTHER_PAYLOAD)
    wait_for(lambda: any(i.params.get("BRIDGE_DELIVERY", "").startswith(f"{second}-")
                         for i in list(standin.queue.values())), timeout=20, what="the slow request queued")
    standin.slow = 0
    job = wait_job(bp, second, lambda j: j["state"] in ACCEPTED, "the second build")
    wait_for(lambda: all(r.status for r in list(standin.requests)), timeout=20,
             what="the stand-in to answer every request it got")

    builds = [b for b in standin.job("team/api/build").builds.values()
              if b.params["BRIDGE_DELIVERY"] == f"{second}-{job['id']}"]
    assert len(builds) == 1, [p.query for p in standin.posts()]
    assert len([p for p in standin.posts() if p.query["BRIDGE_DELIVERY"] == [f"{second}-{job['id']}"]]) == 1
    assert job["detail"]["requested_before"] is True     # found by BRIDGE_DELIVERY, not asked again
    assert job["url"] == f"{standin.url}job/team/job/api/job/build/{builds[0].number}/"
    history = bp.store_.get_delivery(second)["jobs"][0]["history"]
    assert "Jenkins target 'ci' did not answer within 1 s" in history[0]["error"]


def test_a_retry_finds_its_earlier_request_in_the_queue_or_among_the_builds(standin):
    """The adapter alone, on the stand-in's clock: attempt 2 of a job whose attempt 1 reached
    Jenkins posts nothing; a job Jenkins never saw is requested."""
    from dataclasses import replace

    from bridge.events import Event
    from bridge.targets.jenkins import JenkinsTarget
    t = JenkinsTarget("ci", {"kind": "jenkins", "url": standin.url, "user": "bridge",
                             "token": standin.users["bridge"]}, sleep=standin.advance, now=standin.now)
    event = Event(provider="github", source="github", delivery_id="d-9", kind="push", repo="f110/test",
                  ref="refs/heads/main", ref_name="main", before="0" * 40, after=SHA, sha=SHA)
    first = Job(id=1, delivery="d-9", rule="api-build", target="ci", event=event,
                request={"target": "ci", "job": "team/api/build", "parameters": {"GIT_SHA": SHA}})
    standin.quiet_period = 60.0
    queued = t.start(first)
    again = t.start(replace(first, attempt=2))              # still waiting in the queue
    assert (again.url, again.detail["requested_before"]) == (queued.url, True)

    standin.advance(60.0)
    t.start(replace(first, id=2))                           # another job: a build of its own
    standin.advance(60.0)
    built = t.start(replace(first, attempt=3))              # attempt 1's build has started
    assert (built.state, built.remote_id) == ("started", "team/api/build#1")
    assert built.detail["requested_before"] is True
    fresh = t.start(replace(first, id=3, attempt=2))        # attempt 1 never reached Jenkins
    assert "requested_before" not in fresh.detail
    assert [p.query["BRIDGE_DELIVERY"] for p in standin.posts()] == [["d-9-1"], ["d-9-2"], ["d-9-3"]]


def test_deleted_job_is_a_dead_letter_with_its_reason_then_retry_builds_it(standin, bridge):
    standin.remove_job("team/api/build")
    bp = bridge(rules(jenkins=standin.url, rules_yaml=JENKINS_RULE), bridge_env(standin))
    delivery = deliver(bp)
    job = wait_job(bp, delivery, lambda j: j["state"] == "dead", "the dead letter")
    reason = "job 'team/api/build' not found on target 'ci'"
    assert job["last_error"] == reason and job["attempts"] == 1

    shown = bridge_cli(bp, "deliveries", "show", delivery)
    assert f"state dead  attempts 1  error: {reason}" in shown.stdout

    standin.add_job("team/api/build", PARAMS)
    again = bridge_cli(bp, "retry", str(job["id"]))
    assert again.returncode == 0, again.stderr
    job = wait_job(bp, delivery, lambda j: j["state"] in ACCEPTED, "the build after `cibridge retry`")
    assert job["url"] == f"{standin.url}job/team/job/api/job/build/1/"
    assert [p.status for p in standin.posts()] == [404, 201]
    assert standin.posts()[-1].query["BRIDGE_DELIVERY"] == [f"{delivery}-{job['id']}"]


# --- CodeBuild ----------------------------------------------------------------------------

def test_delivery_becomes_one_codebuild_build_despite_throttling(moto, proxy, bridge):
    _, client = moto
    before = set(client.list_builds_for_project(projectName="api")["ids"])
    proxy.fail = 2                     # botocore's two tries of the first attempt are throttled
    bp = bridge(rules(codebuild=proxy.url, rules_yaml=CODEBUILD_RULE), bridge_env())
    delivery = deliver(bp)

    job = wait_job(bp, delivery, lambda j: j["state"] in ACCEPTED, "the CodeBuild build")
    token = idempotency_token(Job(id=job["id"], delivery=delivery, rule="", target="", request={},
                                  event=None))
    sent = proxy.calls("StartBuild")
    assert len(sent) == 3              # 2 throttled inside attempt 1, then attempt 2
    assert sent[0] == {
        "projectName": "api",
        "idempotencyToken": token,
        "sourceVersion": SHA,
        "environmentVariablesOverride": [
            {"name": "BRANCH", "value": BRANCH, "type": "PLAINTEXT"},
            {"name": "PUSHER", "value": "f110", "type": "PLAINTEXT"},
            {"name": "NPM_TOKEN", "value": "/ci/npm-token", "type": "PARAMETER_STORE"}],
    }
    assert sent[1] == sent[2] == sent[0]          # a retry can never start a second build
    history = bp.store_.get_delivery(delivery)["jobs"][0]["history"]
    assert [a["outcome"] for a in history[:2]] == ["retry", "started"]
    assert "ThrottlingException" in history[0]["error"]

    [build_id] = set(client.list_builds_for_project(projectName="api")["ids"]) - before
    assert (job["remote_id"], job["url"]) == (build_id, console_url(REGION, "api", build_id))
    [build] = client.batch_get_builds(ids=[build_id])["builds"]
    assert build["sourceVersion"] == SHA
    shown = bridge_cli(bp, "deliveries", "show", delivery)
    assert console_url(REGION, "api", build_id) in shown.stdout


# --- cibridge check --online ----------------------------------------------------------------

CHECKED = {   # rule name -> its `run:`
    "good": '{target: ci, job: team/api/build, parameters: {GIT_SHA: "${sha}", BRANCH: "${branch}"}}',
    "typo": "{target: ci, job: team/api/biuld}",
    "extra-param": '{target: ci, job: team/api/build, parameters: {GIT_SHA: "${sha}", CHANNEL: beta}}',
    "legacy": '{target: ci, job: legacy, parameters: {GIT_SHA: "${sha}"}}',
    "legacy-merging": '{target: ci, job: legacy, unique: false, parameters: {GIT_SHA: "${sha}"}}',
    "legacy-bare": "{target: ci, job: legacy, unique: false}",        # 400 on /build, then defaults
    "plain-now": "{target: ci, job: plain, unique: false, delay: 0}",  # /build?delay=0sec: fine
    "cb-good": "{target: aws, project: api}",
    "cb-typo": "{target: aws, project: apj}",
}


def checked_rules(*names: str) -> str:
    return "".join(f"  - name: {n}\n    on: {{repo: f110/test}}\n    run: {CHECKED[n]}\n" for n in names)


def check_online(tmp_path: Path, text: str, env: dict, name: str) -> subprocess.CompletedProcess:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    full_env = {**os.environ, **env, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    for key in AWS_UNSET:
        full_env.pop(key, None)
    return subprocess.run([sys.executable, "-m", "bridge", "check", "--online", str(path)],
                          env=full_env, capture_output=True, text=True, timeout=60)


def line_of(text: str, rule: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.endswith(f"name: {rule}"))


def test_check_online_reports_jobs_and_projects_by_rule_and_line(standin, moto, tmp_path):
    standin.add_job("legacy", ["GIT_SHA"])
    standin.add_job("plain")
    text = rules(jenkins=standin.url, codebuild=moto[0], rules_yaml=checked_rules(*CHECKED))
    result = check_online(tmp_path, text, bridge_env(standin), "ci-rules.yaml")

    at = {rule: f"rule '{rule}' (ci-rules.yaml:{line_of(text, rule)})" for rule in
          ("typo", "extra-param", "legacy", "cb-typo")}
    assert result.returncode == 1, result.stdout + result.stderr
    # One stream, in order: the offline OK line, each problem, the count.
    assert result.stderr == ""
    assert re.fullmatch(r".*ci-rules\.yaml: OK \(1 sources, 2 targets, \d+ rules; version \w+\)",
                        result.stdout.splitlines()[0])
    assert result.stdout.splitlines()[1:] == [
        f"{at['typo']}: job 'team/api/biuld' not found on target 'ci'",
        f"{at['extra-param']}: job 'team/api/build' on target 'ci' does not define parameter(s) "
        "CHANNEL: Jenkins drops them silently",
        f"{at['legacy']}: job 'legacy' on target 'ci' lacks a BRIDGE_DELIVERY parameter: Jenkins may "
        "merge two pushes into one build (add a string parameter BRIDGE_DELIVERY to the job, or set "
        "unique: false)",
        f"{at['cb-typo']}: project 'apj' not found in {REGION}",
        "online check: 4 problem(s)",
    ]
    assert standin.users["bridge"] not in result.stdout + result.stderr

    fixed = rules(jenkins=standin.url, codebuild=moto[0],
                  rules_yaml=checked_rules("good", "legacy-merging", "legacy-bare", "plain-now", "cb-good"))
    ok = check_online(tmp_path, fixed, bridge_env(standin), "ci-rules.yaml")
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == "" and "every target answered" in ok.stdout
