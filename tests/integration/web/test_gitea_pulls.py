"""Gitea's and Forgejo's pull requests and pull request comments, signed byte for byte as these
hosts sign, through the app and `cibridge explain --format json`. Each field against what Gitea's
webhook structs (`structs/hook.go`: PullRequestPayload, IssueCommentPayload) say it holds, written
here by hand: `number`, `action` (`synchronized` is GitHub Actions' `synchronize`; a merge is
`closed` with `pull_request.merged`), `pull_request.head.{sha,ref,repo_id}`, `base.{ref,repo_id}`
(a fork: head.repo_id is not base.repo_id), `user.login`, `updated_at`; no author association."""
from __future__ import annotations

import json

import pytest
from helpers.hosts import explain_json, host_headers, signed

RULES = """\
sources:
  gitea:
    provider: gitea
    secrets: ["${env:GITEA_SECRET}"]
  forgejo:
    provider: forgejo
    secrets: ["${env:FORGEJO_SECRET}"]
targets:
  mem:
    kind: memory
rules:
  - name: prs
    on:
      repo: "**"
      pull_request: {types: [opened, synchronize, reopened, closed]}
    run:
      target: mem
      parameters: {N: "${number}", SHA: "${sha}", REF: "${ref}", BASE: "${base_ref}", HEAD: "${head_ref}"}
  - name: retest
    on: {repo: "**", comment: {pattern: "^/retest\\\\b", authors: [alice]}}
    run: {target: mem, parameters: {N: "${number}", SHA: "${sha}"}}
"""

EXPECTED = {
    "gitea/pull_request__woodpecker-merged.json": dict(
        repo="anbraten/test-repo", number=1, action="closed", host_action="closed",
        head_sha="d555a5dd07f4d0148a58d4686ec381502ae6a2d4", head_ref="anbraten-patch-1",
        base_ref="main", head_repo="anbraten/test-repo", fork=False, merged=True, draft=False,
        author="anbraten", author_association="", updated_at="2023-12-05T18:35:31Z",
        ref="refs/pull/1/head"),
    # Sent with X-Gitea-Event-Type: pull_request_sync: new commits on the head branch.
    "gitea/pull_request__woodpecker-synchronized.json": dict(
        repo="Test-CI/multi-line-secrets", number=2, action="synchronize", host_action="synchronized",
        head_sha="788ed8d02d3b7fcfcf6386dbcbca696aa1d4dc25", head_ref="test-patch-1", base_ref="main",
        head_repo="", fork=False, merged=False, draft=False, author="test", author_association="",
        updated_at="2024-02-22T01:42:03+01:00", ref="refs/pull/2/head"),
    "forgejo/pull_request__e2e-opened.json": dict(
        repo="root/example-pull-request", number=2, action="opened", host_action="opened",
        head_sha="5b88b61dbedba1acefb5a65b42114bfef773e18e", head_ref="other", base_ref="main",
        head_repo="root/example-pull-request", fork=False, merged=False, draft=False, author="root",
        author_association="", updated_at="2025-09-01T17:21:51Z", ref="refs/pull/2/head"),
}


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_each_pull_request_through_the_app_and_explain(make_app, write_rules, tmp_path, rel):
    host = rel.split("/")[0]
    app, store = make_app(RULES)
    body, headers = signed(host, rel)
    resp = app.test_client().post(f"/hooks/{host}", data=body, headers=headers)
    want = EXPECTED[rel]
    data = resp.get_json()
    assert resp.status_code == 202, data
    assert data["matched"] == ["prs"]
    assert data["jobs"][0]["request"]["parameters"] == {
        "N": str(want["number"]), "SHA": want["head_sha"], "REF": want["ref"], "BASE": want["base_ref"],
        "HEAD": want["head_ref"]}
    stored = store.get_delivery(data["delivery"])["event"]
    explained = explain_json(write_rules(RULES, name="explain.yaml"), host, rel, tmp_path)["event"]
    for event in (stored, explained):
        got = {k: event[k] for k in want}
        assert got == want
        assert (event["kind"], event["sha"], event["provider"]) == ("pull_request", want["head_sha"], host)


