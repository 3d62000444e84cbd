"""Every pull/merge request payload in shared/payloads, signed byte for byte, through the app and
`cibridge explain --format json`: each field of the event against the value the hosts' docs say
it comes from (GitHub: `pull_request.*`, `repository.full_name`; GitLab: `object_attributes.*`),
written here by hand from the payloads, and the rule's templates rendered from them."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from helpers.payloads import load_payload, payloads_dir, sign_github
from helpers.rules import GITHUB_SECRET, GITLAB_TOKEN

from bridge.cli.main import cli

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
  - name: prs
    on:
      repo: "**"
      pull_request: {types: [opened, synchronize, reopened, closed, edited]}
      forks: run
    run:
      target: mem
      parameters: {N: "${number}", SHA: "${head_sha}", REF: "${ref}", BASE: "${base_ref}",
                   HEAD: "${head_ref}", HEAD_REPO: "${head_repo}", ACTION: "${action}", S: "${sha}"}
"""

# file -> fields, from the payloads as the hosts document them. GitHub: number, action,
# pull_request.{head.sha, head.ref, head.repo.full_name, base.ref, merged, draft, user.login,
# author_association, updated_at}, before (synchronize only). GitLab: object_attributes.{iid,
# action (open -> opened, update + oldrev -> synchronize, merge -> closed + merged),
# last_commit.id, source_branch, target_branch, source/target project ids and paths, oldrev,
# draft / work_in_progress, updated_at}, user.username; no author association.
GITHUB = {
    "github/pull_request__octokit-opened.json": dict(
        repo="Codertocat/Hello-World", number=2, action="opened", host_action="opened",
        head_sha="ec26c3e57ca3a959ca5aad62de7213c562f8c821", head_ref="changes", base_ref="master",
        head_repo="Codertocat/Hello-World", fork=False, merged=False, draft=False, author="Codertocat",
        author_association="OWNER", before="", updated_at="2019-05-15T15:20:33Z", default_branch="master"),
    "github/pull_request__octokit-synchronize.json": dict(
        repo="Codertocat/Hello-World", number=2, action="synchronize", host_action="synchronize",
        head_sha="ec26c3e57ca3a959ca5aad62de7213c562f8c821", head_ref="changes", base_ref="master",
        head_repo="Codertocat/Hello-World", fork=False, merged=False, draft=False, author="Codertocat",
        author_association="OWNER", before="f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
        updated_at="2019-05-15T15:20:33Z", default_branch="master"),
    "github/pull_request__octokit-closed.json": dict(
        repo="Codertocat/Hello-World", number=2, action="closed", host_action="closed",
        head_sha="ec26c3e57ca3a959ca5aad62de7213c562f8c821", head_ref="changes", base_ref="master",
        head_repo="Codertocat/Hello-World", fork=False, merged=False, draft=False, author="Codertocat",
        author_association="OWNER", before="", updated_at="2019-05-15T15:21:18Z", default_branch="master"),
    "github/pull_request__goscm-synchronize.json": dict(
        # a real PR whose head branch is master and base bradrydzewski-patch-1; no `draft` key (2018)
        repo="bradrydzewski/drone-test-go", number=1, action="synchronize", host_action="synchronize",
        head_sha="8102e371cd01cf668893cb2d04a04d52331b1dc9", head_ref="master",
        base_ref="bradrydzewski-patch-1", head_repo="bradrydzewski/drone-test-go", fork=False,
        merged=False, draft=False, author="bradrydzewski", author_association="COLLABORATOR",
        before="d2b75aa7797ec26b088fa2dd527e9d2c052fcedd", updated_at="2018-06-25T19:21:45Z",
        default_branch="master"),
    "github/pull_request__woodpecker-merged.json": dict(
        repo="anbraten/test-ready-release-go", number=62, action="closed", host_action="closed",
        head_sha="c88b9ee719285134957cbc698c9b7ef9b78007bf", head_ref="anbraten-patch-3", base_ref="main",
        head_repo="anbraten/test-ready-release-go", fork=False, merged=True, draft=False,
        author="anbraten", author_association="OWNER", before="", updated_at="2023-12-05T18:34:19Z",
        default_branch="main"),
}
GITLAB = {
    "gitlab/merge_request_hook__docs-open.json": dict(
        # the docs' example: repo is the target project (its `project` object names another)
        repo="awesome_space/awesome_project", number=1, action="opened", host_action="open",
        head_sha="da1560886d4f094c3e6c9ef40349f7d38b5d27d7", head_ref="ms-viewport", base_ref="master",
        head_repo="awesome_space/awesome_project", fork=False, merged=False, draft=False, author="root",
        author_association="", before="", updated_at="2013-12-03T17:23:34Z", default_branch="master"),
    "gitlab/merge_request_hook__buildbot-open-forked.json": dict(
        # source_project_id 2337 (build/awesome_project) != target_project_id 239: a fork
        repo="mmusterman/awesome_project", number=7, action="opened", host_action="open",
        head_sha="e46ee239f3d6d41ade4d1e610669dd71ed86ec80", head_ref="ms-viewport", base_ref="master",
        head_repo="build/awesome_project", fork=True, merged=False, draft=False, author="mmusterman",
        author_association="", before="", updated_at="2018-05-19 06:57:12 -0700", default_branch="master"),
    "gitlab/merge_request_hook__buildbot-update-addcommit.json": dict(
        repo="mmusterman/awesome_project", number=6, action="synchronize", host_action="update",
        head_sha="cee8b01dcbaeed89563c2822f7c59a93c813eb6b", head_ref="ms-viewport", base_ref="master",
        head_repo="mmusterman/awesome_project", fork=False, merged=False, draft=False, author="mmusterman",
        author_association="", before="92268bc781b24f0a61b907da062950e9e5252a69",
        updated_at="2018-05-15 14:51:27 UTC", default_branch="master"),
    "gitlab/merge_request_hook__woodpecker-opened.json": dict(
        repo="demoaccount2-commits-group/test_ci_tmp", number=3, action="opened", host_action="open",
        head_sha="2f7670508b771e7e77839402be8b34b13787aba8", head_ref="real6543-main-patch-42541",
        base_ref="main", head_repo="demoaccount2-commits-group/test_ci_tmp", fork=False, merged=False,
        draft=False, author="real6543", author_association="", before="",
        updated_at="2025-08-05 21:48:27 UTC", default_branch="main"),
    "gitlab/merge_request_hook__woodpecker-update-oldrev.json": dict(
        repo="anbraten/woodpecker", number=3, action="synchronize", host_action="update",
        head_sha="c136499ec574e1034b24c5d306de9acda3005367", head_ref="anbraten-main-patch-05373",
        base_ref="main", head_repo="anbraten/woodpecker", fork=False, merged=False, draft=False,
        author="anbraten", author_association="", before="8b641937b7340066d882b9d8a8cc5b0573a207de",
        updated_at="2022-01-17 15:47:39 UTC", default_branch="main"),
    "gitlab/merge_request_hook__woodpecker-merged.json": dict(
        repo="anbraten/woodpecker-test", number=4, action="closed", host_action="merge",
        head_sha="3e4db3586b65dd401de8c77b3ac343fd24cbf89b", head_ref="patch-1", base_ref="main",
        head_repo="anbraten/woodpecker-test", fork=False, merged=True, draft=False, author="anbraten",
        author_association="", before="", updated_at="2023-12-05 18:43:00 UTC", default_branch="main"),
    "gitlab/system_hook__docs-merge-request-2017.json": dict(
        # a 2017 System Hook: no `action` yet, state "opened" (read as opened: an inference)
        repo="awesome_space/awesome_project", number=1, action="opened", host_action="",
        head_sha="ba3e0d8ff79c80d5b0bbb4f3e2e343e0aaa662b7", head_ref="ms-viewport", base_ref="master",
        head_repo="awesome_space/awesome_project", fork=False, merged=False, draft=False, author="root",
        author_association="", before="", updated_at="2017-09-28T12:23:42.365Z", default_branch="master"),
}


