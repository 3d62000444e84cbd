"""Every Gitea and Forgejo payload of shared/payloads, signed byte for byte as these hosts sign,
through the app (reply and stored event) and through `cibridge explain --format json`, every
field compared with what Gitea's and Forgejo's webhook docs say the payload means: `ref` is full
on push, `before` all zeros on a new ref, a deletion comes only as a `delete` event (short `ref`
plus `ref_type`, no SHA), `create` repeats a push, `total_commits` counts the commits."""
from __future__ import annotations

import json

import pytest
from helpers.hosts import ZERO, comparable, event, explain_json, host_headers, signed
from helpers.payloads import load_payload, payload_files
from helpers.rules import HOSTS_RULES

L3000 = "http://localhost:3000"
FJ = "http://10.48.21.129:3000"
PULL = None     # a pull request: its own test file

EXPECTED = {
    "gitea/push__docs.json": [event(
        "gitea", "127187eb-641c-5eef-927e-759ce02ad7a5", "push", "gitea/webhooks", "refs/heads/develop",
        before="28e1879d029cb852e4844d9c718537df08844e03",
        after="bffeb74224043ba2feb48d137756c8a9331c449a",
        commits=["bffeb74224043ba2feb48d137756c8a9331c449a"], pusher="gitea", default_branch="master",
        clone_urls=[f"{L3000}/gitea/webhooks.git", "ssh://gitea@localhost:2222/gitea/webhooks.git"],
        head_message="Webhooks Yay!")],
    "gitea/push__gp-initial-push.json": [event(
        "gitea", "17389448-b729-5172-95cf-72ac1eb00c4c", "push", "example/example", "refs/heads/master",
        before=ZERO, after="67b56589a45103f891bdee7c0546e5d40bc02001",
        commits=["67b56589a45103f891bdee7c0546e5d40bc02001"], pusher="example", default_branch="master",
        clone_urls=[f"{L3000}/example/example.git", "git@localhost:example/example.git"],
        head_message="example\n")],
    "gitea/push__woodpecker-multi-commits.json": [event(
        "gitea", "de647c78-f2f2-501e-9b62-f4a7f10f02d0", "push", "Test-CI/multi-line-secrets",
        "refs/heads/main", before="6efcf5b7c98f3e7a491675164b7a2e7acac27941",
        after="29be01c073851cf0db0c6a466e396b725a670453",
        commits=["29be01c073851cf0db0c6a466e396b725a670453", "29cd95250404bd007c13b03eabe521196bab98a5",
                 "93787b87b3134d0d62c7a24c1ea5b1b6fd17ca91"],
        pusher="test-user", default_branch="main",
        clone_urls=["http://127.0.0.1:3000/Test-CI/multi-line-secrets.git",
                    "ssh://git@127.0.0.1:2200/Test-CI/multi-line-secrets.git"],
        head_message="add some text\n")],
    "gitea/push__woodpecker-codeberg-new-branch.json": [event(
        "gitea", "dc00f161-53f5-571c-be12-648b9c82467b", "push", "meisam/woodpecktester",
        "refs/heads/fdsafdsa", before=ZERO, after="28c3613ae62640216bea5e7dc71aa65356e4298b",
        pusher="6543", default_branch="main",
        clone_urls=["https://codeberg.org/meisam/woodpecktester.git",
                    "git@codeberg.org:meisam/woodpecktester.git"],
        head_message="Delete '.woodpecker/.check.yml'\n")],
    "gitea/delete__gp-branch.json": [event(
        "gitea", "e8f315ba-9f55-5f69-8478-86f1bb5b424d", "delete", "example/example",
        "refs/heads/example3", before="", after=ZERO, pusher="example", default_branch="master",
        clone_urls=[f"{L3000}/example/example.git", "git@localhost:example/example.git"])],
    "gitea/delete__goscm-tag.json": [event(
        "gitea", "70232c17-568b-57ce-9f24-d54c5b33a504", "delete", "gogits/hello-world",
        "refs/tags/v1.0.0", before="", after=ZERO, pusher="unknwon", default_branch="master",
        clone_urls=["http://try.gitea.io/gogits/hello-world.git", "git@localhost:gogits/hello-world.git"])],
    "gitea/create__gp-branch.json": "event 'create' is not handled: the push event of the same ref is",
    "gitea/create__goscm-tag.json": "event 'create' is not handled: the push event of the same ref is",
    # Pull requests: tests/integration/web/test_gitea_pulls.py.
    "gitea/pull_request__woodpecker-merged.json": PULL,
    "gitea/pull_request__woodpecker-synchronized.json": PULL,
    "forgejo/push__docs.json": [event(
        "forgejo", "a4dc07a0-781d-55a5-bb46-ce68109a5002", "push", "forgejo/webhooks",
        "refs/heads/develop", before="28e1879d029cb852e4844d9c718537df08844e03",
        after="bffeb74224043ba2feb48d137756c8a9331c449a",
        commits=["bffeb74224043ba2feb48d137756c8a9331c449a"], pusher="forgejo", default_branch="master",
        clone_urls=[f"{L3000}/forgejo/webhooks.git", "ssh://forgejo@localhost:2222/forgejo/webhooks.git"],
        head_message="Webhooks Yay!")],
    # total_commits is 0 although one commit is listed ("not always right"): the list is kept.
    "forgejo/push__e2e-new-branch.json": [event(
        "forgejo", "79ed9535-f662-524b-88e1-8712db75a1bc", "push", "root/example-push", "refs/heads/main",
        before=ZERO, after="fc964cee4a465636e0ccac3aecc19f1b12a0f0dc",
        commits=["fc964cee4a465636e0ccac3aecc19f1b12a0f0dc"], pusher="root", default_branch="main",
        clone_urls=[f"{FJ}/root/example-push.git", "ssh://forgejo@10.48.21.129/root/example-push.git"],
        head_message="initial commit\n")],
    "forgejo/push__e2e-tag.json": [event(
        "forgejo", "0baf6eaf-59e9-5c04-bdc3-8755fdc9fde4", "tag", "root/example-tag", "refs/tags/v1.1",
        before=ZERO, after="aac21996256e9c6498f29206c1231e4e60a9bfac", pusher="root",
        default_branch="main",
        clone_urls=[f"{FJ}/root/example-tag.git", "ssh://forgejo@10.48.21.129/root/example-tag.git"],
        head_message="initial commit\n")],
    "forgejo/pull_request__e2e-opened.json": PULL,
}

