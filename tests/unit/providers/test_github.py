"""Every real payload normalizes or is ignored; GitHub pushes normalized: pings and unhandled events,
files, branches, tags, forced pushes, default branch, capped lists, form bodies, and push shape errors."""
from __future__ import annotations

import json

import pytest
from werkzeug.datastructures import Headers

from bridge.errors import BadPayload, VerificationFailed
from bridge.events import ZERO_SHA, Event, Ignored
from bridge.providers import github
from helpers.payloads import github_form_body, load_payload, payload_files, sign_github
from helpers.normalize import SECRET, _push_body, normalize


# --- every real payload -----------------------------------------------------------------------

@pytest.mark.parametrize("rel_path", payload_files("github") + payload_files("gitlab"))
def test_every_payload_normalizes_or_is_ignored(rel_path):
    provider = rel_path.split("/")[0]
    result = normalize(provider, rel_path)
    _, headers = load_payload(rel_path)
    event = headers.get("X-GitHub-Event") or headers.get("X-Gitlab-Event")
    if event in ("push", "Push Hook", "Tag Push Hook") or rel_path.startswith(("gitlab/system_hook__docs-push",
                                                                                 "gitlab/system_hook__docs-tag")):
        assert isinstance(result, Event)
        assert result.provider == provider and result.source == f"{provider}-src"
        assert result.ref.startswith(("refs/heads/", "refs/tags/"))
        assert result.ref.endswith("/" + result.ref_name)
        assert result.kind == ("delete" if result.deleted else "tag" if result.is_tag else "push")
        assert result.repo and result.clone_urls and result.default_branch and result.pusher
        assert result.delivery_id == (headers.get("X-GitHub-Delivery") or headers.get("Idempotency-Key"))
        assert Event.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    elif event in ("pull_request", "Merge Request Hook") or "merge-request" in rel_path:
        # Every field is asserted against the hosts' docs in tests/integration/web/test_pull_payloads.py.
        assert isinstance(result, Event) and result.kind == "pull_request" and result.is_pull
        prefix = "refs/pull/" if provider == "github" else "refs/merge-requests/"
        assert result.ref == f"{prefix}{result.number}/head" and result.sha == result.head_sha == result.after
        assert result.base_ref and result.head_ref and result.action and result.repo and result.clone_urls
        assert Event.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    else:
        assert isinstance(result, Ignored) and result.reason


def test_github_ping_and_unhandled_events():
    assert normalize("github", "github/ping__octokit-org-hook.json") == Ignored("ping", event_name="ping")
    assert normalize("github", "github/create__octokit-tag.json").reason == "event 'create' is not handled"


def test_github_branch_push_with_files():
    e = normalize("github", "github/push__goscm-branch.json")
    assert (e.kind, e.repo, e.ref, e.ref_name, e.branch, e.tag) == \
        ("push", "Codertocat/Hello-World", "refs/heads/master", "master", "master", "")
    assert e.before.startswith("a10867b1") and e.after == e.sha and e.sha.startswith("199eddf4")
    assert (e.created, e.deleted, e.forced, e.commits_complete) == (False, False, False, True)
    assert e.pusher == "Codertocat" and e.default_branch == "master"
    assert e.clone_urls == ("https://github.com/Codertocat/Hello-World.git", "git@github.com:Codertocat/Hello-World.git")
    assert e.head_message == "Update README" == e.commits[0].message
    assert e.commits[0].author == "Codertocat" and e.commits[0].has_files
    assert e.delivery_id == "cbfc4261-9fbb-55ca-ae5c-e6c850bea81d"


def test_github_nine_commits_aggregate_files():
    e = normalize("github", "github/push__f110-nine-commits.json")
    assert len(e.commits) == 9 and e.commits_complete and e.sha == e.after
    assert e.changed_files() is not None


def test_github_tag_delete():
    e = normalize("github", "github/push__octokit-tag-delete.json")
    assert (e.kind, e.ref, e.tag, e.branch) == ("delete", "refs/tags/simple-tag", "simple-tag", "")
    assert e.deleted and not e.created and e.after == ZERO_SHA and e.sha is None and e.commits == ()
    assert e.head_message == ""


def test_github_new_branch():
    e = normalize("github", "github/push__octokit-new-branch.json")
    assert (e.kind, e.branch, e.created, e.deleted, e.forced) == ("push", "master", True, False, False)
    assert e.before == ZERO_SHA and len(e.commits) == 1


