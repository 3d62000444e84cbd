"""CodeBuild target through boto3 over real HTTP on 127.0.0.1: moto's server for the service, and
a small awsJson server for the errors moto never gives. What we SENT is read from botocore's
`before-send` hooks, since moto ignores the idempotency token and the overrides."""
from __future__ import annotations

import datetime
import json
import socket
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler

import boto3
import pytest

from bridge.errors import TargetRejected, TargetUnavailable
from bridge.events import ZERO_SHA, Event
from bridge.jobs import Job, Run
from bridge.targets import target_class
from bridge.targets.codebuild import CodeBuildTarget, console_url, idempotency_token
from helpers.aws import ACCOUNT, moto_codebuild, send
from helpers.standins.http import ServesHTTP

SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
REGION = "eu-west-1"


@pytest.fixture(scope="module")
def moto_endpoint():
    with moto_codebuild(REGION, {name: f"https://github.com/acme/{name}"
                                 for name in ("api", "release")}) as (endpoint, _):
        yield endpoint


def target(endpoint, **options) -> CodeBuildTarget:
    return CodeBuildTarget("aws", {"kind": "codebuild", "region": REGION, "endpoint_url": endpoint, **options})


def job(request: dict, *, id: int = 7, delivery: str = "d-1", sha: str = SHA) -> Job:
    event = Event(provider="github", source="github", delivery_id=delivery, kind="push",
                  repo="acme/api", ref="refs/heads/main", ref_name="main", before="0" * 40,
                  after=sha, sha=sha)
    return Job(id=id, delivery=delivery, rule="releases", target="aws",
               request={"target": "aws", **request}, event=event)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def record(t: CodeBuildTarget, operation: str) -> list[dict]:
    """Bodies of every `operation` request the target's client sends."""
    sent: list[dict] = []
    t.client().meta.events.register(f"before-send.codebuild.{operation}",
                                    lambda request, **_: sent.append(json.loads(request.body)))
    return sent


class AwsJsonServer(ServesHTTP):
    """Answers every request with one JSON body (a result, or an awsJson error) and counts them."""

    def __init__(self, status: int, body: dict):
        self.status, self.body, self.attempts = status, body, 0
        self.port, self._lock = 0, threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.attempts += 1
                send(self, outer.status, json.dumps(outer.body).encode())

            def log_message(self, *args):
                pass

        self.handler_class = Handler

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def test_registry_and_keys():
    assert target_class("codebuild") is CodeBuildTarget
    assert set(CodeBuildTarget.config_keys) == {"kind", "region", "profile", "role_arn", "endpoint_url", "retry"}
    assert set(CodeBuildTarget.run_keys) == {"target", "project", "source_version", "env",
                                             "buildspec_override", "compute_type_override"}


