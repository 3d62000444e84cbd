"""Pull request comments through the app: GitHub `issue_comment` and GitLab `Note Hook` bodies
built here in the shapes the hosts document (no shared payload exists for them), signed, matched
against a rule's `on.comment` pattern and authors."""
from __future__ import annotations

import json

from helpers.payloads import sign_github
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

HEAD = "6dcb09b5b57875f334f61aebed695e2e4193db5e"


def issue_comment(body="/retest", association="MEMBER", action="created", on_pull=True, login="octocat"):
    """GitHub docs, webhook events: issue_comment (a pull request is an issue with `pull_request`)."""
    issue = {"url": "https://api.github.com/repos/acme/api/issues/7", "number": 7, "title": "Fix",
             "user": {"login": "contributor", "id": 2}, "state": "open",
             "author_association": "CONTRIBUTOR", "body": "Please pull these changes"}
    if on_pull:
        issue["pull_request"] = {"url": "https://api.github.com/repos/acme/api/pulls/7",
                                 "html_url": "https://github.com/acme/api/pull/7",
                                 "diff_url": "https://github.com/acme/api/pull/7.diff",
                                 "patch_url": "https://github.com/acme/api/pull/7.patch"}
    return {"action": action, "issue": issue,
            "comment": {"id": 1366000001, "node_id": "IC_x", "body": body,
                        "user": {"login": login, "id": 1, "type": "User"},
                        "created_at": "2026-12-07T12:00:00Z", "updated_at": "2026-12-07T12:00:00Z",
                        "author_association": association,
                        "html_url": "https://github.com/acme/api/pull/7#issuecomment-1366000001"},
            "repository": {"id": 1296269, "name": "api", "full_name": "acme/api", "private": False,
                           "owner": {"login": "acme"}, "default_branch": "main",
                           "clone_url": "https://github.com/acme/api.git",
                           "ssh_url": "git@github.com:acme/api.git"},
            "sender": {"login": login, "id": 1}}


def note(text="/retest", username="alice", noteable="MergeRequest", action="create"):
    """GitLab docs, webhook events: comment on a merge request (Note Hook)."""
    payload = {
        "object_kind": "note", "event_type": "note",
        "user": {"id": 1, "name": "Alice", "username": username, "email": "[REDACTED]"},
        "project_id": 5,
        "project": {"id": 5, "name": "api", "path_with_namespace": "acme/api", "default_branch": "main",
                    "git_http_url": "https://gitlab.example.com/acme/api.git",
                    "git_ssh_url": "git@gitlab.example.com:acme/api.git",
                    "web_url": "https://gitlab.example.com/acme/api"},
        "repository": {"name": "api", "url": "git@gitlab.example.com:acme/api.git",
                       "homepage": "https://gitlab.example.com/acme/api"},
        "object_attributes": {"id": 1244, "note": text, "noteable_type": noteable, "author_id": 1,
                              "created_at": "2026-12-07 12:00:00 UTC",
                              "updated_at": "2026-12-07 12:00:00 UTC", "project_id": 5,
                              "noteable_id": 7, "system": False, "action": action,
                              "url": "https://gitlab.example.com/acme/api/-/merge_requests/1#note_1244"},
    }
    if noteable == "MergeRequest":
        payload["merge_request"] = {
            "id": 7, "iid": 1, "target_branch": "main", "source_branch": "feature/x",
            "source_project_id": 5, "target_project_id": 5, "author_id": 2, "title": "Fix",
            "state": "opened", "draft": False, "work_in_progress": False,
            "source": {"path_with_namespace": "acme/api"}, "target": {"path_with_namespace": "acme/api"},
            "last_commit": {"id": HEAD, "message": "fix things\n", "timestamp": "2026-12-07T11:00:00+00:00"}}
    return payload


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
