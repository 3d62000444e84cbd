"""Through the app: GitLab deliveries signed with a signing token (accepted now, refused when their
timestamp is 10 minutes old, `webhook-id` as the delivery id, the rotating source taking either
form), and wrong or missing signatures of Gitea, Forgejo and Bitbucket answered 401 with nothing
stored."""
from __future__ import annotations

import time

import pytest
from helpers.hosts import signed, standard_webhooks
from helpers.payloads import load_payload
from helpers.rules import GITLAB_SIGNING, GITLAB_TOKEN, HOSTS_RULES

REL = "gitlab/push_hook__docs.json"


@pytest.fixture
def app_store(make_app):
    app, store = make_app(HOSTS_RULES)
    return app.test_client(), store


def gitlab_signed(msg_id: str, age: int = 0, token: str | None = None) -> tuple[bytes, dict]:
    body, headers = load_payload(REL)
    headers.update(standard_webhooks(GITLAB_SIGNING, body, msg_id, int(time.time()) - age))
    headers["Idempotency-Key"] = msg_id
    if token:
        headers["X-Gitlab-Token"] = token
    return body, headers


def test_a_signed_gitlab_delivery_is_accepted_under_its_webhook_id(app_store):
    client, store = app_store
    body, headers = gitlab_signed("msg_2Lr7")
    resp = client.post("/hooks/gitlab-signed", data=body, headers=headers)
    assert resp.status_code == 202, resp.get_json()
    stored = store.get_delivery("msg_2Lr7")
    kept = {k.lower() for k in stored["headers"]}
    assert "webhook-signature" not in kept and {"webhook-id", "webhook-timestamp"} <= kept


def test_a_replayed_old_signature_is_refused(app_store):
    client, store = app_store
    body, headers = gitlab_signed("msg_old", age=600)
    resp = client.post("/hooks/gitlab-signed", data=body, headers=headers)
    assert resp.status_code == 401
    assert "webhook-timestamp is more than 5 minutes" in resp.get_json()["error"]
    assert store.get_delivery("msg_old") is None


def test_the_signed_source_refuses_the_plain_token_and_the_rotating_one_takes_both(app_store):
    client, _ = app_store
    body, headers = load_payload(REL)
    headers["X-Gitlab-Token"] = GITLAB_TOKEN
    assert client.post("/hooks/gitlab-signed", data=body, headers=headers).status_code == 401
    assert client.post("/hooks/gitlab-rotating", data=body, headers=headers).status_code == 202
    body, headers = gitlab_signed("msg_rot")
    resp = client.post("/hooks/gitlab-rotating", data=body, headers=headers)
    assert resp.status_code == 200 and resp.get_json()["duplicate_of"]     # the same push, now signed


@pytest.mark.parametrize("host, rel, header", [
    ("gitea", "gitea/push__docs.json", "X-Gitea-Signature"),
    ("forgejo", "forgejo/push__docs.json", "X-Forgejo-Signature"),
    ("bitbucket", "bitbucket/repo_push__jenkins-update.json", "X-Hub-Signature"),
])
def test_wrong_and_missing_signatures_are_401_and_store_nothing(app_store, host, rel, header):
    client, store = app_store
    body, headers = signed(host, rel, secret="someone-elses-secret")
    resp = client.post(f"/hooks/{host}", data=body, headers=headers)
    assert resp.status_code == 401 and resp.get_json()["error"] == f"{header} does not match the body"
    for name in ("X-Gitea-Signature", "X-Forgejo-Signature", "X-Hub-Signature-256", "X-Hub-Signature"):
        headers.pop(name, None)
    resp = client.post(f"/hooks/{host}", data=body, headers=headers)
    assert resp.status_code == 401 and resp.get_json()["error"].startswith(
        f"{'X-Gitea-Signature' if host == 'gitea' else header} is missing")
    assert store.list_deliveries() == []
