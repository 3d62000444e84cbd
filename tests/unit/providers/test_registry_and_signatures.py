"""The provider registry and webhook authentication: GitHub signatures (the documented vector, several
secrets, bad signatures), GitLab tokens (rotation, header case, non-ASCII), secret headers and delivery ids."""
from __future__ import annotations

import json

import pytest
from werkzeug.datastructures import Headers

from bridge.errors import VerificationFailed
from bridge import providers
from bridge.providers import PROVIDERS, bitbucket, get_provider, github, gitlab
from bridge.providers.gitea import FORGEJO, GITEA
from bridge.providers.clone import default_hosts
from helpers.payloads import (gitlab_token_headers, load_payload, payloads_dir, sign_github,
                              signed_request)
from helpers.normalize import OLD_SECRET, SECRET


# --- registry ---------------------------------------------------------------------------------

def test_registry_and_did_you_mean():
    assert PROVIDERS == {"github": github, "gitlab": gitlab, "gitea": GITEA, "forgejo": FORGEJO,
                         "bitbucket": bitbucket}
    assert get_provider("gitlab") is gitlab
    with pytest.raises(KeyError) as exc:
        get_provider("githib")
    assert exc.value.args[0] == ("unknown provider 'githib' (did you mean 'github'?); known providers: "
                                 "bitbucket, forgejo, gitea, github, gitlab")


# --- signatures -------------------------------------------------------------------------------

def test_github_documented_signature_vector():
    vector = json.loads((payloads_dir() / "signature_vectors.json").read_text())["github_docs"]
    body = vector["payload_utf8"].encode("utf-8")
    assert sign_github(body, vector["secret"]) == {"X-Hub-Signature-256": vector["X-Hub-Signature-256"]}
    github.verify(Headers({"X-Hub-Signature-256": vector["X-Hub-Signature-256"]}), body,
                  [vector["secret"].encode()])
    with pytest.raises(VerificationFailed):
        github.verify(Headers({"X-Hub-Signature-256": vector["X-Hub-Signature-256"]}), body + b" ",
                      [vector["secret"].encode()])


def test_github_any_listed_secret_verifies_and_upper_case_hex_is_accepted():
    body, headers = signed_request("github", "github/push__goscm-branch.json", OLD_SECRET)
    github.verify(Headers(headers), body, [SECRET, OLD_SECRET])
    headers["X-Hub-Signature-256"] = "sha256=" + headers["X-Hub-Signature-256"][7:].upper()
    github.verify(Headers(headers), body, [OLD_SECRET])
    with pytest.raises(VerificationFailed, match="does not match"):
        github.verify(Headers(headers), body, [SECRET])


def test_gitlab_token_rotation_and_header_case():
    body, headers = signed_request("gitlab", "gitlab/push_hook__docs.json", OLD_SECRET)
    gitlab.verify(Headers(headers), body, [SECRET, OLD_SECRET])
    gitlab.verify(Headers({"x-gitlab-token": OLD_SECRET.decode()}), body, [OLD_SECRET])
    with pytest.raises(VerificationFailed, match="does not match"):
        gitlab.verify(Headers(headers), body, [SECRET])


def test_gitlab_non_ascii_token_compares_as_the_bytes_sent():
    secret = "tökén".encode("utf-8")
    gitlab.verify(Headers(gitlab_token_headers(secret)), b"{}", [secret])


BODY = b'{"ref": "refs/heads/main"}'
GOOD = sign_github(BODY, SECRET)["X-Hub-Signature-256"]


@pytest.mark.parametrize("headers, message", [
    ({}, "X-Hub-Signature-256 is missing"),
    ({"X-Hub-Signature-256": ""}, "X-Hub-Signature-256 is missing"),
    ({"X-Hub-Signature": "sha1=" + "0" * 40},
     "X-Hub-Signature-256 is missing; the SHA-1 X-Hub-Signature alone is not accepted"),
    ({"X-Hub-Signature-256": GOOD[7:]}, "X-Hub-Signature-256 is malformed: expected 'sha256=' and 64 hex digits"),
    ({"X-Hub-Signature-256": "sha1=" + GOOD[7:]}, "X-Hub-Signature-256 is malformed: expected 'sha256=' and 64 hex digits"),
    ({"X-Hub-Signature-256": GOOD[:-1]}, "X-Hub-Signature-256 is malformed: expected 'sha256=' and 64 hex digits"),
    ({"X-Hub-Signature-256": GOOD + "0"}, "X-Hub-Signature-256 is malformed: expected 'sha256=' and 64 hex digits"),
    ({"X-Hub-Signature-256": GOOD[:-1] + "g"}, "X-Hub-Signature-256 is malformed: expected 'sha256=' and 64 hex digits"),
    ({"X-Hub-Signature-256": GOOD[:-1] + "é"}, "X-Hub-Signature-256 is malformed: expected 'sha256=' and 64 hex digits"),
    ({"X-Hub-Signature-256": GOOD[:-1] + "٣"}, "X-Hub-Signature-256 is malformed: expected 'sha256=' and 64 hex digits"),
    ({"X-Hub-Signature-256": " " + GOOD}, "X-Hub-Signature-256 is malformed: expected 'sha256=' and 64 hex digits"),
    ({"X-Hub-Signature-256": "sha256=" + "0" * 64}, "X-Hub-Signature-256 does not match the body"),
], ids=["missing", "empty", "sha1-only", "no-prefix", "sha1-prefix", "short", "long", "non-hex",
        "non-ascii", "arabic-digit", "leading-space", "wrong"])
