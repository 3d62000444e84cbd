"""GitLab's hook event log and refs as `gitlab_api.Reconcile` reads them, against the real HTTP
GitLab stand-in (hook events, branches and tags as GitLab's REST docs describe them):
`per_page=100`, newest first until one older than `since` (one exactly at `since` is kept), at
most `max_pages` pages, the delivery id from `Idempotency-Key` (else `X-Gitlab-Event-UUID`), a
2xx `response_status` is ok and nothing else is, the hook's token never kept; branches and tags
with their commits; and the push GitLab would have sent for a recovered ref."""
from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from helpers.standins.gitlab import GitLabAPIStandin
from helpers.standins.gitlab_hooks import Event, GitLabHooks

from bridge.config.reconcile import HookRef
from bridge.providers import gitlab_api

TOKEN = "glpat-reconcileapi00000001"
PROJECT = "group/sub/api"
T0 = 1_700_000_000.0


@pytest.fixture
def api():
    with GitLabAPIStandin(token=TOKEN) as s:
        s.hooks = GitLabHooks(s)
        yield s


def hook_with(api, events) -> HookRef:
    """events: (response_status, created_at, headers) oldest first."""
    hook_id = api.hooks.add_hook(PROJECT, "http://127.0.0.1:9/hooks/gitlab", "hook-token")
    hook = api.hooks.hooks[(PROJECT, hook_id)]
    for i, (status, at, headers) in enumerate(events):
        hook.events.append(Event(id=900 + i, headers={"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "[REDACTED]",
                                                      **headers},
                                 data={"object_kind": "push", "n": i}, status=status, created_at=at))
    return HookRef(repo=PROJECT, id=hook_id)


def client(api):
    return gitlab_api.Reconcile(api.api_url, TOKEN)


def test_events_newest_first_until_one_older_than_since(api):
    key = {"Idempotency-Key": "key-{}", "X-Gitlab-Event-UUID": "uuid-{}"}
    events = [("200", T0 - 10, {}), ("200", T0, {}), ("299", T0 + 1, {}), ("300", T0 + 2, {}),
              ("199", T0 + 3, {}), ("internal error", T0 + 4, {}), ("502", T0 + 5, {})]
    events = [(s, at, {k: v.format(i) for k, v in key.items() if i != 3 or k != "Idempotency-Key"})
              for i, (s, at, _) in enumerate(events)]
    hook = hook_with(api, events)
    got = client(api).deliveries(hook, since=T0)
    assert [(d.host_id, d.guid, d.ok, d.status_code, d.delivered_at) for d in got] == [
        ("906", "key-6", False, 502, T0 + 5), ("905", "key-5", False, None, T0 + 4),
        ("904", "key-4", False, 199, T0 + 3), ("903", "uuid-3", False, 300, T0 + 2),
        ("902", "key-2", True, 299, T0 + 1), ("901", "key-1", True, 200, T0)]
    first = got[-1]
    assert (first.event, first.payload) == ("Push Hook", {"object_kind": "push", "n": 1})
    assert first.headers == {"X-Gitlab-Event": "Push Hook", "Idempotency-Key": "key-1",
                             "X-Gitlab-Event-UUID": "uuid-1"}            # never the hook's token
    (req,) = api.requests
    assert parse_qs(urlsplit(req.path).query) == {"per_page": ["100"]}
    assert urlsplit(req.path).path == f"/api/v4/projects/group%2Fsub%2Fapi/hooks/{hook.id}/events"


def test_at_most_max_pages_are_read(api):
    hook = hook_with(api, [("200", T0 + i, {}) for i in range(3050)])
    assert len(client(api).deliveries(hook, since=0)) == 3000        # 30 pages of 100 by default
    assert len(client(api).deliveries(hook, since=0, max_pages=2)) == 200


def test_branches_and_tags_with_their_commits(api):
    api.hooks.branches[PROJECT] = {"main": "1" * 40}
    api.hooks.tags[PROJECT] = {"v1": ("2" * 40, "2" * 40), "v2": ("3" * 40, "4" * 40)}
    c = client(api)
    assert [(r.ref, r.sha, r.commit) for r in c.refs(PROJECT, "heads")] == [("refs/heads/main", "1" * 40, "1" * 40)]
    assert [(r.ref, r.sha, r.commit) for r in c.refs(PROJECT, "tags")] == [
        ("refs/tags/v1", "2" * 40, "2" * 40), ("refs/tags/v2", "3" * 40, "4" * 40)]
    assert c.peel(PROJECT, "3" * 40) == "3" * 40                      # listed with its commit: nothing to ask
    assert [r.path for r in api.requests] == [
        "/api/v4/projects/group%2Fsub%2Fapi/repository/branches?per_page=100",
        "/api/v4/projects/group%2Fsub%2Fapi/repository/tags?per_page=100"]


def test_refs_are_read_page_by_page(api):
    api.hooks.branches[PROJECT] = {f"b{i:03}": f"{i:040x}" for i in range(250)}
    refs = client(api).refs(PROJECT, "heads")
    assert len(refs) == 250 and refs[-1].ref == "refs/heads/b249" and len(api.requests) == 3


def test_the_clone_url_of_a_recovered_push():
    assert gitlab_api.clone_url("https://gitlab.example.com/api/v4", PROJECT) == \
        "https://gitlab.example.com/group/sub/api.git"


@pytest.mark.parametrize("ref, after, kind, event, checkout", [
    ("refs/heads/main", "a" * 40, "push", "Push Hook", "a" * 40),
    ("refs/tags/v1", "a" * 40, "tag_push", "Tag Push Hook", "a" * 40),
    ("refs/heads/main", "0" * 40, "push", "Push Hook", None),
])
def test_the_push_gitlab_would_have_sent(ref, after, kind, event, checkout):
    headers, body = gitlab_api.synthesize_push(repo=PROJECT, ref=ref, before="b" * 40, after=after, sha=after,
                                               clone="https://gitlab.example.com/group/sub/api.git",
                                               delivery="rec-1")
    assert headers == {"Content-Type": "application/json", "X-Gitlab-Event": event,
                       "X-Gitlab-Event-UUID": "rec-1", "User-Agent": "bridge-reconcile"}
    doc = json.loads(body)
    assert (doc["object_kind"], doc["checkout_sha"], doc["commits"], doc["total_commits_count"]) == \
        (kind, checkout, [], 1)
    assert doc["project"] == {"path_with_namespace": PROJECT,
                              "git_http_url": "https://gitlab.example.com/group/sub/api.git"}
