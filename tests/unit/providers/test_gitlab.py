"""GitLab payloads normalized: capped commit lists, subgroups, new and deleted branches, tags, system
hooks, the repository homepage fallback, and push shape errors."""
from __future__ import annotations

import json

import pytest
from werkzeug.datastructures import Headers

from bridge.errors import BadPayload
from bridge.events import Ignored
from bridge.providers import gitlab
from helpers.payloads import load_payload
from helpers.normalize import changed_payload, normalize


def test_gitlab_push_hook_capped_list():
    e = normalize("gitlab", "gitlab/push_hook__docs.json")
    assert (e.kind, e.repo, e.branch, e.pusher, e.default_branch) == ("push", "mike/diaspora", "master", "jsmith", "master")
    assert len(e.commits) == 2 and e.commits_complete is False and e.changed_files() is None
    assert e.sha == e.after and e.head_message == "fixed readme"
    assert e.clone_urls == ("http://example.com/mike/diaspora.git", "git@example.com:mike/diaspora.git")
    assert e.commits[0].added == ("CHANGELOG",) and e.commits[0].author == "Jordi Mallach"


def test_gitlab_subgroup_repo():
    e = normalize("gitlab", "gitlab/push_hook__goscm-subgroup.json")
    assert e.repo == "group1/group2/group3/grp2repo" and e.commits_complete and e.changed_files() == {"README.md"}


def test_gitlab_new_and_deleted_branch_from_zero_shas():
    created = normalize("gitlab", "gitlab/push_hook__goscm-branch-create.json")
    assert (created.kind, created.created, created.deleted) == ("push", True, False)
    deleted = normalize("gitlab", "gitlab/push_hook__goscm-branch-delete.json")
    assert (deleted.kind, deleted.created, deleted.deleted, deleted.sha) == ("delete", False, True, None)


def test_gitlab_tag_delete():
    e = normalize("gitlab", "gitlab/tag_push_hook__goscm-tag-delete.json")
    assert (e.kind, e.tag, e.deleted, e.sha) == ("delete", "v1.0.0", True, None)


def test_gitlab_annotated_tag_checkout_sha():
    e = normalize("gitlab", "gitlab/tag_push_hook__woodpecker-annotated-tag.json")
    assert (e.kind, e.tag, e.created) == ("tag", "v22", True)
    assert e.after.startswith("fabed3d9") and e.sha.startswith("16862e36")
    assert e.head_message == "Update main.go" and e.default_branch == "develop"


def test_gitlab_system_hook_push_has_no_file_lists():
    e = normalize("gitlab", "gitlab/system_hook__docs-push.json")
    assert (e.kind, e.repo, e.branch, e.pusher) == ("push", "mike/diaspora", "master", "John Smith")
    assert e.commits_complete and [c.has_files for c in e.commits] == [False]
    assert e.changed_files() is None
    # No listed commit is the checkout sha: the last listed one stands in.
    assert e.head_message == "Add simple search to projects in public area"


def test_gitlab_system_hook_tag_push():
    e = normalize("gitlab", "gitlab/system_hook__docs-tag-push.json")
    assert (e.kind, e.repo, e.tag, e.created) == ("tag", "jsmith/example", "v1.0.0", True)
    assert e.after.startswith("82b3d5ae") and e.sha.startswith("5937ac0a")


def test_gitlab_system_hook_non_pushes_are_ignored():
    assert normalize("gitlab", "gitlab/system_hook__docs-repository-update.json") == Ignored(
        "system hook 'repository_update' is not a push (its push event is)", event_name="System Hook")
    # A System Hook merge_request is a merge request (tests/integration/web/test_pull_payloads.py).
    assert normalize("gitlab", "gitlab/system_hook__docs-merge-request-2017.json").kind == "pull_request"


def test_gitlab_repo_falls_back_to_repository_homepage():
    body, headers = load_payload("gitlab/push_hook__goscm-subgroup.json")
    payload = json.loads(body)
    del payload["project"]
    e = gitlab.normalize(Headers(headers), json.dumps(payload).encode(), source="s", delivery_id="d")
    assert e.repo == "group1/group2/group3/grp2repo"
    assert e.clone_urls == ("https://gitlab.com/group1/group2/group3/grp2repo.git",
                            "git@gitlab.com:group1/group2/group3/grp2repo.git")