def _expected(rel: str) -> dict:
    provider = rel.split("/")[0]
    want = dict((GITHUB if provider == "github" else GITLAB)[rel])
    pull = "pull" if provider == "github" else "merge-requests"
    want.update(kind="pull_request", provider=provider, source=provider, sha=want["head_sha"],
                after=want["head_sha"], ref=f"refs/{pull}/{want['number']}/head",
                ref_name=f"{pull}/{want['number']}/head", comment="", comment_id="", commits=[],
                commits_complete=False)
    return want


def _post(client, rel):
    body, headers = load_payload(rel)
    if rel.startswith("github/"):
        headers.update(sign_github(body, GITHUB_SECRET))
    else:
        headers["X-Gitlab-Token"] = GITLAB_TOKEN
    return client.post(f"/hooks/{rel.split('/')[0]}", data=body, headers=headers)


@pytest.fixture
def rules(write_rules):
    return write_rules(RULES)


@pytest.mark.parametrize("rel", sorted(GITHUB) + sorted(GITLAB))
def test_pull_payload_through_the_app_and_explain(make_app, rules, tmp_path, rel):
    want = _expected(rel)
    app, store = make_app(RULES)
    resp = _post(app.test_client(), rel)
    data = resp.get_json()
    assert resp.status_code == 202, data
    assert data["matched"] == ["prs"]
    [job] = data["jobs"]
    assert job["request"]["parameters"] == {
        "N": str(want["number"]), "SHA": want["head_sha"], "REF": want["ref"], "BASE": want["base_ref"],
        "HEAD": want["head_ref"], "HEAD_REPO": want["head_repo"], "ACTION": want["action"],
        "S": want["head_sha"]}
    stored = store.get_delivery(data["delivery"])["event"]
    for key, value in want.items():
        assert stored[key] == value, key

    _, headers = load_payload(rel)
    (tmp_path / "headers.json").write_text(json.dumps(headers))
    result = CliRunner().invoke(cli, ["explain", "--rules", str(rules), "--source", want["provider"],
                                      "--headers", str(tmp_path / "headers.json"), "--format", "json",
                                      str(payloads_dir() / rel)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    for key, value in want.items():
        assert out["event"][key] == value, key
    [verdict] = out["rules"]
    assert verdict["matched"] is True
    assert verdict["reason"] == f"pull request #{want['number']} {want['action']}"
    assert verdict["jobs"][0]["request"]["parameters"]["SHA"] == want["head_sha"]


def test_a_merge_request_from_a_fork_is_skipped_by_default(make_app):
    app, store = make_app(RULES.replace("      forks: run\n", ""))
    resp = _post(app.test_client(), "gitlab/merge_request_hook__buildbot-open-forked.json")
    data = resp.get_json()
    assert resp.status_code == 200 and data["matched"] == []
    [verdict] = store.get_delivery(data["delivery"])["verdicts"]
    assert verdict["reason"].startswith("pull request #7 comes from the fork 'build/awesome_project'; "
                                        "forks: skip (the default")


def test_explain_text_names_the_pull_request(rules, tmp_path):
    rel = "gitlab/merge_request_hook__buildbot-open-forked.json"
    _, headers = load_payload(rel)
    (tmp_path / "headers.json").write_text(json.dumps(headers))
    result = CliRunner().invoke(cli, ["explain", "--rules", str(rules), "--source", "gitlab", "--headers",
                                      str(tmp_path / "headers.json"), str(payloads_dir() / rel)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:2] == ["event: pull_request mmusterman/awesome_project #7 opened (open): ms-viewport -> "
                         "master (build e46ee239f3d6) by mmusterman",
                         "       fork (head repository build/awesome_project)"]
    assert "  MATCH  prs: pull request #7 opened" in lines