FILES = payload_files("gitea") + payload_files("forgejo")


def test_the_table_covers_every_payload():
    assert sorted(EXPECTED) == sorted(FILES)


@pytest.mark.parametrize("rel", FILES)
def test_each_payload_through_the_app_and_explain(make_app, write_rules, tmp_path, rel):
    host = rel.split("/")[0]
    app, store = make_app(HOSTS_RULES)
    body, headers = signed(host, rel)
    resp = app.test_client().post(f"/hooks/{host}", data=body, headers=headers)
    data = resp.get_json()
    expected = EXPECTED[rel]
    if expected is PULL:
        pytest.skip("a pull request: test_gitea_pulls.py")
    explained = explain_json(write_rules(HOSTS_RULES, name="explain.yaml"), host, rel, tmp_path)
    if isinstance(expected, str):
        assert (resp.status_code, data["ignored"]) == (200, expected)
        assert explained["ignored"] == expected and explained["events"] == []
        return
    want = expected[0]
    assert resp.status_code == 202, data
    rule = {"push": "every-branch", "tag": "tags", "delete": "deletions"}[want["kind"]]
    assert data["matched"] == [rule] and data["delivery"] == want["delivery_id"]
    assert [comparable(e) for e in explained["events"]] == expected
    stored = store.get_delivery(data["delivery"])
    assert comparable(stored["event"]) == want
    kept = {k.lower(): v for k, v in stored["headers"].items()}
    for name in ("x-gitea-signature", "x-forgejo-signature", "x-hub-signature-256"):
        assert name not in kept
    assert kept[f"x-{host}-delivery"] == want["delivery_id"]


def test_commit_fields_as_gitea_documents_them(make_app, tmp_path, write_rules):
    data = explain_json(write_rules(HOSTS_RULES), "gitea", "gitea/push__woodpecker-multi-commits.json",
                        tmp_path)
    first, second, third = data["event"]["commits"]
    assert first == {"id": "29be01c073851cf0db0c6a466e396b725a670453", "message": "add some text\n",
                     "author": "6543", "timestamp": "2024-02-22T00:18:07+01:00", "added": [],
                     "modified": ["aaa"], "removed": [], "has_files": True}
    assert (second["removed"], third["added"]) == (["aa"], ["aa", "aaa"])
    assert data["files"] == {"source": "payload", "reason": data["files"]["reason"],
                             "files": ["aa", "aaa"]}
    # The docs' example lists commits without file lists: the mirror is asked.
    docs = explain_json(write_rules(HOSTS_RULES), "gitea", "gitea/push__docs.json", tmp_path)
    assert docs["event"]["commits"][0]["has_files"] is False and docs["files"]["source"] == "unknown"


@pytest.mark.parametrize("rel, total, complete", [
    ("gitea/push__woodpecker-multi-commits.json", 4, False),     # more pushed than listed
    ("gitea/push__woodpecker-multi-commits.json", 3, True),
])
def test_total_commits_decides_commits_complete(make_app, rel, total, complete):
    body, headers = load_payload(rel)
    payload = json.loads(body)
    payload["total_commits"] = total
    app, store = make_app(HOSTS_RULES)
    body = json.dumps(payload).encode()
    resp = app.test_client().post("/hooks/gitea", data=body, headers=host_headers("gitea", body, headers))
    assert resp.status_code == 202
    assert store.get_delivery(resp.get_json()["delivery"])["event"]["commits_complete"] is complete


def test_the_hook_secret_old_gitea_puts_in_the_body_is_never_stored(make_app):
    body, headers = signed("gitea", "gitea/push__docs.json")
    secret = json.loads(body)["secret"]
    assert secret and secret.encode() in body
    app, store = make_app(HOSTS_RULES)
    client = app.test_client()
    data = client.post("/hooks/gitea", data=body, headers=headers).get_json()
    stored = store.get_delivery(data["delivery"])
    assert secret.encode() not in stored["body"]
    assert json.loads(stored["body"]) == {k: v for k, v in json.loads(body).items() if k != "secret"}
    # Gitea's redelivery of the same body is still known by its id.
    assert client.post("/hooks/gitea", data=body, headers=headers).get_json()["duplicate_of"] == data["delivery"]
    # Bodies without it are kept byte for byte.
    body, headers = signed("gitea", "gitea/push__gp-initial-push.json")
    data = client.post("/hooks/gitea", data=body, headers=headers).get_json()
    assert store.get_delivery(data["delivery"])["body"] == body
