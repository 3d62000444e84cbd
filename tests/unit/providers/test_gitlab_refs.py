"""GitLab pushes whose ref is neither a branch nor a tag are ignored (200), never a 500; and the
fields GitLab has no flag for (created, complete commit list) are derived right."""
import json

import pytest
from helpers.rules import GITLAB_TOKEN

from bridge.events import ZERO_SHA, Event, Ignored
from bridge.providers import gitlab

A, B = "a" * 40, "b" * 40


def payload(**fields):
    out = {"object_kind": "push", "ref": "refs/heads/main", "before": A, "after": B, "checkout_sha": B,
           "project": {"path_with_namespace": "grp/app"}, "commits": [], "total_commits_count": 0}
    out.update(fields)
    return json.dumps(out).encode()


def normalize(body, event="Push Hook"):
    return gitlab.normalize({"X-Gitlab-Event": event}, body, source="gl", delivery_id="d-1")


@pytest.mark.parametrize("ref", ["refs/merge-requests/1/head", "refs/notes/commits", "refs/keep-around/x"])
def test_a_ref_neither_branch_nor_tag_is_ignored(ref):
    got = normalize(payload(ref=ref))
    assert isinstance(got, Ignored)
    assert got.reason == f"ref '{ref}' is neither a branch nor a tag"
    assert got.event_name == "Push Hook"


def test_a_ref_neither_branch_nor_tag_gets_200_ignored(client):
    body = payload(ref="refs/merge-requests/7/head")
    resp = client.post("/hooks/gitlab", data=body, headers={
        "X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": GITLAB_TOKEN, "Content-Type": "application/json",
        "X-Gitlab-Event-UUID": "uuid-mr-7"})
    assert resp.status_code == 200, resp.get_data()
    assert resp.get_json() == {"delivery": "uuid-mr-7",
                               "ignored": "ref 'refs/merge-requests/7/head' is neither a branch nor a tag"}
    assert client.store.get_delivery("uuid-mr-7")["outcome"] == "ignored"


def test_branch_and_tag_names():
    e = normalize(payload(ref="refs/heads/feature/x"))
    assert isinstance(e, Event) and (e.kind, e.ref_name, e.created) == ("push", "feature/x", False)
    t = normalize(payload(ref="refs/tags/v1"), "Tag Push Hook")
    assert (t.kind, t.ref_name) == ("tag", "v1")
    assert normalize(payload(before=ZERO_SHA)).created is True
    d = normalize(payload(after=ZERO_SHA, checkout_sha=None))
    assert (d.kind, d.deleted, d.sha) == ("delete", True, None)


@pytest.mark.parametrize("listed, total, complete", [(2, 2, True), (2, 3, False), (3, 2, True)])
def test_commit_list_complete_against_total_commits_count(listed, total, complete):
    commits = [{"id": f"{k:040x}", "message": "m", "added": [], "modified": [], "removed": []}
               for k in range(listed)]
    e = normalize(payload(commits=commits, total_commits_count=total))
    assert e.commits_complete is complete


def _without_project(**repository):
    out = json.loads(payload())
    del out["project"]
    out["repository"] = repository
    return json.dumps(out).encode()


def test_the_repo_from_the_homepage_when_there_is_no_project():
    assert normalize(_without_project(homepage="https://gitlab.example/grp/sub/app/")).repo == "grp/sub/app"


@pytest.mark.parametrize("homepage, message", [
    ("http://[::1", "push payload field 'repository.homepage' is not a URL"),
    ("https://gitlab.example/", "push payload has no 'project.path_with_namespace'"),
])
def test_a_homepage_that_names_no_repo_is_a_bad_payload(homepage, message):
    from bridge.errors import BadPayload
    with pytest.raises(BadPayload) as caught:
        normalize(_without_project(homepage=homepage))
    assert caught.value.message == message
