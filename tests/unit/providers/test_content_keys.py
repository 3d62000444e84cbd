"""The content key names the host a push happened on (the payload's first clone URL), so the same
repository name on two hosts never dedupes across them; pushes from github.com and gitlab.com keep
the key an existing database already holds for them; a Gitea deletion, which names no commit,
has none (its delivery id alone dedupes it)."""
from __future__ import annotations

import json
from dataclasses import replace

from helpers.hosts import host_headers
from helpers.normalize import normalize
from helpers.payloads import load_payload
from werkzeug.datastructures import Headers

from bridge.providers import bitbucket, content_key
from bridge.providers.gitea import GITEA


def test_github_com_and_gitlab_com_keys_are_unchanged():
    gh = normalize("github", "github/push__goscm-branch.json")
    # The key stored before hosts were part of it: provider|repo|ref|before|after.
    assert content_key(gh) == "|".join(("github", gh.repo, gh.ref, gh.before, gh.after))
    gl = normalize("gitlab", "gitlab/push_hook__goscm-branch.json")
    assert gl.clone_urls[0].startswith("https://gitlab.com/")
    assert content_key(gl) == "|".join(("gitlab", gl.repo, gl.ref, gl.before, gl.after))


def test_other_hosts_are_named():
    gl = normalize("gitlab", "gitlab/push_hook__woodpecker-selfhosted.json")
    assert content_key(gl).startswith("gitlab@10.40.8.5:3200|")
    gh = normalize("github", "github/push__goscm-branch.json")
    ghes = replace(gh, clone_urls=("https://ghe.example.com/acme/api.git",))
    assert content_key(ghes) == content_key(gh).replace("github|", "github@ghe.example.com|", 1)
    ssh_only = replace(gh, clone_urls=("git@ghe.example.com:acme/api.git",))
    assert content_key(ssh_only) == content_key(ghes)


def test_the_same_gitea_repo_on_two_hosts_has_two_keys():
    body, headers = load_payload("gitea/push__woodpecker-multi-commits.json")
    doc = json.loads(body)
    doc["repository"]["clone_url"] = "https://git.other.example/Test-CI/multi-line-secrets.git"
    other = json.dumps(doc).encode()
    one = GITEA.normalize(Headers(headers), body, source="a", delivery_id="1")
    two = GITEA.normalize(Headers(host_headers("gitea", other, headers)), other, source="b",
                          delivery_id="2")
    assert (one.repo, one.ref, one.before, one.after) == (two.repo, two.ref, two.before, two.after)
    assert content_key(one) == ("gitea@127.0.0.1:3000|Test-CI/multi-line-secrets|refs/heads/main|"
                                "6efcf5b7c98f3e7a491675164b7a2e7acac27941|"
                                "29be01c073851cf0db0c6a466e396b725a670453")
    assert content_key(two).startswith("gitea@git.other.example|") and content_key(two) != content_key(one)


def test_a_gitea_deletion_has_no_key_and_bitbucket_changes_have_one_each():
    body, headers = load_payload("gitea/delete__gp-branch.json")
    assert content_key(GITEA.normalize(Headers(headers), body, source="g", delivery_id="d")) is None
    body, headers = load_payload("bitbucket/repo_push__jenkins-multiple-changes.json")
    events = bitbucket.normalize_all(Headers(headers), body, source="b", delivery_id="d")
    keys = [content_key(e) for e in events]
    assert len(set(keys)) == 3 and all(k.startswith("bitbucket@bitbucket.org|cloudbeers/temp|") for k in keys)


def test_bitbucket_replay_of_one_row_finds_its_own_change():
    body, headers = load_payload("bitbucket/repo_push__jenkins-multiple-changes.json")
    rows = {d: bitbucket.normalize(Headers(headers), body, source="b", delivery_id=d)
            for d in ("u", "u+2", "u+3")}
    assert [(d, e.delivery_id, e.ref) for d, e in rows.items()] == [
        ("u", "u", "refs/heads/main"), ("u+2", "u+2", "refs/heads/manchu"), ("u+3", "u+3", "refs/tags/v0.1")]
    assert bitbucket.normalize(Headers(headers), body, source="b", delivery_id="u+4").reason == \
        "the delivery has no change number 4"