@pytest.mark.parametrize("changes, message", [
    ({"ref": ...}, "push payload has no 'ref'"),
    ({"after": ...}, "push payload has no 'after'"),
    ({"total_commits_count": "4"}, "push payload field 'total_commits_count' is not an integer"),
    ({"total_commits_count": True}, "push payload field 'total_commits_count' is not an integer"),
    ({"checkout_sha": "v1.0"}, "push payload field 'checkout_sha' is not a commit SHA"),
    ({"project": ..., "repository": ...}, "push payload has no 'project.path_with_namespace'"),
])
def test_gitlab_push_shape_errors(changes, message):
    _, headers = load_payload("gitlab/push_hook__docs.json")
    body = changed_payload("gitlab/push_hook__docs.json", changes)
    with pytest.raises(BadPayload) as exc:
        gitlab.normalize(Headers(headers), body, source="s", delivery_id="d")
    assert exc.value.message == message


def test_gitlab_merge_request_update_without_new_commits_is_edited_or_a_draft_toggle():
    body, headers = load_payload("gitlab/merge_request_hook__woodpecker-update-oldrev.json")
    payload = json.loads(body)
    del payload["object_attributes"]["oldrev"]
    normalize_mr = lambda p: gitlab.normalize(Headers(headers), json.dumps(p).encode(), source="s",  # noqa: E731
                                              delivery_id="d")
    assert (normalize_mr(payload).action, normalize_mr(payload).host_action) == ("edited", "update")
    payload["changes"] = {"draft": {"previous": False, "current": True}}
    assert normalize_mr(payload).action == "converted_to_draft"
    payload["changes"] = {"draft": {"previous": True, "current": False}}
    assert normalize_mr(payload).action == "ready_for_review"


def mr(change=None, rel="gitlab/merge_request_hook__buildbot-open-forked.json"):
    body, headers = load_payload(rel)
    payload = json.loads(body)
    (change or (lambda attrs: None))(payload["object_attributes"])
    return gitlab.normalize(Headers(headers), json.dumps(payload).encode(), source="s", delivery_id="d")


def _no_ids(attrs):
    attrs.pop("source_project_id"), attrs.pop("target_project_id")


def _same_path_other_case(attrs):
    _no_ids(attrs)
    attrs["source"]["path_with_namespace"] = attrs["target"]["path_with_namespace"].upper()


def _ids_decide(attrs):
    attrs["source"]["path_with_namespace"] = attrs["target"]["path_with_namespace"]   # same path,
    attrs["target_project_id"] = attrs["source_project_id"] + 1                       # other project


def _one_id(attrs):
    attrs.pop("target_project_id")


@pytest.mark.parametrize("change, fork", [
    (None, True),                       # build/awesome_project (2337) into mmusterman/awesome_project (239)
    (_no_ids, True),                    # no ids: by path
    (_same_path_other_case, False),     # by path, in any case
    (_ids_decide, True),                # ids first
    (_one_id, True),                    # one id only: by path
])
def test_a_merge_request_from_a_fork(change, fork):
    assert mr(change).fork is fork


def test_a_merge_request_from_the_same_project_by_id_or_path():
    def same(attrs):
        attrs["source_project_id"] = attrs["target_project_id"]
    assert mr(same).fork is False

    def same_path_one_id(attrs):
        attrs.pop("source_project_id")
        attrs["source"]["path_with_namespace"] = attrs["target"]["path_with_namespace"]
    assert mr(same_path_one_id).fork is False


@pytest.mark.parametrize("name", ["Pipeline Hook", "Job Hook", "Issue Hook", "Wiki Page Hook"])
def test_other_events_are_ignored(name):
    got = gitlab.normalize(Headers({"X-Gitlab-Event": name}), b"{}", source="s", delivery_id="d")
    assert isinstance(got, Ignored)
    assert (got.reason, got.event_name) == (f"event '{name}' is not handled", name)
