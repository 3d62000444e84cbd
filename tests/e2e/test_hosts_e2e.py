"""Gitea and Bitbucket Cloud end to end through a real `cibridge serve`: a Bitbucket delivery with
three changes builds three times (one exec run each), a Gitea branch deletion runs an
`events: [delete]` rule, and commit statuses land on the Gitea and Bitbucket API stand-ins
(ending in the final state), each in the host's own words."""
from __future__ import annotations

import pytest
from helpers.hosts import signed
from helpers.process import BridgeProcess, wait_for
from helpers.rules import SECRET_ENV
from helpers.standins.bitbucket import BitbucketAPIStandin
from helpers.standins.gitea import GiteaAPIStandin

GITEA_TOKEN, BB_TOKEN = "gitea-e2e-token-01", "bb-e2e-token-01"

RULES = """\
sources:
  gitea:
    provider: gitea
    secrets: ["${{env:GITEA_SECRET}}"]
    report: {{token: "${{env:GITEA_TOKEN}}", api_url: "{gitea}", retry: {{initial: 200ms, maximum: 1s}}}}
  bitbucket:
    provider: bitbucket
    secrets: ["${{env:BB_SECRET}}"]
    report: {{token: "${{env:BB_TOKEN}}", api_url: "{bitbucket}", retry: {{initial: 200ms, maximum: 1s}}}}
targets:
  local: {{kind: exec, timeout: 30}}
rules:
  - name: build
    context: ci/build
    on: {{repo: "**", events: [push, tag]}}
    run: {{target: local, command: ["sh", "-c", "echo \\"build $BRIDGE_REF $BRIDGE_SHA\\" >> {out}"]}}
  - name: cleanup
    on: {{source: gitea, repo: "**", events: [delete]}}
    run: {{target: local, command: ["sh", "-c", "echo \\"cleanup $BRIDGE_KIND $BRIDGE_REF\\" >> {out}"]}}
"""


class Hosts:
    def __init__(self, directory):
        self.gitea = GiteaAPIStandin(GITEA_TOKEN)
        self.bitbucket = BitbucketAPIStandin(BB_TOKEN)
        for s in (self.gitea, self.bitbucket):
            s.start()
        self.out = directory / "runs.txt"
        self.out.write_text("")
        text = RULES.format(gitea=self.gitea.api_url, bitbucket=self.bitbucket.api_url, out=self.out)
        env = {**SECRET_ENV, "GITEA_TOKEN": GITEA_TOKEN, "BB_TOKEN": BB_TOKEN}
        self.bridge = BridgeProcess(directory, text, env=env, workers=1).start()

    def runs(self) -> list[str]:
        return self.out.read_text().splitlines()

    def close(self):
        self.bridge.stop()
        for s in (self.gitea, self.bitbucket):
            s.stop()


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    env = Hosts(tmp_path_factory.mktemp("hosts-e2e"))
    yield env
    env.close()


def test_a_bitbucket_delivery_with_three_changes_builds_three_times(hosts):
    body, headers = signed("bitbucket", "bitbucket/repo_push__jenkins-multiple-changes.json")
    reply = hosts.bridge.post("bitbucket", body, headers)
    assert reply.status_code == 202, reply.text
    assert len(reply.json()["jobs"]) == 3
    wait_for(lambda: len(hosts.runs()) >= 3, timeout=60, what="three exec runs")
    assert sorted(hosts.runs()) == sorted([
        "build refs/heads/main 325d37697849f4b1fe42cb19c20134af08e03a82",
        "build refs/heads/manchu e22fcb49645b4586a845938afac5eb3ac1950586",
        "build refs/tags/v0.1 1986c228494671574242f99b62d1a00a4bfb69a5"])
    shas = {"325d37697849f4b1fe42cb19c20134af08e03a82", "e22fcb49645b4586a845938afac5eb3ac1950586",
            "1986c228494671574242f99b62d1a00a4bfb69a5"}
    hosts.bitbucket.wait_for(lambda statuses: all(
        hosts.bitbucket.current.get(("cloudbeers/temp", sha, "ci/build")) == "SUCCESSFUL" for sha in shas),
        timeout=60)
    for sha in shas:
        # A queued status the build overtook before it was posted is not posted (the outbox
        # sends the newest state of each); what was posted ends in SUCCESSFUL.
        states = [s.state for s in hosts.bitbucket.statuses if s.sha == sha]
        assert states[-1] == "SUCCESSFUL" and set(states) <= {"INPROGRESS", "SUCCESSFUL"}, states
    assert hosts.bitbucket.problems == []
    # Bitbucket's own retry of the same delivery builds nothing more.
    again = hosts.bridge.post("bitbucket", body, headers)
    assert again.status_code == 200 and again.json()["duplicate_of"] == reply.json()["delivery"]


def test_a_gitea_push_reports_to_gitea(hosts):
    body, headers = signed("gitea", "gitea/push__woodpecker-multi-commits.json")
    reply = hosts.bridge.post("gitea", body, headers)
    assert reply.status_code == 202, reply.text
    sha = "29be01c073851cf0db0c6a466e396b725a670453"
    wait_for(lambda: f"build refs/heads/main {sha}" in hosts.runs(), timeout=60, what="the gitea build")
    hosts.gitea.wait_for(lambda statuses: [s.state for s in statuses if s.sha == sha][-1:] == ["success"],
                         timeout=60)
    posted = [s for s in hosts.gitea.statuses if s.sha == sha]
    assert {s.state for s in posted} <= {"pending", "success"}
    assert {s.repo for s in posted} == {"Test-CI/multi-line-secrets"}
    assert {s.context for s in posted} == {"ci/build"}
    assert hosts.gitea.problems == []


def test_a_gitea_branch_deletion_runs_the_delete_rule(hosts):
    body, headers = signed("gitea", "gitea/delete__gp-branch.json")
    reply = hosts.bridge.post("gitea", body, headers)
    assert reply.status_code == 202, reply.text
    assert reply.json()["matched"] == ["cleanup"]
    wait_for(lambda: "cleanup delete refs/heads/example3" in hosts.runs(), timeout=60,
             what="the cleanup run")
    # A deletion names no commit: nothing is posted to Gitea for it.
    assert not any(s.repo == "example/example" for s in hosts.gitea.statuses)