def test_github_bad_signatures(headers, message):
    with pytest.raises(VerificationFailed) as exc:
        github.verify(Headers(headers), BODY, [SECRET])
    assert exc.value.message == message
    assert exc.value.status == 401
    assert SECRET.decode() not in str(exc.value) and GOOD[7:] not in str(exc.value)


@pytest.mark.parametrize("headers, message", [
    ({}, "X-Gitlab-Token is missing"),
    ({"X-Gitlab-Token": ""}, "X-Gitlab-Token is missing"),
    ({"X-Gitlab-Token": SECRET.decode()[:-1]}, "X-Gitlab-Token does not match"),
    ({"X-Gitlab-Token": SECRET.decode() + " "}, "X-Gitlab-Token does not match"),
    ({"X-Gitlab-Token": "tökén"}, "X-Gitlab-Token does not match"),
    ({"X-Gitlab-Token": "token€"}, "X-Gitlab-Token is malformed"),
    ({"X-Hub-Signature-256": GOOD}, "X-Gitlab-Token is missing"),
], ids=["missing", "empty", "short", "trailing-space", "non-ascii", "beyond-latin-1", "github-header"])
def test_gitlab_bad_tokens(headers, message):
    with pytest.raises(VerificationFailed) as exc:
        gitlab.verify(Headers(headers), BODY, [SECRET])
    assert exc.value.message == message
    assert SECRET.decode() not in str(exc.value)


def test_secret_headers_and_delivery_ids():
    assert github.SECRET_HEADERS == ("X-Hub-Signature-256", "X-Hub-Signature")
    assert gitlab.SECRET_HEADERS == ("X-Gitlab-Token", "webhook-signature")
    _, gh = load_payload("github/push__goscm-branch.json")
    assert github.delivery_id(Headers(gh)) == "cbfc4261-9fbb-55ca-ae5c-e6c850bea81d"
    assert github.event_name(Headers(gh)) == "push"
    assert github.delivery_id(Headers({})) is None
    _, gl = load_payload("gitlab/push_hook__docs.json")
    assert gitlab.delivery_id(Headers(gl)) == "205becdb-40ab-5677-9d57-cc399650266d"   # Idempotency-Key
    del gl["Idempotency-Key"]
    assert gitlab.delivery_id(Headers(gl)) == "8a7531f0-bd13-56db-925c-31784e790c2b"   # X-Gitlab-Event-UUID
    assert gitlab.delivery_id(Headers({})) is None
    assert gitlab.event_name(Headers(gl)) == "Push Hook"


def test_registry_answers_what_callers_ask_of_a_host():
    assert providers.names() == ("github", "gitlab", "gitea", "forgejo", "bitbucket")
    assert providers.default_api_url("github") == "https://api.github.com"
    assert providers.default_api_url("gitlab") == "https://gitlab.com/api/v4"
    assert providers.default_api_url("gitea") == providers.default_api_url(["github"]) == ""
    assert providers.default_api_url("nosuch") == ""
    assert providers.default_api_url("bitbucket") == "https://api.bitbucket.org/2.0"
    assert providers.clone_user("gitlab") == "oauth2"
    assert providers.clone_user("github") == providers.clone_user("") == "x-access-token"
    assert providers.commit_cap("github") == 2048 and providers.commit_cap("gitlab") is None
    assert default_hosts("github", "https://api.github.com") == ("github.com",)
    assert default_hosts("gitlab", "https://api.example.com:8443/api/v4") == (
        "api.example.com", "api.example.com:8443")
    assert set(providers.kept_header_prefixes()) == {
        "x-github-", "x-gitlab-", "webhook-id", "webhook-timestamp", "x-gitea-", "x-forgejo-",
        "x-gogs-", "x-event-key", "x-request-uuid", "x-hook-uuid", "x-attempt-number"}
    assert set(providers.secret_headers()) == {
        "x-hub-signature", "x-hub-signature-256", "x-gitlab-token", "webhook-signature",
        "x-gitea-signature", "x-forgejo-signature", "x-gogs-signature"}
    assert providers.host_view({"provider": "github", "state": "running", "post_state": "sent"}) == {
        "host_state": "pending", "received": True}
    assert providers.host_view({"provider": "gitlab", "state": "failure", "post_state": "retry"}) == {
        "host_state": "failed", "received": False}
    assert providers.host_view({"provider": None, "state": "running"})["host_state"] == "running"
    for name in providers.names():
        client = providers.status_client(name, "https://example.com/api/", "t", timeout=3)
        assert client.provider == name and client.api_url == "https://example.com/api"


@pytest.mark.parametrize("name", ["github", "gitlab"])
def test_send_headers_verify_as_the_host_sends_them(name):
    body = b'{"ref": "refs/heads/main"}'
    headers = Headers(providers.sign_headers(name, body, SECRET, delivery="d-1"))
    module = get_provider(name)
    module.verify(headers, body, [SECRET])
    assert module.event_name(headers) == module.DEFAULT_EVENT and module.delivery_id(headers) == "d-1"
    assert providers.sign_headers(name, body, SECRET, event="x", delivery="d")[module.EVENT_HEADER] == "x"
