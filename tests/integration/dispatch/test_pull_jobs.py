"""Pull request jobs in the dispatcher, from deliveries signed through the app into a real store:
a newer job of the same rule and pull request supersedes a queued one (skipped, its status
canceled), and a GitHub comment's head is asked of the API stand-in before its request is
rendered and its statuses go on that head; without a token, or for an unknown pull request, the
job is dead; a closed one is skipped; a host that does not answer is retried."""
from __future__ import annotations

import json
import time

import pytest
from helpers.dispatch import Recorder, make
from helpers.payloads import load_payload, sign_github
from helpers.pulls import HEAD, issue_comment
from helpers.rules import GITHUB_SECRET, GITLAB_TOKEN
from helpers.standins.github import GitHubAPIStandin
from helpers.standins.gitlab import GitLabAPIStandin
from helpers.store import Clock

from bridge.config.load import load_config
from bridge.dispatch.statuses import Feedback, StatusPoster

TOKEN = "ghp_pulltest000000000000000000000000000001"
RULES = """\
sources:
  github:
    provider: github
    secrets: ["${env:GH_SECRET}"]
    %s
targets:
  ci: {kind: memory}
rules:
  - name: pr
    on: {repo: "**", pull_request: {}}
    run: {target: ci, parameters: {SHA: "${head_sha}", N: "${number}"}}
  - name: retest
    on: {repo: "**", comment: {pattern: "^/retest", authors: [MEMBER]}}
    run: {target: ci, parameters: {SHA: "${head_sha}", N: "${number}", HEAD: "${head_ref}", REF: "${ref}"}}
"""


@pytest.fixture
def api():
    with GitHubAPIStandin(TOKEN) as s:
        yield s


@pytest.fixture
def bridge(make_app, api, monkeypatch):
    monkeypatch.setenv("GH_STATUS_TOKEN", TOKEN)

    def build(report=True):
        app, store = make_app(RULES % (f'report: {{token: "${{env:GH_STATUS_TOKEN}}", api_url: "{api.url}"}}'
                                       if report else ""))
        app.store = store
        return app
    return build


def deliver(app, body: bytes, event: str, delivery: str) -> dict:
    headers = {"Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
               **sign_github(body, GITHUB_SECRET)}
    resp = app.test_client().post("/hooks/github", data=body, headers=headers)
    assert resp.status_code in (200, 202), resp.get_json()
    return resp.get_json()


def dispatcher(app, config, ci):
    return make(app.store, ci, Clock(time.time() + 1), feedback=Feedback(config))


def test_a_newer_push_to_the_pull_request_supersedes_the_queued_job(bridge, api, load_rules):
    app = bridge()
    opened, _ = load_payload("github/pull_request__octokit-opened.json")
    payload = json.loads(load_payload("github/pull_request__octokit-synchronize.json")[0])
    payload["pull_request"]["head"]["sha"] = newer = "d" * 40
    first = deliver(app, opened, "pull_request", "d-opened")
    second = deliver(app, json.dumps(payload).encode(), "pull_request", "d-sync")
    ci = Recorder()
    config = load_rules()
    assert dispatcher(app, config, ci).run_once() == 2
    assert [j.event.sha for j in ci.jobs] == [newer]
    old = app.store.get_delivery(first["delivery"])["jobs"][0]
    assert old["state"] == "skipped"
    assert old["detail"]["reason"] == (f"superseded by {newer[:12]} (job {second['jobs'][0]['id']}, "
                                       "newer for pull request #2)")
    poster = StatusPoster(app.store, Feedback(config), owner="p", lookback=3600, now=lambda: time.time() + 5)
    poster.scan_once()
    while poster.post_once():
        pass
    assert api.states(sha="ec26c3e57ca3a959ca5aad62de7213c562f8c821") == ["error"]    # canceled
    assert [s.description for s in api.statuses if s.sha != newer] == [f"superseded by {newer[:12]}"]
    assert api.states(sha=newer) == ["pending"]


def test_a_comment_builds_the_head_the_api_names(bridge, api, load_rules):
    app = bridge()
    api.add_pull("acme/api", 7, HEAD, head_ref="feature/x")
    got = deliver(app, json.dumps(issue_comment()).encode(), "issue_comment", "d-c1")
    ci = Recorder()
    config = load_rules()
    assert dispatcher(app, config, ci).run_once() == 1
    [job] = ci.jobs
    assert job.request["parameters"] == {"SHA": HEAD, "N": "7", "HEAD": "feature/x", "REF": "refs/pull/7/head"}
    assert (job.event.sha, job.event.head_sha, job.event.base_ref) == (HEAD, HEAD, "main")
    stored = app.store.get_delivery(got["delivery"])
    assert stored["event"]["sha"] == HEAD                          # completed for its statuses
    assert stored["jobs"][0]["request"]["parameters"]["SHA"] == HEAD
    assert [r.path for r in api.requests] == ["/repos/acme/api/pulls/7"]
    assert api.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    poster = StatusPoster(app.store, Feedback(config), owner="p", lookback=3600, now=lambda: time.time() + 5)
    poster.scan_once()
    while poster.post_once():
        pass
    assert api.states(sha=HEAD) == ["pending"] and api.problems == []