def test_start_sends_token_source_env_and_overrides(moto_endpoint):
    t = target(moto_endpoint)
    sent = record(t, "StartBuild")
    the_job = job({"project": "api",
                   "env": {"TAG": "v1.2", "NPM_TOKEN": {"parameter_store": "/ci/npm-token"},
                           "DB_PASSWORD": {"secrets_manager": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:db"}},
                   "buildspec_override": "ci/buildspec-release.yml",
                   "compute_type_override": "BUILD_GENERAL1_LARGE"})
    run = t.start(the_job)

    assert run.state == "started" and run.remote_id.startswith("api:")
    assert run.url == (f"https://{REGION}.console.aws.amazon.com/codesuite/codebuild/projects/api/build/"
                       f"api%3A{run.remote_id.split(':', 1)[1]}/?region={REGION}")
    assert run.detail["project"] == "api" and run.detail["arn"].endswith(f":build/{run.remote_id}")
    assert sent == [{
        "projectName": "api",
        "idempotencyToken": idempotency_token(the_job),
        "sourceVersion": SHA,
        "environmentVariablesOverride": [
            {"name": "TAG", "value": "v1.2", "type": "PLAINTEXT"},
            {"name": "NPM_TOKEN", "value": "/ci/npm-token", "type": "PARAMETER_STORE"},
            {"name": "DB_PASSWORD", "value": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:db",
             "type": "SECRETS_MANAGER"}],
        "buildspecOverride": "ci/buildspec-release.yml",
        "computeTypeOverride": "BUILD_GENERAL1_LARGE",
    }]


def test_idempotency_token_is_stable_across_retries_and_distinct_between_jobs(moto_endpoint):
    t = target(moto_endpoint)
    sent = record(t, "StartBuild")
    first = job({"project": "api"}, id=41)
    t.start(first)
    t.start(replace(first, attempt=2))
    t.start(job({"project": "api"}, id=42))
    tokens = [s["idempotencyToken"] for s in sent]
    assert tokens[0] == tokens[1] != tokens[2]
    assert all(len(tok) <= 64 for tok in tokens)
    assert idempotency_token(job({}, id=41, delivery="other")) != tokens[0]


def test_source_version_defaults_to_the_pushed_commit(moto_endpoint):
    t = target(moto_endpoint)
    sent = record(t, "StartBuild")
    t.start(job({"project": "api", "source_version": "refs/tags/v1.2"}))
    t.start(job({"project": "api"}, sha=ZERO_SHA))       # nothing to pin: the project's default
    assert sent[0]["sourceVersion"] == "refs/tags/v1.2"
    assert "sourceVersion" not in sent[1]


def test_follow_reads_the_build_status(moto_endpoint):
    t = target(moto_endpoint)
    run = t.start(job({"project": "api"}))
    done = t.follow(run)                                  # moto finishes builds on the first look
    assert (done.state, done.detail["status"], done.detail["phase"]) == ("succeeded", "SUCCEEDED", "COMPLETED")
    assert t.follow(done) == done


@pytest.mark.parametrize("status, state", [
    ("IN_PROGRESS", "started"), ("SUCCEEDED", "succeeded"), ("FAILED", "failed"), ("FAULT", "failed"),
    ("TIMED_OUT", "failed"), ("STOPPED", "failed"), (None, "failed"),
])
def test_follow_maps_every_status(moto_endpoint, status, state):
    # moto overwrites every build with SUCCEEDED when it is fetched: answer as CodeBuild would.
    build_id = "api:0b8d5e6c-4a57-4d8f-9a51-6f4c3e1d2b7a"
    answer = ({"builds": [{"id": build_id, "buildStatus": status, "currentPhase": "BUILD"}], "buildsNotFound": []}
              if status else {"builds": [], "buildsNotFound": [build_id]})
    with AwsJsonServer(200, answer) as server:
        run = target(server.endpoint).follow(Run(remote_id=build_id, detail={"project": "api"}))
    assert run.state == state and run.detail["status"] == (status or "NOT_FOUND")


def test_unknown_project_is_rejected(moto_endpoint):
    with pytest.raises(TargetRejected) as info:
        target(moto_endpoint).start(job({"project": "nope"}))
    assert str(info.value) == "project 'nope' not found in eu-west-1"


def test_check_online_reports_missing_projects_by_rule_and_line(moto_endpoint):
    runs = [("api", 10, {"project": "api"}), ("typo", 14, {"project": "relase"}),
            ("rel", 18, {"project": "release"}), ("templated", 22, {"project": "${repo}"})]
    assert target(moto_endpoint).check_online(runs) == [
        "rule 'typo' (rules.yaml:14): project 'relase' not found in eu-west-1"]


def test_assumed_role_session_is_named_bridge_and_renewed_before_expiry(moto_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_endpoint)
    session = boto3.Session(region_name=REGION)
    assumed: list[str] = []
    session.events.register("before-send.sts.AssumeRole",
                            lambda request, **_: assumed.append(_text(request.body)))
    clock = {"now": None}
    t = CodeBuildTarget("aws", {"kind": "codebuild", "region": REGION, "endpoint_url": moto_endpoint,
                                "role_arn": f"arn:aws:iam::{ACCOUNT}:role/bridge-ci"},
                        session=session, now=lambda: clock["now"])
    clock["now"] = datetime.datetime.now(datetime.timezone.utc)
    signed: list[str] = []
    t.client().meta.events.register("before-send.codebuild.StartBuild",
                                    lambda request, **_: signed.append(_text(request.headers["Authorization"])))
    assert t.start(job({"project": "api"})).state == "started"
    assert len(assumed) == 1 and "RoleSessionName=bridge" in assumed[0]
    assert "Credential=testing/" not in signed[0]         # signed with the role's credentials

    t.client()
    assert len(assumed) == 1                              # still fresh
    clock["now"] += datetime.timedelta(hours=1)
    t.client()
    assert len(assumed) == 2                              # renewed before it expires


HINT = ("check the credentials the bridge runs with (instance role, profile or role_arn) and that "
        "they allow codebuild:StartBuild and codebuild:BatchGetBuilds")


@pytest.mark.parametrize("status, code, message, error, text, attempts", [
    (400, "ThrottlingException", "Rate exceeded", TargetUnavailable,
     "CodeBuild target 'aws': ThrottlingException from CodeBuild in eu-west-1", 2),
    (500, "InternalFailure", "", TargetUnavailable,
     "CodeBuild target 'aws': InternalFailure from CodeBuild in eu-west-1", 2),
    (400, "AccountLimitExceededException", "Cannot have more than 1 builds in queue for the account",
     TargetUnavailable, "CodeBuild target 'aws': the account's CodeBuild build limit in eu-west-1 is "
                        "reached (Cannot have more than 1 builds in queue for the account)", 1),
    (400, "InvalidInputException", "Invalid compute type", TargetRejected,
     "CodeBuild target 'aws': CodeBuild refused the request for project 'api': Invalid compute type", 1),
    (400, "UnrecognizedClientException", "The security token included in the request is invalid.",
     TargetRejected, f"CodeBuild target 'aws': AWS refused the credentials (UnrecognizedClientException): {HINT}", 1),
    (400, "AccessDeniedException", "not authorized to perform: codebuild:StartBuild", TargetRejected,
     f"CodeBuild target 'aws': AWS refused the credentials (AccessDeniedException): {HINT}", 1),
    (400, "ExpiredTokenException", "The security token included in the request is expired",
     TargetRejected, f"CodeBuild target 'aws': AWS refused the credentials (ExpiredTokenException): {HINT}", None),
])
def test_error_mapping(moto_endpoint, status, code, message, error, text, attempts):
    with AwsJsonServer(status, {"__type": code, "message": message}) as server:
        with pytest.raises(error) as info:
            target(server.endpoint).start(job({"project": "api"}))
    assert str(info.value) == text
    if attempts is not None:
        assert server.attempts == attempts               # botocore retries once at most
    assert isinstance(info.value.__cause__, Exception)


def test_unreachable_endpoint_is_unavailable(moto_endpoint):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                          # bound, never listening: refused
        with pytest.raises(TargetUnavailable) as info:
            target(f"http://127.0.0.1:{port}").start(job({"project": "api"}))
    assert str(info.value) == "CodeBuild target 'aws': CodeBuild in eu-west-1 is unreachable (EndpointConnectionError)"


def test_missing_credentials_are_rejected_with_a_hint(moto_endpoint, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(TargetRejected) as info:
        target(moto_endpoint).start(job({"project": "api"}))
    assert str(info.value) == f"CodeBuild target 'aws': no usable AWS credentials (NoCredentialsError): {HINT}"


def test_unknown_profile_is_rejected(moto_endpoint):
    with pytest.raises(TargetRejected) as info:
        target(moto_endpoint, profile="nope").start(job({"project": "api"}))
    assert str(info.value) == f"CodeBuild target 'aws': no usable AWS credentials (ProfileNotFound): {HINT}"


@pytest.mark.parametrize("options, problems", [
    ({"region": "eu-west-1", "role_arn": "arn:aws:iam::1:role/x"}, []),
    ({"region": ""}, ["region must be an AWS region such as eu-west-1"]),
    ({"region": "eu-west-1", "role_arn": "bridge"},
     ["role_arn must be an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME), not 'bridge'"]),
    ({"region": "eu-west-1", "endpoint_url": "localhost:4566"},
     ["endpoint_url must be an http:// or https:// URL, not 'localhost:4566'"]),
])
def test_validate(options, problems):
    assert CodeBuildTarget.validate({"kind": "codebuild", **options}) == problems


@pytest.mark.parametrize("run, problems", [
    ({"project": "api", "env": {"A": "${sha}", "B": {"parameter_store": "/x"}}}, []),
    ({"project": ""}, ["'run.project' must be a CodeBuild project name"]),
    ({"project": "api", "env": {"CODEBUILD_X": "1"}},
     ["'run.env.CODEBUILD_X': names starting with CODEBUILD_ are reserved by CodeBuild"]),
    ({"project": "api", "env": {"S": {"vault": "x"}}},
     ["'run.env.S' must be a value, or one of {parameter_store: NAME} / {secrets_manager: ARN}"]),
    ({"project": "api", "env": {"F": True}}, ["'run.env.F' must be a string (quote true/false)"]),
    ({"project": "api", "env": ["A=1"]}, ["'run.env' must be a mapping of variable name to value"]),
])
def test_validate_run(run, problems):
    assert CodeBuildTarget.validate_run({"target": "aws", **run}) == problems


def test_console_url_quotes_the_build_id():
    assert console_url("us-east-1", "api", "api:1a2b") == (
        "https://us-east-1.console.aws.amazon.com/codesuite/codebuild/projects/api/build/api%3A1a2b/"
        "?region=us-east-1")


def test_a_deletion_leaves_source_version_out_and_sends_an_allowed_empty_sha_as_empty(moto_endpoint):
    t = target(moto_endpoint)
    sent = record(t, "StartBuild")
    deleted = Event(provider="github", source="github", delivery_id="d-del", kind="delete",
                    repo="acme/api", ref="refs/tags/v1", ref_name="v1", before=SHA, after=ZERO_SHA,
                    sha=None, deleted=True)
    # As rendered from `source_version: "${sha}"` and `env: {GIT_SHA: "${sha}"}` with allow_empty_sha.
    t.start(Job(id=8, delivery="d-del", rule="releases", target="aws", event=deleted,
                request={"target": "aws", "project": "api", "source_version": "",
                         "env": {"GIT_SHA": ""}}))
    assert "sourceVersion" not in sent[0]          # the project's default source, never 000...0
    assert {"name": "GIT_SHA", "value": "", "type": "PLAINTEXT"} in sent[0]["environmentVariablesOverride"]


def test_cancel_stops_the_build_with_stop_build(moto_endpoint):
    t = target(moto_endpoint)
    run = t.start(job({"project": "api"}))
    sent = record(t, "StopBuild")
    assert t.cancel(run) is True
    assert sent == [{"id": run.remote_id}]
    # moto answered with the build it stopped (its next BatchGetBuilds completes every build anyway)
    with pytest.raises(TargetRejected, match="project 'api' not found"):
        t.cancel(replace(run, remote_id="api:00000000-0000-0000-0000-000000000000",
                         detail={"project": "api"}))
