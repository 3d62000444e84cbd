"""A Gitea comment on a pull request that names no head (no `pull_request` in its payload, as
before Gitea 1.17): delivered signed through the app into a real store, the dispatcher asks the
Gitea API stand-in (`GET /api/v1/repos/{owner}/{repo}/pulls/{index}`, over real HTTP) for the head
before the request is rendered, and the job's statuses go on that head; a closed pull request is
skipped, an unknown one is dead."""
from __future__ import annotations

import json
import time

import pytest
from helpers.dispatch import Recorder, make
from helpers.hosts import host_headers
from helpers.standins.gitea import GiteaAPIStandin
from helpers.store import Clock

from bridge.config.load import load_config
from bridge.dispatch.statuses import Feedback, StatusPoster

TOKEN = "gitea-pulltest-token-0001"
HEAD = "788ed8d02d3b7fcfcf6386dbcbca696aa1d4dc25"
RULES = """\
sources:
  gitea:
    provider: gitea
    secrets: ["${env:GITEA_SECRET}"]
    report: {token: "${env:GITEA_STATUS_TOKEN}", api_url: "%s"}
targets:
  ci: {kind: memory}
rules:
  - name: retest
    on: {repo: "**", comment: {pattern: "^/retest", authors: [alice]}}
    run: {target: ci, parameters: {SHA: "${sha}", N: "${number}", HEAD: "${head_ref}", BASE: "${base_ref}", REF: "${ref}"}}
"""


@pytest.fixture
def api():
    with GiteaAPIStandin(TOKEN) as s:
        yield s


@pytest.fixture
def setup(make_app, write_rules, api, monkeypatch):
    monkeypatch.setenv("GITEA_STATUS_TOKEN", TOKEN)
    app, store = make_app(RULES % api.api_url)
    return app, store, load_config(write_rules(RULES % api.api_url, name="dispatch.yaml"))


def comment() -> bytes:
    """Gitea's IssueCommentPayload on a pull request without its `pull_request` (Gitea < 1.17)."""
    return json.dumps({
        "action": "created", "is_pull": True,
        "issue": {"id": 11, "number": 7, "title": "Fix", "state": "open"},
        "comment": {"id": 42, "body": "/retest", "user": {"login": "alice"},
                    "updated_at": "2024-03-01T10:00:00Z"},
        "repository": {"full_name": "acme/api", "clone_url": "http://gitea.local/acme/api.git",
                       "default_branch": "main"},
        "sender": {"login": "alice"}}).encode()


def run(app, store, config):
    body = comment()
    resp = app.test_client().post("/hooks/gitea", data=body, headers=host_headers(
        "gitea", body, {"Content-Type": "application/json", "X-Gitea-Event": "issue_comment",
                        "X-Gitea-Delivery": "d-gitea-c1"}))
    assert resp.status_code == 202, resp.get_json()
    ci = Recorder()
    assert make(store, ci, Clock(time.time() + 1), feedback=Feedback(config)).run_once() == 1
    return resp.get_json()["delivery"], ci


def test_the_comment_builds_the_head_gitea_names(setup, api):
    app, store, config = setup
    api.add_pull("acme/api", 7, HEAD, head_ref="fix/x", base_ref="develop")
    delivery, ci = run(app, store, config)
    [job] = ci.jobs
    assert job.request["parameters"] == {"SHA": HEAD, "N": "7", "HEAD": "fix/x", "BASE": "develop",
                                         "REF": "refs/pull/7/head"}
    assert (job.event.head_sha, job.event.fork, job.event.head_repo) == (HEAD, False, "acme/api")
    assert store.get_delivery(delivery)["event"]["sha"] == HEAD
    assert [(r.method, r.path) for r in api.requests] == [("GET", "/api/v1/repos/acme/api/pulls/7")]
    poster = StatusPoster(store, Feedback(config), owner="p", lookback=3600, now=lambda: time.time() + 5)
    poster.scan_once()
    while poster.post_once():
        pass
    assert api.states(sha=HEAD) == ["pending"] and api.problems == []


@pytest.mark.parametrize("case, state, reason", [
    ("closed", "skipped", "pull request #7 is closed: nothing to rebuild"),
    ("unknown", "dead", "cannot ask for the head of pull request #7: 404 The target couldn't be found. "
                        "(the report: token may not read this repository)"),
    ("down", "queued", "cannot ask for the head of pull request #7 yet: 503 down"),
])
def test_a_head_that_cannot_be_built(setup, api, case, state, reason):
    app, store, config = setup
    if case == "closed":
        api.add_pull("acme/api", 7, HEAD, state="closed", merged=True)
    if case == "down":
        api.answer_next(503, {"message": "down"})
    delivery, ci = run(app, store, config)
    assert ci.jobs == []
    row = store.get_delivery(delivery)["jobs"][0]
    assert row["state"] == state
    assert (row["detail"] or {}).get("reason", row["last_error"]) == reason
