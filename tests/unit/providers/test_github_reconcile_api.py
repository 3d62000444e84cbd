"""GitHub's delivery log and refs as `github_api.Reconcile` reads them, against the real HTTP
GitHub stand-in (hooks and refs as GitHub's REST docs describe them): `per_page=100`, newest
first until one older than `since` (one exactly at `since` is kept), at most `max_pages` pages,
a 2xx answer is ok and nothing else is; refs with their commits, annotated tags peeled; and the
push GitHub would have sent for a recovered ref."""
from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from helpers.standins.github import GitHubAPIStandin
from helpers.standins.github_hooks import Attempt, GitHubHooks

from bridge.config.reconcile import HookRef
from bridge.providers import github_api

TOKEN = "ghp_reconcileapi000000000000000000000001"
REPO = "acme/api"
T0 = 1_700_000_000.0


@pytest.fixture
def api():
    with GitHubAPIStandin(TOKEN) as s:
        s.hooks = GitHubHooks(s)
        yield s


def hook_with(api, codes_and_times) -> HookRef:
    hook_id = api.hooks.add_hook("http://127.0.0.1:9/hooks/github", "s", repo=REPO)
    hook = api.hooks.hooks[(f"repo:{REPO}", hook_id)]
    for i, (code, at) in enumerate(codes_and_times):
        hook.attempts.append(Attempt(id=5000 + i, guid=f"g-{i}", event="push", body=b"{}",
                                     delivered_at=at, status_code=code, redelivery=i % 2 == 1))
    return HookRef(repo=REPO, id=hook_id)


def client(api):
    return github_api.Reconcile(api.url, TOKEN)


def test_deliveries_newest_first_until_one_older_than_since(api):
    # ids rise with time: newest first is the reverse of this list
    hook = hook_with(api, [(200, T0 - 10), (200, T0), (299, T0 + 1), (300, T0 + 2), (199, T0 + 3),
                           (0, T0 + 4), (502, T0 + 5)])
    got = client(api).deliveries(hook, since=T0)
    assert [(d.guid, d.ok, d.status_code, d.delivered_at, d.redelivery, d.event) for d in got] == [
        ("g-6", False, 502, T0 + 5, False, "push"), ("g-5", False, 0, T0 + 4, True, "push"),
        ("g-4", False, 199, T0 + 3, False, "push"), ("g-3", False, 300, T0 + 2, True, "push"),
        ("g-2", True, 299, T0 + 1, False, "push"), ("g-1", True, 200, T0, True, "push")]
    assert [d.host_id for d in got] == ["5006", "5005", "5004", "5003", "5002", "5001"]
    (req,) = api.requests
    assert parse_qs(urlsplit(req.path).query) == {"per_page": ["100"]}
    assert urlsplit(req.path).path == f"/repos/{REPO}/hooks/{hook.id}/deliveries"


def test_at_most_max_pages_are_read(api):
    hook = hook_with(api, [(200, T0 + i) for i in range(3050)])
    got = client(api).deliveries(hook, since=0)
    assert len(got) == 3000                                      # 30 pages of 100 by default
    assert len(client(api).deliveries(hook, since=0, max_pages=2)) == 200
    assert len(api.requests) == 30 + 2                           # no page asked and left unread


def test_refs_and_peeled_tags(api):
    api.hooks.move(REPO, branch="main", sha="1" * 40)
    api.hooks.move(REPO, tag="v1", sha="2" * 40)                             # lightweight
    api.hooks.move(REPO, tag="v2", sha="3" * 40, commit="4" * 40)            # annotated
    c = client(api)
    assert [(r.ref, r.sha, r.commit) for r in c.refs(REPO, "heads")] == [("refs/heads/main", "1" * 40, "1" * 40)]
    assert [(r.ref, r.sha, r.commit) for r in c.refs(REPO, "tags")] == [
        ("refs/tags/v1", "2" * 40, "2" * 40), ("refs/tags/v2", "3" * 40, None)]
    assert c.peel(REPO, "3" * 40) == "4" * 40
    assert [r.path for r in api.requests] == [
        f"/repos/{REPO}/git/matching-refs/heads/?per_page=100", f"/repos/{REPO}/git/matching-refs/tags/?per_page=100",
        f"/repos/{REPO}/git/tags/{'3' * 40}"]


@pytest.mark.parametrize("api_url, url", [
    ("https://api.github.com", "https://github.com/acme/api.git"),
    ("https://ghe.example.com/api/v3", "https://ghe.example.com/acme/api.git"),
])
def test_the_clone_url_of_a_recovered_push(api_url, url):
    assert github_api.clone_url(api_url, REPO) == url


@pytest.mark.parametrize("before, after, created, deleted", [
    ("0" * 40, "a" * 40, True, False), ("a" * 40, "0" * 40, False, True), ("a" * 40, "b" * 40, False, False)])
def test_the_push_github_would_have_sent(before, after, created, deleted):
    headers, body = github_api.synthesize_push(repo=REPO, ref="refs/heads/main", before=before, after=after,
                                               sha=after, clone="https://github.com/acme/api.git",
                                               delivery="rec-1")
    assert headers == {"Content-Type": "application/json", "X-GitHub-Event": "push",
                       "X-GitHub-Delivery": "rec-1", "User-Agent": "bridge-reconcile"}
    doc = json.loads(body)
    assert (doc["created"], doc["deleted"], doc["forced"], doc["commits"]) == (created, deleted, False, [])
    assert doc["head_commit"] == (None if deleted else {"id": after, "message": ""})
    assert doc["repository"] == {"full_name": REPO, "clone_url": "https://github.com/acme/api.git"}


def test_the_repository_is_two_path_segments(api):
    # Split once at the owner: a '/' after it is part of the name, sent encoded.
    assert client(api).refs("acme/x/y z", "heads") == []
    assert api.requests[0].path == "/repos/acme/x%2Fy%20z/git/matching-refs/heads/?per_page=100"
