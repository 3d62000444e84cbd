"""The HTTP view end to end through the Flask test client, on real payloads signed byte for byte."""
import json
import socket

import pytest
from helpers.rules import GITHUB_SECRET, GITLAB_TOKEN
from helpers.payloads import load_payload, payload_files, sign_github

from bridge.web.ingress import kept_headers


def post(client, source, body, headers):
    return client.post(f"/hooks/{source}", data=body, headers=headers)


def github(client, rel, secret=GITHUB_SECRET, **overrides):
    body, headers = load_payload(rel)
    headers.update(sign_github(body, secret))
    headers.update(overrides)
    return post(client, "github", body, headers)


def gitlab(client, rel, token=GITLAB_TOKEN):
    body, headers = load_payload(rel)
    headers["X-Gitlab-Token"] = token
    return post(client, "gitlab", body, headers)


@pytest.mark.parametrize("rel", payload_files("github"))
def test_every_github_payload_gets_the_designed_status(client, rel):
    resp = github(client, rel)
    data = resp.get_json()
    event = rel.split("/")[1].split("__")[0]
    if event == "pull_request":     # a pull request, and the base rules take only pushes
        assert resp.status_code == 200, data
        assert data["matched"] == [] and data["reason"] == "no rule matched"
    elif event != "push":
        assert resp.status_code == 200
        assert data["ignored"] in ("ping", f"event '{event}' is not handled")
    elif "delete" in rel:
        assert resp.status_code == 200, data
        assert data["matched"] == [] and data["reason"] == "no rule matched"
    else:
        assert resp.status_code == 202, data
        assert data["matched"] in (["every-branch"], ["tags"])
        assert len(data["jobs"]) == 1
    stored = client.store.get_delivery(data["delivery"])
    assert stored is not None
    assert "X-Hub-Signature-256" not in stored["headers"]


@pytest.mark.parametrize("rel", payload_files("gitlab"))
def test_every_gitlab_payload_gets_the_designed_status(client, rel):
    resp = gitlab(client, rel)
    data = resp.get_json()
    if rel.startswith("gitlab/merge_request") or "merge-request" in rel:
        assert resp.status_code == 200 and data["matched"] == []    # no rule takes pull requests
    elif "repository-update" in rel:
        assert resp.status_code == 200 and "ignored" in data
    elif "delete" in rel:
        assert resp.status_code == 200 and data["matched"] == []
    else:
        assert resp.status_code == 202, data
    stored = client.store.get_delivery(data["delivery"])
    assert "X-Gitlab-Token" not in stored["headers"]
    assert GITLAB_TOKEN not in json.dumps(stored, default=str)


def test_202_reply_lists_rules_and_rendered_jobs_after_commit(client):
    resp = github(client, "github/push__goscm-branch.json")
    assert resp.status_code == 202
    data = resp.get_json()
    body = json.loads(load_payload("github/push__goscm-branch.json")[0])
    assert data["delivery"] == load_payload("github/push__goscm-branch.json")[1]["X-GitHub-Delivery"]
    [job] = data["jobs"]
    assert job["rule"] == "every-branch" and job["target"] == "mem"
    assert job["request"]["parameters"] == {"SHA": body["head_commit"]["id"], "BRANCH": "master"}
    stored = client.store.get_delivery(data["delivery"])
    assert [j["id"] for j in stored["jobs"]] == [job["id"]]
    assert stored["jobs"][0]["state"] == "queued"


def test_rotation_old_secret_still_verifies(client):
    assert github(client, "github/push__goscm-branch.json", secret="gh-old-secret-77").status_code == 202


@pytest.mark.parametrize("signature", [
    None, "", "sha256=", "sha256=zz", "sha256=" + "0" * 64, "sha256=" + "0" * 63, "sha1=" + "0" * 40,
    "md5=abc", "sha256=" + "é" * 64, "sha256=" + "0" * 64 + "00",
])
def test_bad_signatures_401_and_nothing_stored(client, signature):
    body, headers = load_payload("github/push__goscm-branch.json")
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature.encode("utf-8").decode("latin-1")
    resp = post(client, "github", body, headers)
    assert resp.status_code == 401
    assert "X-Hub-Signature-256" in resp.get_json()["error"]
    assert GITHUB_SECRET not in resp.get_data(as_text=True)
    assert client.store.list_deliveries() == []


def test_sha1_only_is_refused(client):
    import hashlib
    import hmac
    body, headers = load_payload("github/push__goscm-branch.json")
    headers["X-Hub-Signature"] = "sha1=" + hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha1).hexdigest()
    resp = post(client, "github", body, headers)
    assert resp.status_code == 401


@pytest.mark.parametrize("token", [None, "", "wrong", GITLAB_TOKEN + "x", GITLAB_TOKEN[:-1]])
def test_bad_gitlab_tokens_401(client, token):
    body, headers = load_payload("gitlab/push_hook__goscm-branch.json")
    if token is not None:
        headers["X-Gitlab-Token"] = token
    resp = post(client, "gitlab", body, headers)
    assert resp.status_code == 401
    assert "X-Gitlab-Token" in resp.get_json()["error"]
    assert client.store.list_deliveries() == []


def test_unknown_source_404(client):
    resp = client.post("/hooks/nope", data=b"{}", headers={"X-GitHub-Event": "push"})
    assert resp.status_code == 404
    assert resp.get_json() == {"error": "unknown source 'nope'"}


