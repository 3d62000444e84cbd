"""Pull requests end to end: a real `cibridge serve`, the Jenkins stand-in and the GitHub API
stand-in. An opened pull request builds with its parameters and gets pending -> link -> success
on its head; a synchronize builds the new head; a fork's pull request builds nothing; `/retest`
from a member builds the head the pulls API names, from a stranger nothing."""
from __future__ import annotations

import json

import pytest
from helpers.payloads import load_payload, sign_github
from helpers.process import BridgeProcess, wait_for
from helpers.pulls import issue_comment
from helpers.standins.github import GitHubAPIStandin
from helpers.standins.jenkins import JenkinsStandin
from helpers.statuses import ENV, GH_TOKEN

REPO = "Codertocat/Hello-World"         # the octokit payloads' repository
PARAMS = ["PR", "HEAD_SHA", "HEAD_REF", "BASE_REF", "REFSPEC", "BRIDGE_DELIVERY"]
RUN = ('{target: ci, job: api/pr, delay: 0, parameters: {PR: "${number}", HEAD_SHA: "${head_sha}", '
       'HEAD_REF: "${head_ref}", BASE_REF: "${base_ref}", REFSPEC: "${ref}"}}')
RULES = """\
sources:
  github:
    provider: github
    secrets: ["${{env:GH_SECRET}}"]
    report: {{token: "${{env:GH_STATUS_TOKEN}}", api_url: "{github}", retry: {{initial: 200ms, maximum: 1s}}}}
targets:
  ci: {{kind: jenkins, url: "{jenkins}", user: bridge, token: "${{env:JENKINS_TOKEN}}"}}
settings:
  follow: {{interval: 100ms, max_interval: 500ms}}
rules:
  - name: pr
    on: {{repo: {repo}, pull_request: {{branches: [master]}}}}
    run: {run}
  - name: retest
    on: {{repo: {repo}, comment: {{pattern: "^/retest\\\\b", authors: [OWNER, MEMBER, COLLABORATOR]}}}}
    run: {run}
"""


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    jenkins = JenkinsStandin(quiet_period=0.0, build_duration=3600.0)
    jenkins.add_job("api/pr", PARAMS)
    github = GitHubAPIStandin(GH_TOKEN)
    for s in (jenkins, github):
        s.start()
    env = {**ENV, "JENKINS_TOKEN": jenkins.users["bridge"]}
    text = RULES.format(github=github.url, jenkins=jenkins.url.rstrip("/"), repo=REPO, run=RUN)
    bridge = BridgeProcess(tmp_path_factory.mktemp("pulls-e2e"), text, env=env, workers=1).start()
    yield bridge, jenkins, github
    bridge.stop()
    for s in (jenkins, github):
        s.stop()


def pull_request(bridge, action: str, head: str, *, number: int = 2, fork: bool = False):
    body, headers = load_payload(f"github/pull_request__octokit-{'opened' if action == 'opened' else 'synchronize'}.json")
    doc = json.loads(body)
    doc["number"] = doc["pull_request"]["number"] = number
    doc["pull_request"]["head"]["sha"] = head
    if fork:
        doc["pull_request"]["head"]["repo"] = {**doc["pull_request"]["head"]["repo"], "id": 99,
                                               "full_name": "stranger/Hello-World"}
    body = json.dumps(doc).encode()
    headers["X-GitHub-Delivery"] = f"pr-{number}-{head[-8:]}"
    headers.update(sign_github(body, ENV["GH_SECRET"]))
    return bridge.post("github", body, headers)


def comment(bridge, association: str, n: int):
    body = json.dumps(issue_comment(association=association, repo=REPO, number=2, comment_id=n)).encode()
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "issue_comment",
               "X-GitHub-Delivery": f"comment-{n}", **sign_github(body, ENV["GH_SECRET"])}
    return bridge.post("github", body, headers)


