"""Commit statuses end to end: a real `cibridge serve`, the Jenkins stand-in, moto's CodeBuild and both
git host API stand-ins; pending with the build link, then the final state, and host outages."""
from __future__ import annotations

import json

import pytest

from helpers.standins.github import GitHubAPIStandin
from helpers.standins.gitlab import GitLabAPIStandin
from helpers.standins.jenkins import JenkinsStandin
from helpers.statuses import ENV, GH_TOKEN, GL_TOKEN


# --- end to end: a real `cibridge serve`, Jenkins stand-in, moto's CodeBuild, both git hosts ----------

E2E_RULES = """\
sources:
  github:
    provider: github
    secrets: ["${{env:GH_SECRET}}"]
    report: {{token: "${{env:GH_STATUS_TOKEN}}", api_url: "{github}", retry: {{initial: 200ms, maximum: 1s}}}}
  gitlab:
    provider: gitlab
    secrets: ["${{env:GL_SECRET}}"]
    report: {{token: "${{env:GL_STATUS_TOKEN}}", api_url: "{gitlab}", retry: {{initial: 200ms, maximum: 1s}}}}
targets:
  ci: {{kind: jenkins, url: "{jenkins}", user: bridge, token: "${{env:JENKINS_TOKEN}}"}}
  aws: {{kind: codebuild, region: eu-west-1, endpoint_url: "{moto}"}}
settings:
  follow: {{interval: 100ms, max_interval: 500ms}}
rules:
  - name: api
    on: {{source: github, branches: [main]}}
    run: {{target: ci, job: api/build, delay: 0}}
  - name: broken
    on: {{source: github, branches: [broken]}}
    run: {{target: ci, job: api/broken, delay: 0}}
  - name: release
    context: aws/release
    on: {{source: github, branches: [release]}}
    run: {{target: aws, project: feedback-e2e}}
  - name: gitlab-api
    on: {{source: gitlab, branches: [main]}}
    run: {{target: ci, job: api/build, delay: 0}}
"""
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "eu-west-1", "AWS_CONFIG_FILE": "/nonexistent/aws-config",
           "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
           "AWS_EC2_METADATA_DISABLED": "true"}


class E2E:
    def __init__(self, directory):
        import boto3
        from moto.server import ThreadedMotoServer
        from helpers.process import BridgeProcess
        self.jenkins = JenkinsStandin(quiet_period=0.0, build_duration=3600.0)
        self.jenkins.add_job("api/build", ["BRIDGE_DELIVERY"])
        self.jenkins.add_job("api/broken", ["BRIDGE_DELIVERY"], result="FAILURE")
        self.github = GitHubAPIStandin(GH_TOKEN)
        self.gitlab = GitLabAPIStandin(GL_TOKEN)
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        for s in (self.jenkins, self.github, self.gitlab, self.moto):
            s.start()
        host, port = self.moto.get_host_and_port()
        moto_url = f"http://{host}:{port}"
        boto3.client("codebuild", region_name="eu-west-1", endpoint_url=moto_url,
                     aws_access_key_id="testing", aws_secret_access_key="testing").create_project(
            # moto's backends are per process, shared with test_codebuild: a name of our own.
            name="feedback-e2e", source={"type": "GITHUB", "location": "https://github.com/acme/api"},
            artifacts={"type": "NO_ARTIFACTS"},
            environment={"type": "LINUX_CONTAINER", "image": "aws/codebuild/standard:7.0",
                         "computeType": "BUILD_GENERAL1_SMALL"},
            serviceRole="arn:aws:iam::123456789012:role/codebuild")
        self.env = {**ENV, **AWS_ENV, "JENKINS_TOKEN": self.jenkins.users["bridge"]}
        rules_text = E2E_RULES.format(github=self.github.url, gitlab=self.gitlab.api_url,
                                      jenkins=self.jenkins.url.rstrip("/"), moto=moto_url)
        self.moto_url = moto_url
        self.bridge = BridgeProcess(directory, rules_text, env=self.env, workers=1).start()

    def close(self):
        import requests
        self.bridge.stop()
        requests.post(f"{self.moto_url}/moto-api/reset", timeout=5)
        for s in (self.jenkins, self.github, self.gitlab, self.moto):
            s.stop()

    def github_push(self, branch: str, sha: str):
        from helpers.payloads import load_payload, sign_github
        body, headers = load_payload("github/push__f110-single-commit.json")
        doc = json.loads(body)
        doc.update(ref=f"refs/heads/{branch}", after=sha)
        doc["head_commit"]["id"] = doc["commits"][-1]["id"] = sha
        body = json.dumps(doc).encode()
        headers["X-GitHub-Delivery"] = f"gh-{sha[-12:]}"
        headers.update(sign_github(body, ENV["GH_SECRET"]))
        reply = self.bridge.post("github", body, headers)
        assert reply.status_code == 202, reply.text
        return reply.json()["delivery"]

    def gitlab_push(self, sha: str):
        from helpers.payloads import load_payload
        body, headers = load_payload("gitlab/push_hook__docs.json")
        doc = json.loads(body)
        doc.update(ref="refs/heads/main", after=sha, checkout_sha=sha)
        doc["commits"][-1]["id"] = sha
        headers["X-Gitlab-Token"] = ENV["GL_SECRET"]
        headers["X-Gitlab-Event-UUID"] = headers["Idempotency-Key"] = f"gl-{sha[-12:]}"
        reply = self.bridge.post("gitlab", json.dumps(doc).encode(), headers)
        assert reply.status_code == 202, reply.text
        return reply.json()["delivery"]

    def job(self, delivery: str) -> dict:
        store = self.bridge.store()
        try:
            return store.get_delivery(delivery)["jobs"][0]
        finally:
            store.close()


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    env = E2E(tmp_path_factory.mktemp("feedback-e2e"))
    yield env
    env.close()