def test_a_fork_is_told_by_repo_id_and_skipped_by_default(make_app):
    rel = "forgejo/pull_request__e2e-opened.json"
    body, headers = signed("forgejo", rel)
    payload = json.loads(body)
    payload["pull_request"]["head"]["repo_id"] = 99       # the head branch lives in another repository
    payload["pull_request"]["head"]["repo"]["full_name"] = "mallory/example-pull-request"
    body = json.dumps(payload).encode()
    app, _ = make_app(RULES)
    resp = app.test_client().post("/hooks/forgejo", data=body,
                                  headers=host_headers("forgejo", body, {"X-Forgejo-Event": "pull_request"}))
    data = resp.get_json()
    assert resp.status_code == 200 and data["matched"] == []
    reason = next(r["reason"] for r in data["rules"] if r["rule"] == "prs")
    assert "fork 'mallory/example-pull-request'" in reason and "forks: skip" in reason


def _comment(author: str, text: str = "/retest please", *, with_head: bool = True, is_pull: bool = True) -> bytes:
    """An IssueCommentPayload as Gitea sends it on a pull request (structs/hook.go): `is_pull`,
    the issue, the comment, and (Gitea 1.17+) the pull request with its head."""
    doc = {"action": "created", "is_pull": is_pull,
           "issue": {"id": 11, "number": 7, "title": "Fix"},
           "comment": {"id": 42, "body": text, "user": {"login": author},
                       "updated_at": "2024-03-01T10:00:00Z"},
           "repository": {"full_name": "acme/api", "clone_url": "http://gitea.local/acme/api.git"},
           "sender": {"login": author}}
    if with_head:
        doc["pull_request"] = {"number": 7, "head": {"sha": "a" * 40, "ref": "fix", "repo_id": 3},
                               "base": {"ref": "main", "repo_id": 3}}
    return json.dumps(doc).encode()


@pytest.mark.parametrize("author, text, built", [
    ("alice", "/retest please", True),        # named in comment.authors
    ("mallory", "/retest please", False),     # Gitea sends no association: only names can match
    ("alice", "looks good", False),           # not the pattern
])
def test_a_pull_request_comment_rebuilds_for_the_listed_authors(make_app, author, text, built):
    app, _ = make_app(RULES)
    body = _comment(author, text)
    resp = app.test_client().post("/hooks/gitea", data=body,
                                  headers=host_headers("gitea", body, {"X-Gitea-Event": "issue_comment"}))
    data = resp.get_json()
    if built:
        assert resp.status_code == 202 and data["matched"] == ["retest"]
        assert data["jobs"][0]["request"]["parameters"] == {"N": "7", "SHA": "a" * 40}
    else:
        assert resp.status_code == 200 and data["matched"] == []


@pytest.mark.parametrize("with_head", [False, True])
def test_a_comment_on_an_issue_is_ignored(make_app, with_head):
    # A plain issue's comment: `is_pull: false` and no `pull_request` object at all (Gitea leaves
    # it out, `omitempty`); also with one, whatever else the payload holds.
    app, _ = make_app(RULES)
    body = _comment("alice", is_pull=False, with_head=with_head)
    assert ("pull_request" in json.loads(body)) is with_head
    resp = app.test_client().post("/hooks/gitea", data=body,
                                  headers=host_headers("gitea", body, {"X-Gitea-Event": "issue_comment"}))
    assert resp.status_code == 200
    assert resp.get_json()["ignored"] == "a comment on an issue, not on a pull request"


def test_a_comment_without_its_head_keeps_the_templates_for_the_dispatcher(make_app):
    app, store = make_app(RULES)
    body = _comment("alice", with_head=False)
    resp = app.test_client().post("/hooks/gitea", data=body,
                                  headers=host_headers("gitea", body, {"X-Gitea-Event": "issue_comment"}))
    data = resp.get_json()
    assert resp.status_code == 202
    # The head is asked for when the job runs (GET /repos/acme/api/pulls/7), then rendered.
    assert data["jobs"][0]["request"]["parameters"] == {"N": "${number}", "SHA": "${sha}"}
    event = store.get_delivery(data["delivery"])["event"]
    assert (event["sha"], event["head_sha"], event["fork"], event["number"]) == (None, "", False, 7)


def test_a_comment_on_a_fork_s_pull_request_names_the_fork(make_app):
    app, store = make_app(RULES)
    doc = json.loads(_comment("alice"))
    doc["pull_request"]["head"].update(repo_id=9, repo={"full_name": "mallory/api"})
    body = json.dumps(doc).encode()
    resp = app.test_client().post("/hooks/gitea", data=body,
                                  headers=host_headers("gitea", body, {"X-Gitea-Event": "issue_comment"}))
    data = resp.get_json()
    event = store.get_delivery(data["delivery"])["event"]
    assert (event["fork"], event["head_repo"], event["head_sha"]) == (True, "mallory/api", "a" * 40)
