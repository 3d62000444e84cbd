"""GitLab System Hooks: `event_name` decides (push, tag_push); GitLab itself also sends `object_kind`.

GitLab's push data builder returns `object_kind` and `event_name` both, and System Hooks (and the
admin "Test" button) send that hash; only the docs' example lacks `object_kind`. Both shapes must
build, here from the shared payload byte for byte and with `object_kind` added to it.
"""
import json

import pytest
from helpers.rules import GITLAB_TOKEN
from helpers.payloads import load_payload
from werkzeug.datastructures import Headers

from bridge.events import Event, Ignored
from bridge.providers import gitlab

PUSH = "gitlab/system_hook__docs-push.json"
TAG = "gitlab/system_hook__docs-tag-push.json"


def with_object_kind(rel: str) -> tuple[bytes, dict]:
    """The shared payload as GitLab's own code sends it: `object_kind` first, equal to event_name."""
    body, headers = load_payload(rel)
    payload = json.loads(body)
    assert "object_kind" not in payload            # the docs' example, as shared
    payload = {"object_kind": payload["event_name"], **payload}
    return json.dumps(payload).encode("utf-8"), headers


def shapes(rel):
    return [pytest.param(load_payload(rel), id="docs-shape"),
            pytest.param(with_object_kind(rel), id="with-object_kind")]


def normalize(body, headers):
    return gitlab.normalize(Headers(headers), body, source="gl", delivery_id="d")


@pytest.mark.parametrize("request_", shapes(PUSH))
def test_system_hook_branch_push_builds_with_or_without_object_kind(request_):
    body, headers = request_
    assert headers["X-Gitlab-Event"] == "System Hook"
    e = normalize(body, headers)
    assert isinstance(e, Event), e
    assert (e.kind, e.repo, e.branch, e.pusher) == ("push", "mike/diaspora", "master", "John Smith")


@pytest.mark.parametrize("request_", shapes(TAG))
def test_system_hook_tag_push_builds_with_or_without_object_kind(request_):
    body, headers = request_
    e = normalize(body, headers)
    assert isinstance(e, Event), e
    assert (e.kind, e.repo, e.tag) == ("tag", "jsmith/example", "v1.0.0")


def test_system_hook_decides_by_event_name_not_object_kind():
    body, headers = load_payload("gitlab/system_hook__docs-repository-update.json")
    payload = json.loads(body)
    assert payload["event_name"] == "repository_update"
    payload["object_kind"] = "push"                 # a stray object_kind does not make it a push
    assert normalize(json.dumps(payload).encode(), headers) == Ignored(
        "system hook 'repository_update' is not a push (its push event is)", event_name="System Hook")
    body, headers = load_payload(PUSH)
    payload = json.loads(body)
    payload["event_name"] = "project_create"
    assert normalize(json.dumps(payload).encode(), headers) == Ignored(
        "system hook event 'project_create' is not handled", event_name="System Hook")


@pytest.mark.parametrize("rel", [PUSH, TAG])
def test_system_hook_with_object_kind_is_accepted_over_http(client, rel):
    body, headers = with_object_kind(rel)
    headers["X-Gitlab-Token"] = GITLAB_TOKEN
    resp = client.post("/hooks/gitlab", data=body, headers=headers)
    data = resp.get_json()
    assert resp.status_code == 202, data
    assert data["matched"] == (["every-branch"] if rel == PUSH else ["tags"])
    assert client.store.get_delivery(data["delivery"])["jobs"]