def _sha(n: int) -> str:
    return f"{n:040x}"


def _for(sha, states):
    return lambda statuses: [s.state for s in statuses if s.sha == sha][-len(states):] == states


@pytest.mark.slow
def test_e2e_github_pending_with_the_jenkins_link_then_success(e2e):
    sha = _sha(0xA1)
    delivery = e2e.github_push("main", sha)
    seen = e2e.github.wait_for(lambda st: any(s.sha == sha and s.target_url for s in st))
    building = [s for s in seen if s.sha == sha and s.target_url][0]
    assert building.state == "pending" and building.context == "bridge/api"
    assert building.target_url.startswith(f"{e2e.jenkins.url}job/api/job/build/")
    e2e.jenkins.advance(3600)
    final = [s for s in e2e.github.wait_for(_for(sha, ["success"])) if s.sha == sha]
    assert [s.state for s in final][0] == "pending"
    assert (final[-1].target_url, final[-1].repo) == (building.target_url, "f110/test")
    assert e2e.job(delivery)["state"] == "succeeded"
    assert e2e.github.problems == []


@pytest.mark.slow
def test_e2e_a_failing_build_ends_failure(e2e):
    sha = _sha(0xB2)
    e2e.github_push("broken", sha)
    e2e.github.wait_for(lambda st: any(s.sha == sha and s.target_url for s in st))
    e2e.jenkins.advance(3600)
    final = [s for s in e2e.github.wait_for(_for(sha, ["failure"])) if s.sha == sha]
    assert final[-1].description == "build failed (FAILURE)"
    assert "/job/api/job/broken/" in final[-1].target_url


@pytest.mark.slow
def test_e2e_gitlab_pending_running_success(e2e):
    sha = _sha(0xC3)
    e2e.gitlab_push(sha)
    e2e.gitlab.wait_for(lambda st: any(s.sha == sha and s.state == "running" for s in st))
    e2e.jenkins.advance(3600)
    final = [s for s in e2e.gitlab.wait_for(_for(sha, ["success"])) if s.sha == sha]
    assert {(s.repo, s.context, s.ref) for s in final} == {("mike/diaspora", "bridge/gitlab-api", "main")}
    assert [s.state for s in final][-2:] == ["running", "success"]
    assert final[-1].target_url.startswith(f"{e2e.jenkins.url}job/api/job/build/")
    assert e2e.gitlab.problems == []


@pytest.mark.slow
def test_e2e_codebuild_reports_its_console_link(e2e):
    sha = _sha(0xD4)
    delivery = e2e.github_push("release", sha)
    final = [s for s in e2e.github.wait_for(_for(sha, ["success"])) if s.sha == sha]
    assert final[-1].context == "aws/release"
    assert final[-1].target_url.startswith("https://eu-west-1.console.aws.amazon.com/codesuite/codebuild/")
    assert e2e.job(delivery)["state"] == "succeeded"


@pytest.mark.slow
def test_e2e_git_host_down_builds_start_and_statuses_arrive_when_it_is_back(e2e):
    from click.testing import CliRunner

    from bridge.cli.main import cli
    from helpers.process import wait_for
    e2e.github.stop()
    sha = _sha(0xE5)
    delivery = e2e.github_push("main", sha)
    wait_for(lambda: e2e.job(delivery)["state"] == "started", what="the build to start")
    e2e.jenkins.advance(3600)
    wait_for(lambda: e2e.job(delivery)["state"] == "succeeded", what="the build to end")
    assert not [s for s in e2e.github.statuses if s.sha == sha]
    e2e.github.start()
    final = [s for s in e2e.github.wait_for(_for(sha, ["success"])) if s.sha == sha]
    assert final[-1].target_url == e2e.job(delivery)["url"]
    # The operator sees every status and the host's answers.
    out = CliRunner().invoke(cli, ["deliveries", "--rules", str(e2e.bridge.rules), "--state-dir",
                                   str(e2e.bridge.state), "show", delivery], env=e2e.env)
    assert out.exit_code == 0, out.output
    lines = [line.strip() for line in out.output.splitlines() if line.strip().startswith("status ")]
    assert lines[-1].startswith('status success  bridge/api  "build succeeded"  -> sent (201)')
    assert any("cannot connect to 127.0.0.1" in line for line in lines)
    assert GH_TOKEN not in out.output and GH_TOKEN not in e2e.bridge.logs()