def test_body_over_cap_413_without_reading_it(make_app):
    from helpers.rules import BASE_RULES
    app, store = make_app(BASE_RULES + "settings:\n  max_body_bytes: 1000\n")

    class Endless:
        """A body that would take forever to read: the view must not read it."""
        read_calls = 0

        def read(self, n=-1):
            Endless.read_calls += 1
            return b"x" * (n if n and n > 0 else 1000)

    environ = {"CONTENT_LENGTH": str(10**9), "wsgi.input": Endless(), "CONTENT_TYPE": "application/json",
               "HTTP_X_GITHUB_EVENT": "push"}
    resp = app.test_client().post("/hooks/github", environ_overrides=environ)
    assert resp.status_code == 413
    assert Endless.read_calls == 0
    body, headers = load_payload("github/push__goscm-branch.json")
    headers.update(sign_github(body, GITHUB_SECRET))
    assert app.test_client().post("/hooks/github", data=body, headers=headers).status_code == 413
    assert store.list_deliveries() == []


@pytest.mark.parametrize("body, message", [
    (b"{not json", "body is not valid JSON"),
    (b"[1, 2]", "JSON body is an array, not an object"),
    (b"[" * 100_000 + b"]" * 100_000, "JSON body is nested too deeply"),
    (b'{"ref": "\xff\xfe"}', "body is not valid UTF-8"),
    (b'{"ref": "\\ud800"}', "lone"),
    (b'{"ref": "refs/heads/a\\u0000b"}', "U+0000 (NUL)"),
    (b'{"after": "' + b"a" * 40 + b'"}', "push payload has no 'ref'"),
    (b'{"ref": "refs/heads/main"}', "push payload has no 'after'"),
])
def test_bad_bodies_400(client, body, message):
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-bad", "Content-Type": "application/json"}
    headers.update(sign_github(body, GITHUB_SECRET))
    resp = post(client, "github", body, headers)
    assert resp.status_code == 400, resp.get_data()
    assert message in resp.get_json()["error"]


def test_form_encoded_github_body(client):
    from helpers.payloads import github_form_body
    json_body, headers = load_payload("github/push__goscm-branch.json")
    body = github_form_body(json_body)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    headers.update(sign_github(body, GITHUB_SECRET))
    assert post(client, "github", body, headers).status_code == 202


def test_duplicate_delivery_id_and_content_replay(client):
    first = github(client, "github/push__goscm-branch.json")
    assert first.status_code == 202
    again = github(client, "github/push__goscm-branch.json")
    assert again.status_code == 200
    assert again.get_json()["duplicate_of"] == first.get_json()["delivery"]
    # The same captured body under a fresh delivery id (GitHub does not sign the id): no new build.
    replay = github(client, "github/push__goscm-branch.json", **{"X-GitHub-Delivery": "fresh-id-1"})
    assert replay.status_code == 200
    assert replay.get_json()["duplicate_of"] == first.get_json()["delivery"]
    assert "same push" in replay.get_json()["reason"]
    stored = client.store.get_delivery("fresh-id-1")
    assert stored["outcome"] == "duplicate" and stored["jobs"] == []


def test_gitlab_idempotency_key_preferred(client):
    body, headers = load_payload("gitlab/push_hook__goscm-branch.json")
    headers.update({"X-Gitlab-Token": GITLAB_TOKEN, "Idempotency-Key": "idem-1", "X-Gitlab-Event-UUID": "uuid-1"})
    assert post(client, "gitlab", body, headers).get_json()["delivery"] == "idem-1"
    headers["X-Gitlab-Event-UUID"] = "uuid-2"      # a retry: same Idempotency-Key, new UUID
    resp = post(client, "gitlab", body, headers)
    assert resp.status_code == 200 and resp.get_json()["duplicate_of"] == "idem-1"


def test_ping_is_200(client):
    resp = github(client, "github/ping__octokit-repo-hook.json")
    assert resp.status_code == 200 and resp.get_json()["ignored"] == "ping"


def test_store_down_503_nothing_accepted(write_rules, tmp_path):
    """A database that cannot be reached: the worker still boots, answers 503, and is ready again
    by itself once the database answers (here: the same app pointed at a port nobody serves)."""
    from helpers.rules import BASE_RULES

    from bridge.config.load import load_config
    from bridge.web.app import create_app
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    config = load_config(write_rules(BASE_RULES + "settings:\n  database_url: "
                                     f"postgresql://postgres@127.0.0.1:{dead_port}/test?connect_timeout=2\n"))
    app = create_app(config, state_dir=str(tmp_path))
    body, headers = load_payload("github/push__goscm-branch.json")
    headers.update(sign_github(body, GITHUB_SECRET))
    resp = app.test_client().post("/hooks/github", data=body, headers=headers)
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "30"
    assert "nothing was accepted" in resp.get_json()["error"]
    assert app.test_client().get("/readyz").status_code == 503


def test_kept_headers_drop_secrets():
    kept = kept_headers({"X-Hub-Signature-256": "sha256=1", "X-Hub-Signature": "sha1=2", "X-Gitlab-Token": "t",
                         "Authorization": "Bearer x", "X-GitHub-Event": "push", "Content-Type": "a/b",
                         "Cookie": "c", "Accept": "*/*", "X-Api-Key": "k", "X-Amz-Security-Token": "t",
                         "X-GitHub-Delivery": "d-1"})
    assert kept == {"X-GitHub-Event": "push", "Content-Type": "a/b", "X-GitHub-Delivery": "d-1"}


def test_healthz_readyz(client):
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["status"] == "ready"