@pytest.mark.parametrize("case", ["no-token", "unknown", "closed", "down"])
def test_a_comment_whose_head_cannot_be_asked(bridge, api, load_rules, case):
    app = bridge(report=case != "no-token")
    if case == "closed":
        api.add_pull("acme/api", 7, HEAD, state="closed")
    if case == "down":
        api.answer_next(502, {"message": "Bad Gateway"})
    got = deliver(app, json.dumps(issue_comment()).encode(), "issue_comment", "d-c2")
    ci = Recorder()
    assert dispatcher(app, load_rules(report=case != "no-token"), ci).run_once() == 1
    assert ci.jobs == []
    row = app.store.get_delivery(got["delivery"])["jobs"][0]
    state, reason = {
        "no-token": ("dead", "the comment names no commit and source 'github' has no report: token to "
                             "ask github for the head of pull request #7"),
        "unknown": ("dead", "cannot ask for the head of pull request #7: 404 Not Found (the report: "
                            "token may not read this repository)"),
        "closed": ("skipped", "pull request #7 is closed: nothing to rebuild"),
        "down": ("queued", "cannot ask for the head of pull request #7 yet: 502 Bad Gateway"),
    }[case]
    assert row["state"] == state
    assert (row["detail"] or {}).get("reason", row["last_error"]) == reason


@pytest.fixture
def load_rules(tmp_path, api, monkeypatch):
    monkeypatch.setenv("GH_STATUS_TOKEN", TOKEN)

    def load(report=True):
        path = tmp_path / "dispatch-rules.yaml"
        path.write_text(RULES % (f'report: {{token: "${{env:GH_STATUS_TOKEN}}", api_url: "{api.url}"}}'
                                 if report else ""))
        return load_config(path)
    return load


def test_a_gitlab_merge_request_status_names_its_source_branch(make_app, tmp_path, monkeypatch):
    with GitLabAPIStandin("glpat-pulltest0000000001") as gl:
        monkeypatch.setenv("GL_STATUS_TOKEN", "glpat-pulltest0000000001")
        text = ("sources:\n  gitlab:\n    provider: gitlab\n    secrets: [\"${env:GL_TOKEN}\"]\n"
                f"    report: {{token: \"${{env:GL_STATUS_TOKEN}}\", api_url: \"{gl.api_url}\"}}\n"
                "targets:\n  ci: {kind: memory}\nrules:\n  - name: mr\n"
                "    on: {repo: \"**\", pull_request: {}}\n    run: {target: ci}\n")
        app, store = make_app(text)
        body, headers = load_payload("gitlab/merge_request_hook__woodpecker-opened.json")
        headers["X-Gitlab-Token"] = GITLAB_TOKEN
        assert app.test_client().post("/hooks/gitlab", data=body, headers=headers).status_code == 202
        (tmp_path / "mr.yaml").write_text(text)
        config = load_config(tmp_path / "mr.yaml")
        app.store = store
        assert dispatcher(app, config, Recorder()).run_once() == 1
        poster = StatusPoster(store, Feedback(config), owner="p", lookback=3600, now=lambda: time.time() + 5)
        poster.scan_once()
        while poster.post_once():
            pass
        [status] = gl.statuses
        assert (status.repo, status.sha, status.ref, status.state) == (
            "demoaccount2-commits-group/test_ci_tmp", "2f7670508b771e7e77839402be8b34b13787aba8",
            "real6543-main-patch-42541", "running")


def test_a_merge_request_skipped_by_its_commit_message_reports_it(make_app, tmp_path, monkeypatch):
    with GitLabAPIStandin("glpat-pulltest0000000002") as gl:
        monkeypatch.setenv("GL_STATUS_TOKEN", "glpat-pulltest0000000002")
        text = ("sources:\n  gitlab:\n    provider: gitlab\n    secrets: [\"${env:GL_TOKEN}\"]\n"
                f"    report: {{token: \"${{env:GL_STATUS_TOKEN}}\", api_url: \"{gl.api_url}\"}}\n"
                "targets:\n  ci: {kind: memory}\nrules:\n  - name: mr\n    report_skipped: true\n"
                "    on: {repo: \"**\", pull_request: {}}\n    run: {target: ci}\n")
        app, store = make_app(text)
        body, headers = load_payload("gitlab/merge_request_hook__woodpecker-opened.json")
        doc = json.loads(body)
        doc["object_attributes"]["last_commit"]["message"] = "Edit README.md [skip ci]"
        headers["X-Gitlab-Token"] = GITLAB_TOKEN
        reply = app.test_client().post("/hooks/gitlab", data=json.dumps(doc).encode(), headers=headers)
        assert reply.status_code == 200 and reply.get_json()["matched"] == []
        (tmp_path / "mr.yaml").write_text(text)
        poster = StatusPoster(store, Feedback(load_config(tmp_path / "mr.yaml")), owner="p", lookback=3600,
                              now=lambda: time.time() + 5)
        poster.scan_once()
        while poster.post_once():
            pass
        [status] = gl.statuses
        assert (status.sha, status.ref, status.state, status.description) == (
            "2f7670508b771e7e77839402be8b34b13787aba8", "real6543-main-patch-42541", "success",
            "skipped: [skip ci] in the commit message")
