"""Bitbucket Cloud's pull requests and their comments through the app and `cibridge explain`.
No pull request payload is among the shared ones: the bodies here follow Atlassian's "Event
payloads" page (Pull request: `actor`, `pullrequest`, `repository`; `pullrequest.id`, `state`,
`author`, `source`/`destination` each with `branch.name`, `commit.hash` (abbreviated, 12 digits)
and `repository`; comment events add `comment.{id, content.raw, updated_on}`), and each field is
asserted against what that page says it means. Bitbucket serves no pull ref and sends no author
association."""
from __future__ import annotations

import json

import pytest
from helpers.hosts import host_headers

RULES = """\
sources:
  bitbucket:
    provider: bitbucket
    secrets: ["${env:BB_SECRET}"]
targets:
  mem:
    kind: memory
rules:
  - name: prs
    on:
      repo: "**"
      pull_request: {types: [opened, synchronize, closed]}
    run:
      target: mem
      parameters: {N: "${number}", SHA: "${sha}", BASE: "${base_ref}", HEAD: "${head_ref}", ACTION: "${action}"}
  - name: retest
    on: {repo: "**", comment: {pattern: "^/retest", authors: [alice]}}
    run: {target: mem, parameters: {N: "${number}", SHA: "${sha}"}}
"""

REPO = {"full_name": "acme/api", "uuid": "{r-1}", "links": {"html": {"href": "https://bitbucket.org/acme/api"}}}
FORK = {"full_name": "mallory/api", "uuid": "{r-2}"}


def pull(state="OPEN", source_repo=REPO, *, comment: str | None = None, actor="alice") -> bytes:
    doc = {"actor": {"nickname": actor, "display_name": actor.title()},
           "repository": REPO,
           "pullrequest": {"id": 12, "title": "Fix", "state": state, "draft": False,
                           "author": {"nickname": "alice", "display_name": "Alice"},
                           "source": {"branch": {"name": "fix/login"}, "commit": {"hash": "1a2b3c4d5e6f"},
                                      "repository": source_repo},
                           "destination": {"branch": {"name": "main"}, "commit": {"hash": "99aa88bb77cc"},
                                           "repository": REPO},
                           "updated_on": "2024-05-01T10:00:00.000000+00:00"}}
    if comment is not None:
        doc["comment"] = {"id": 501, "content": {"raw": comment}, "user": {"nickname": actor},
                          "updated_on": "2024-05-01T10:05:00.000000+00:00"}
    return json.dumps(doc).encode()


def post(app, key: str, body: bytes):
    headers = host_headers("bitbucket", body, {"Content-Type": "application/json", "X-Event-Key": key,
                                               "X-Request-UUID": f"uuid-{key}-{len(body)}"})
    return app.test_client().post("/hooks/bitbucket", data=body, headers=headers)


@pytest.mark.parametrize("key, state, action, merged", [
    ("pullrequest:created", "OPEN", "opened", False),
    ("pullrequest:updated", "OPEN", "synchronize", False),       # new commits and edits alike
    ("pullrequest:fulfilled", "MERGED", "closed", True),        # merged
    ("pullrequest:rejected", "DECLINED", "closed", False),      # declined
])
def test_each_pull_request_key(make_app, key, state, action, merged):
    app, store = make_app(RULES)
    resp = post(app, key, pull(state))
    data = resp.get_json()
    assert resp.status_code == 202, data
    assert data["jobs"][0]["request"]["parameters"] == {
        "N": "12", "SHA": "1a2b3c4d5e6f", "BASE": "main", "HEAD": "fix/login", "ACTION": action}
    event = store.get_delivery(data["delivery"])["event"]
    assert {k: event[k] for k in ("kind", "repo", "number", "action", "host_action", "head_sha", "sha",
                                  "base_ref", "head_ref", "head_repo", "fork", "merged", "author",
                                  "author_association", "ref")} == {
        "kind": "pull_request", "repo": "acme/api", "number": 12, "action": action, "host_action": key,
        "head_sha": "1a2b3c4d5e6f", "sha": "1a2b3c4d5e6f", "base_ref": "main", "head_ref": "fix/login",
        "head_repo": "acme/api", "fork": False, "merged": merged, "author": "alice",
        "author_association": "", "ref": "refs/heads/fix/login"}


def test_a_fork_by_repository_uuid_is_skipped(make_app):
    app, _ = make_app(RULES)
    resp = post(app, "pullrequest:created", pull(source_repo=FORK))
    data = resp.get_json()
    assert resp.status_code == 200 and data["matched"] == []
    assert "fork 'mallory/api'" in next(r["reason"] for r in data["rules"] if r["rule"] == "prs")


@pytest.mark.parametrize("actor, text, built", [("alice", "/retest", True), ("bob", "/retest", False),
                                                ("alice", "nice", False)])
def test_a_comment_rebuilds_the_head_for_listed_authors(make_app, actor, text, built):
    app, _ = make_app(RULES)
    resp = post(app, "pullrequest:comment_created", pull(comment=text, actor=actor))
    data = resp.get_json()
    if built:
        assert resp.status_code == 202 and data["matched"] == ["retest"]
        assert data["jobs"][0]["request"]["parameters"] == {"N": "12", "SHA": "1a2b3c4d5e6f"}
    else:
        assert resp.status_code == 200 and data["matched"] == []


def test_a_resend_of_the_same_change_is_a_duplicate_and_a_bad_hash_is_400(make_app):
    app, _ = make_app(RULES)
    first = post(app, "pullrequest:created", pull())
    body = pull()
    again = app.test_client().post("/hooks/bitbucket", data=body, headers=host_headers(
        "bitbucket", body, {"X-Event-Key": "pullrequest:created", "X-Request-UUID": "another-uuid"}))
    assert first.status_code == 202
    assert again.status_code == 200 and again.get_json()["duplicate_of"] == first.get_json()["delivery"]
    bad = json.loads(pull())
    bad["pullrequest"]["source"]["commit"]["hash"] = "not-a-hash"
    assert post(app, "pullrequest:created", json.dumps(bad).encode()).status_code == 400


def test_other_pull_request_keys_are_not_handled(make_app):
    app, _ = make_app(RULES)
    resp = post(app, "pullrequest:approved", pull())
    assert resp.status_code == 200
    assert resp.get_json()["ignored"] == "event 'pullrequest:approved' is not handled"