def test_github_force_push_and_old_creates_are_not_forced():
    assert normalize("github", "github/push__woodpecker-force.json").forced is True
    assert normalize("github", "github/push__f110-force.json").forced is True
    # 2015 deliveries say forced: true on a create and a delete; neither rewrites history.
    created = normalize("github", "github/push__f110-branch-create.json")
    assert created.created and not created.forced
    deleted = normalize("github", "github/push__f110-branch-delete.json")
    assert deleted.kind == "delete" and not deleted.forced


def test_github_annotated_tag_builds_the_commit_not_the_tag_object():
    e = normalize("github", "github/push__f110-tag-create.json")
    assert (e.kind, e.tag, e.created) == ("tag", "v1.1", True)
    assert e.after.startswith("73eab2d3") and e.sha.startswith("3c6cd430")


def test_github_default_branch_falls_back_to_master_branch():
    body, headers = load_payload("github/push__goscm-branch.json")
    payload = json.loads(body)
    del payload["repository"]["default_branch"]
    payload["repository"]["master_branch"] = "trunk"
    e = github.normalize(Headers(headers), json.dumps(payload).encode(), source="s", delivery_id="d")
    assert e.default_branch == "trunk"


def test_github_capped_commit_list_is_incomplete():
    body, headers = load_payload("github/push__goscm-branch.json")
    payload = json.loads(body)
    payload["commits"] = payload["commits"] * 2048
    e = github.normalize(Headers(headers), json.dumps(payload).encode(), source="s", delivery_id="d")
    assert len(e.commits) == 2048 and e.commits_complete is False and e.changed_files() is None


def test_github_slash_in_names_and_only_prefix_decides():
    body, headers = load_payload("github/push__goscm-branch.json")
    for ref, kind, name in [("refs/heads/release/v1.2", "push", "release/v1.2"),
                            ("refs/tags/release/v1.2", "tag", "release/v1.2"),
                            ("refs/heads/refs/tags/x", "push", "refs/tags/x"),
                            ("refs/heads/v1.0", "push", "v1.0")]:
        payload = dict(json.loads(body), ref=ref)
        e = github.normalize(Headers(headers), json.dumps(payload).encode(), source="s", delivery_id="d")
        assert (e.kind, e.ref_name, e.is_branch, e.is_tag) == (kind, name, kind == "push", kind == "tag")
    payload = dict(json.loads(body), ref="refs/notes/commits")
    result = github.normalize(Headers(headers), json.dumps(payload).encode(), source="s", delivery_id="d")
    assert result == Ignored("ref 'refs/notes/commits' is neither a branch nor a tag", event_name="push")


def test_github_form_encoded_body():
    body, headers = load_payload("github/push__woodpecker-branch-org.json")
    form = github_form_body(body)
    headers.update(sign_github(form, SECRET))
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    github.verify(Headers(headers), form, [SECRET])
    e = github.normalize(Headers(headers), form, source="s", delivery_id="d")
    assert e == github.normalize(Headers(load_payload("github/push__woodpecker-branch-org.json")[1]), body,
                                 source="s", delivery_id="d")
    assert e.repo == "woodpecker-ci/woodpecker"
    # The JSON body signature does not cover the form body.
    with pytest.raises(VerificationFailed):
        github.verify(Headers({**headers, **sign_github(body, SECRET)}), form, [SECRET])


@pytest.mark.parametrize("changes, message", [
    ({"ref": ...}, "push payload has no 'ref'"),
    ({"ref": None}, "push payload has no 'ref'"),
    ({"after": ...}, "push payload has no 'after'"),
    ({"ref": 7}, "push payload field 'ref' is not a string"),
    ({"after": ["x"]}, "push payload field 'after' is not a string"),
    ({"after": "HEAD; rm -rf /"}, "push payload field 'after' is not a commit SHA"),
    ({"before": 0}, "push payload field 'before' is not a string"),
    ({"repository": ...}, "push payload has no 'repository.full_name'"),
    ({"repository": {"full_name": 1}}, "push payload field 'repository.full_name' is not a string"),
    ({"commits": {}}, "push payload field 'commits' is not a list"),
    ({"commits": ["x"]}, "push payload commits[0] is not an object"),
    ({"commits": [{"id": "a" * 40, "added": "README"}]}, "push payload commits[0] field 'added' is not a list of strings"),
    ({"commits": [{"message": "m"}]}, "push payload commits[0] has no 'id'"),
    ({"forced": "yes"}, "push payload field 'forced' is not a boolean"),
    ({"head_commit": {"id": "a" * 40, "message": 3}}, "push payload field 'head_commit.message' is not a string"),
])
def test_github_push_shape_errors(changes, message):
    with pytest.raises(BadPayload) as exc:
        github.normalize(Headers({"X-GitHub-Event": "push"}), _push_body(**changes), source="s", delivery_id="d")
    assert exc.value.message == message