def posted(jenkins, head: str) -> list[dict]:
    return [{k: v[0] for k, v in p.query.items()} for p in jenkins.posts()
            if p.query.get("HEAD_SHA") == [head]]


def _ends(head, state):
    return lambda statuses: [s.state for s in statuses if s.sha == head][-1:] == [state]


@pytest.mark.slow
def test_opened_then_synchronize_build_their_heads_with_statuses(e2e):
    bridge, jenkins, github = e2e
    first, second = "a" * 40, "b" * 40
    reply = pull_request(bridge, "opened", first)
    assert reply.status_code == 202 and reply.json()["matched"] == ["pr"], reply.text
    wait_for(lambda: posted(jenkins, first), what="the opened pull request's build")
    [params] = posted(jenkins, first)
    assert {k: v for k, v in params.items() if k not in ("BRIDGE_DELIVERY", "delay")} == {
        "PR": "2", "HEAD_SHA": first, "HEAD_REF": "changes", "BASE_REF": "master",
        "REFSPEC": "refs/pull/2/head"}
    seen = github.wait_for(lambda st: any(s.sha == first and s.target_url for s in st))
    link = [s for s in seen if s.sha == first and s.target_url][0]
    assert (link.state, link.context, link.repo) == ("pending", "bridge/pr", REPO)
    assert link.target_url.startswith(f"{jenkins.url}job/api/job/pr/")
    jenkins.advance(3600)
    final = [s for s in github.wait_for(_ends(first, "success")) if s.sha == first]
    assert final[0].state == "pending" and final[-1].target_url == link.target_url

    reply = pull_request(bridge, "synchronize", second)
    assert reply.status_code == 202, reply.text
    wait_for(lambda: posted(jenkins, second), what="the synchronize's build")
    github.wait_for(lambda st: any(s.sha == second and s.target_url for s in st))
    jenkins.advance(3600)
    github.wait_for(_ends(second, "success"))
    assert github.problems == []


@pytest.mark.slow
def test_a_forks_pull_request_builds_nothing(e2e):
    bridge, jenkins, _ = e2e
    reply = pull_request(bridge, "opened", "c" * 40, number=3, fork=True)
    assert reply.status_code == 200 and reply.json()["matched"] == [], reply.text
    store = bridge.store()
    try:
        stored = store.get_delivery(reply.json()["delivery"])
    finally:
        store.close()
    assert stored["jobs"] == []
    [pr] = [v for v in stored["verdicts"] if v["rule"] == "pr"]
    assert pr["reason"].startswith("pull request #3 comes from the fork 'stranger/Hello-World'; forks: skip")


@pytest.mark.slow
def test_retest_from_a_member_builds_the_head_from_the_api_and_from_a_stranger_nothing(e2e):
    bridge, jenkins, github = e2e
    head = "d" * 40
    github.add_pull(REPO, 2, head, head_ref="changes", base_ref="master")
    stranger = comment(bridge, "NONE", 1)
    assert stranger.status_code == 200 and stranger.json()["matched"] == [], stranger.text
    member = comment(bridge, "MEMBER", 2)
    assert member.status_code == 202 and member.json()["matched"] == ["retest"], member.text
    wait_for(lambda: posted(jenkins, head), what="the /retest build")
    [params] = posted(jenkins, head)
    assert (params["PR"], params["HEAD_REF"], params["BASE_REF"], params["REFSPEC"]) == \
        ("2", "changes", "master", "refs/pull/2/head")
    assert any(r.method == "GET" and r.path == f"/repos/{REPO}/pulls/2" for r in github.requests)
    github.wait_for(lambda st: any(s.sha == head and s.context == "bridge/retest" and s.target_url
                                   for s in st))
    jenkins.advance(3600)
    github.wait_for(_ends(head, "success"))
    assert len(posted(jenkins, head)) == 1          # the stranger's comment started nothing
    assert github.problems == [] and GH_TOKEN not in bridge.logs()
