"""Pull request comments through the app: GitHub `issue_comment` and GitLab `Note Hook` bodies
built here in the shapes the hosts document (no shared payload exists for them), signed, matched
against a rule's `on.comment` pattern and authors."""
from __future__ import annotations

import json

from helpers.payloads import sign_github
from helpers.pulls import HEAD, issue_comment, note
from helpers.rules import GITHUB_SECRET, GITLAB_TOKEN

RULES = """\
sources:
  github:
    provider: github
    secrets: ["${env:GH_SECRET}"]
  gitlab:
    provider: gitlab
    secrets: ["${env:GL_TOKEN}"]
targets:
  mem:
    kind: memory
rules:
  - name: retest
    on: {repo: "**", comment: {pattern: "^/retest\\\\b", authors: [OWNER, MEMBER, COLLABORATOR, alice]}}
    run: {target: mem, parameters: {SHA: "${head_sha}", N: "${number}", REF: "${ref}"}}
"""

def github(client, payload):
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "issue_comment",
               "X-GitHub-Delivery": f"d-{payload['comment']['body']}-{payload['comment']['author_association']}",
               **sign_github(body, GITHUB_SECRET)}
    return client.post("/hooks/github", data=body, headers=headers)


def gitlab(client, payload):
    headers = {"Content-Type": "application/json", "X-Gitlab-Event": "Note Hook",
               "X-Gitlab-Token": GITLAB_TOKEN}
    return client.post("/hooks/gitlab", data=json.dumps(payload).encode(), headers=headers)


def test_github_retest_from_a_member_keeps_its_templates_for_the_dispatcher(make_app):
    app, store = make_app(RULES)
    resp = github(app.test_client(), issue_comment())
    data = resp.get_json()
    assert resp.status_code == 202, data
    assert data["matched"] == ["retest"]
    # No head commit in an issue_comment: the dispatcher asks the API, then renders these.
    assert data["jobs"][0]["request"]["parameters"] == {"SHA": "${head_sha}", "N": "${number}",
                                                        "REF": "${ref}"}
    event = store.get_delivery(data["delivery"])["event"]
    assert (event["kind"], event["number"], event["sha"], event["head_sha"], event["ref"]) == \
        ("comment", 7, None, "", "refs/pull/7/head")
    assert (event["author"], event["author_association"], event["comment"], event["comment_id"]) == \
        ("octocat", "MEMBER", "/retest", "1366000001")


def test_github_retest_from_a_stranger_an_edit_or_an_issue_builds_nothing(make_app):
    app, store = make_app(RULES)
    client = app.test_client()
    data = github(client, issue_comment(association="NONE", login="stranger")).get_json()
    assert data["matched"] == []
    [verdict] = store.get_delivery(data["delivery"])["verdicts"]
    assert verdict["reason"] == ("comment on pull request #7 by 'stranger' (NONE): not in comment.authors "
                                 "[OWNER, MEMBER, COLLABORATOR, alice]")
    data = github(client, issue_comment(body="/retest please", action="edited")).get_json()
    assert data["matched"] == []
    data = github(client, issue_comment(body="looks good")).get_json()
    assert data["matched"] == []
    [verdict] = store.get_delivery(data["delivery"])["verdicts"]
    assert verdict["reason"] == "comment on pull request #7 does not match comment.pattern '^/retest\\b'"
    resp = github(client, issue_comment(body="/retest issue", on_pull=False))
    assert resp.status_code == 200
    assert resp.get_json()["ignored"] == "a comment on an issue, not on a pull request"


def test_gitlab_note_on_a_merge_request_renders_its_head_at_once(make_app):
    app, store = make_app(RULES)
    resp = gitlab(app.test_client(), note())
    data = resp.get_json()
    assert resp.status_code == 202, data
    assert data["jobs"][0]["request"]["parameters"] == {"SHA": HEAD, "N": "1",
                                                        "REF": "refs/merge-requests/1/head"}
    event = store.get_delivery(data["delivery"])["event"]
    assert (event["kind"], event["sha"], event["base_ref"], event["head_ref"], event["author"]) == \
        ("comment", HEAD, "main", "feature/x", "alice")
    assert event["author_association"] == "" and event["fork"] is False


def test_gitlab_has_no_associations_user_names_decide(make_app):
    app, store = make_app(RULES)
    client = app.test_client()
    data = gitlab(client, note(username="mallory")).get_json()
    assert data["matched"] == []
    [verdict] = store.get_delivery(data["delivery"])["verdicts"]
    assert verdict["reason"] == ("comment on pull request #1 by 'mallory': not in comment.authors "
                                 "[OWNER, MEMBER, COLLABORATOR, alice] (gitlab sends no author "
                                 "association: list user names)")
    resp = gitlab(client, note(noteable="Issue"))
    assert resp.status_code == 200 and resp.get_json()["ignored"] == "a comment, but not on a merge request"
