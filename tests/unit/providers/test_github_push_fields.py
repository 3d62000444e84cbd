"""GitHub push payload fields as the Event carries them: `created`/`deleted` defaults, the
owner/name check, the 2,048-commit cap and refs that are neither branch nor tag."""
import json

import pytest

from bridge.errors import BadPayload
from bridge.events import ZERO_SHA, Ignored
from bridge.providers import github
from helpers.payloads import load_payload
from helpers.pulls import issue_comment

A, B = "a" * 40, "b" * 40


def push(**fields):
    payload = {"ref": "refs/heads/main", "before": A, "after": B,
               "repository": {"full_name": "acme/api"}, "commits": []}
    payload.update(fields)
    return github.normalize({"X-GitHub-Event": "push", "Content-Type": "application/json"},
                            json.dumps(payload).encode(), source="gh", delivery_id="d-1")


def commit(k):
    return {"id": f"{k:040x}", "message": f"c{k}", "added": [], "modified": [f"f{k}"], "removed": []}


def test_created_and_deleted_default_to_false():
    e = push()
    assert (e.created, e.deleted, e.kind, e.sha) == (False, False, "push", B)


@pytest.mark.parametrize("fields, created, deleted, kind", [
    ({"created": True}, True, False, "push"),
    ({"before": ZERO_SHA}, True, False, "push"),
    ({"deleted": True}, False, True, "delete"),
    ({"after": ZERO_SHA}, False, True, "delete"),
    ({"created": False, "deleted": False}, False, False, "push"),
])
def test_created_and_deleted_flags(fields, created, deleted, kind):
    e = push(**fields)
    assert (e.created, e.deleted, e.kind) == (created, deleted, kind)
    assert e.sha == (None if deleted else B)


def test_forced_only_when_nothing_is_created_or_deleted():
    assert push(forced=True).forced is True
    assert push(forced=True, created=True).forced is False
    assert push(forced=True, after=ZERO_SHA).forced is False
    assert push().forced is False


@pytest.mark.parametrize("full_name", ["acme", "acme/", "/api", "acme/api/x", ""])
def test_repository_must_be_owner_slash_name(full_name):
    with pytest.raises(BadPayload, match="not owner/name|full_name"):
        push(repository={"full_name": full_name})


def test_owner_slash_name_is_the_repo():
    assert push(repository={"full_name": "Acme-Org/api.v2"}).repo == "Acme-Org/api.v2"


@pytest.mark.parametrize("count, complete", [(0, True), (2047, True), (2048, False), (2049, False)])
def test_commit_list_is_complete_below_githubs_cap(count, complete):
    e = push(commits=[commit(k) for k in range(count)])
    assert len(e.commits) == count
    assert e.commits_complete is complete


def test_tag_push_and_other_refs():
    e = push(ref="refs/tags/v1")
    assert (e.kind, e.ref_name) == ("tag", "v1")
    assert push(ref="refs/heads/feature/x").ref_name == "feature/x"
    got = push(ref="refs/notes/commits")
    assert isinstance(got, Ignored)
    assert got.reason == "ref 'refs/notes/commits' is neither a branch nor a tag"


def test_head_commit_is_the_sha_else_after():
    assert push(head_commit={"id": "c" * 40, "message": "m"}).sha == "c" * 40
    assert push(head_commit={"id": "c" * 40, "message": "m"}).head_message == "m"


def test_a_bad_full_name_is_quoted_clipped_to_100_characters():
    with pytest.raises(BadPayload) as caught:
        push(repository={"full_name": "x" * 150})
    assert caught.value.message == \
        f"push payload field 'repository.full_name' is not owner/name: {'x' * 100!r}"


@pytest.mark.parametrize("event", ["pull_request", "issue_comment"])
def test_a_pull_request_s_bad_full_name_is_clipped_too(event):
    if event == "pull_request":
        payload = json.loads(load_payload("github/pull_request__octokit-opened.json")[0])
    else:
        payload = issue_comment()
    payload["repository"]["full_name"] = "y" * 150
    with pytest.raises(BadPayload) as caught:
        github.normalize({"X-GitHub-Event": event, "Content-Type": "application/json"},
                         json.dumps(payload).encode(), source="gh", delivery_id="d-1")
    assert caught.value.message == \
        f"{event} payload field 'repository.full_name' is not owner/name: {'y' * 100!r}"
