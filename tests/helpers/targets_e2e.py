"""Parts of the target end-to-end tests: rules for a real `cibridge serve` with Jenkins and CodeBuild
targets, the Jenkins stand-in and moto fixtures, a recording proxy in front of moto, the bridge
fixture, deliveries, and reading a job back."""
from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler

import pytest

from helpers.aws import AWS_UNSET, aws_env, moto_codebuild, send
from helpers.standins.jenkins import JenkinsStandin
from helpers.payloads import signed_request
from helpers.process import BridgeProcess, wait_for
from helpers.standins.http import ServesHTTP


SECRET = "e2e-webhook-secret-41c7"
PAYLOAD = "github/push__f110-single-commit.json"        # f110/test, refs/heads/test, one commit
OTHER_PAYLOAD = "github/push__f110-nine-commits.json"   # another push to f110/test
SHA = "002ab36d7679fb3f5b1502063ae06b273b9f897c"
BRANCH = "test"
# Not eu-west-1: moto's in-process backends (per region) are shared with test_codebuild.py.
REGION = "eu-central-1"
PARAMS = ["GIT_SHA", "BRANCH", "BRIDGE_DELIVERY"]
#: A job the target accepted: "started", or already "succeeded" once the dispatcher followed it.
ACCEPTED = ("started", "succeeded")
AWS_ENV = aws_env(REGION)
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
    with moto_codebuild(REGION, {"api": "https://github.com/f110/test"}) as endpoint_and_client:
        yield endpoint_and_client


class RecordingProxy(ServesHTTP):
    """Forwards every request to `upstream` and records (X-Amz-Target, JSON body). While `fail`
    is above zero, StartBuild is answered with a ThrottlingException instead (and counted down)."""

    def __init__(self, upstream: str):
        self.upstream = upstream.removeprefix("http://")
        self.sent: list[tuple[str, dict]] = []
        self.fail = 0
        self.port, self._lock = 0, threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = (self.headers.get("X-Amz-Target") or "").rpartition(".")[2]
                proxy.sent.append((action, json.loads(body or b"{}")))
                if action == "StartBuild" and proxy.fail > 0:
                    proxy.fail -= 1
                    return send(self, 400, json.dumps({"__type": "ThrottlingException",
                                                       "message": "Rate exceeded"}).encode())
                conn = http.client.HTTPConnection(proxy.upstream, timeout=10)
                try:
                    conn.request("POST", self.path, body, dict(self.headers))
                    resp = conn.getresponse()
                    send(self, resp.status, resp.read(), resp.getheader("Content-Type", ""))
                finally:
                    conn.close()

            def log_message(self, *args):
                pass

        self.handler_class = Handler

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def calls(self, action: str) -> list[dict]:
        return [body for a, body in self.sent if a == action]


@pytest.fixture
def proxy(moto):
    with RecordingProxy(moto[0]) as p:
        yield p


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
