"""Webhook authentication of the other hosts: Gitea and Forgejo (bare hex HMAC-SHA256, or GitHub's
`X-Hub-Signature-256` form they also send), Bitbucket Cloud (`X-Hub-Signature: sha256=`), and
GitLab's signing token in Standard Webhooks form (the spec's published vector, the 5-minute
window, rotation between the plain token and the signature). Wrong, missing, malformed and old
signatures; messages name the header and never a secret."""
from __future__ import annotations

import hashlib
import pytest
from helpers.hosts import hmac_hex, standard_webhooks
from helpers.payloads import load_payload
from werkzeug.datastructures import Headers

from bridge.errors import VerificationFailed
from bridge.providers import bitbucket, gitlab, sign_headers
from bridge.providers.gitea import FORGEJO, GITEA
from bridge.web.ingress import kept_headers

SECRET, OTHER = "s3cret-for-tests", "not-the-secret"
BODY, _ = load_payload("gitea/push__docs.json")
GOOD = hmac_hex(SECRET, BODY)


def refused(provider, headers, body=BODY, secrets=(SECRET.encode(),), **options) -> str:
    with pytest.raises(VerificationFailed) as exc:
        provider.verify(Headers(headers), body, list(secrets), **options)
    assert SECRET not in exc.value.message
    return exc.value.message


@pytest.mark.parametrize("headers", [
    {"X-Gitea-Signature": GOOD}, {"X-Hub-Signature-256": f"sha256={GOOD}"},
    {"X-Gitea-Signature": GOOD.upper()}, {"x-gitea-signature": GOOD},
    {"X-Forgejo-Signature": GOOD},
], ids=["gitea-header", "github-form", "upper-hex", "lower-case-name", "forgejo-header-on-gitea"])
def test_gitea_accepts_each_form_it_sends(headers):
    GITEA.verify(Headers(headers), BODY, [OTHER.encode(), SECRET.encode()])    # any listed secret


def test_forgejo_reads_its_own_header_first():
    FORGEJO.verify(Headers({"X-Forgejo-Signature": GOOD, "X-Gitea-Signature": "0" * 64}), BODY,
                   [SECRET.encode()])
    assert refused(FORGEJO, {"X-Forgejo-Signature": "0" * 64, "X-Gitea-Signature": GOOD}) == \
        "X-Forgejo-Signature does not match the body"


@pytest.mark.parametrize("headers, message", [
    ({}, "X-Gitea-Signature is missing"),
    ({"X-Gitea-Signature": "", "X-Hub-Signature-256": ""}, "X-Gitea-Signature is missing"),  # no secret set
    ({"X-Gitea-Signature": hmac_hex(OTHER, BODY)}, "X-Gitea-Signature does not match the body"),
    ({"X-Gitea-Signature": GOOD[:-1]}, "X-Gitea-Signature is malformed: expected 64 hex digits"),
    ({"X-Gitea-Signature": f"sha256={GOOD}"}, "X-Gitea-Signature is malformed: expected 64 hex digits"),
    ({"X-Hub-Signature-256": GOOD},
     "X-Hub-Signature-256 is malformed: expected 64 hex digits after 'sha256='"),
    ({"X-Hub-Signature": "sha1=" + "0" * 40}, "X-Gitea-Signature is missing"),
], ids=["missing", "empty", "wrong-secret", "short", "prefixed-bare", "bare-hub", "sha1-only"])
def test_gitea_refusals(headers, message):
    assert refused(GITEA, headers) == message


def test_gitea_signature_over_other_bytes_is_refused():
    assert refused(GITEA, {"X-Gitea-Signature": GOOD}, body=BODY + b"\n") == \
        "X-Gitea-Signature does not match the body"


BB_BODY, _ = load_payload("bitbucket/repo_push__jenkins-update.json")


def test_bitbucket_signature_and_rotation():
    good = {"X-Hub-Signature": "sha256=" + hmac_hex(SECRET, BB_BODY)}
    bitbucket.verify(Headers(good), BB_BODY, [OTHER.encode(), SECRET.encode()])
    assert refused(bitbucket, good, body=BB_BODY, secrets=[OTHER.encode()]) == \
        "X-Hub-Signature does not match the body"


@pytest.mark.parametrize("headers, message", [
    ({}, "X-Hub-Signature is missing (set a secret on the webhook)"),
    ({"X-Hub-Signature": "sha1=" + "0" * 40}, "X-Hub-Signature is malformed: expected 'sha256=' and 64 hex digits"),
    ({"X-Hub-Signature-256": "sha256=" + "0" * 64}, "X-Hub-Signature is missing (set a secret on the webhook)"),
    ({"X-Hub-Signature": "sha256=" + "0" * 64}, "X-Hub-Signature does not match the body"),
], ids=["missing", "sha1", "github-name", "wrong"])
def test_bitbucket_refusals(headers, message):
    assert refused(bitbucket, headers, body=BB_BODY) == message


# --- GitLab signing tokens (Standard Webhooks) ------------------------------------------------

VECTOR = {"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
          "timestamp": 1614265330, "body": b'{"test": 2432232314}',
          "signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
SIGNING = "whsec_" + "c2lnbmluZy1rZXktZm9yLXRlc3RzLTMyLWJ5dGVzLTAx"     # base64 of a key
GL_BODY, _ = load_payload("gitlab/push_hook__docs.json")
NOW = 1_780_000_000


def test_the_standard_webhooks_published_vector():
    headers = {"webhook-id": VECTOR["id"], "webhook-timestamp": str(VECTOR["timestamp"]),
               "webhook-signature": VECTOR["signature"]}
    gitlab.verify(Headers(headers), VECTOR["body"], [VECTOR["secret"].encode()], accept=("signature",),
                  now=lambda: VECTOR["timestamp"])
    assert standard_webhooks(VECTOR["secret"], VECTOR["body"], VECTOR["id"], VECTOR["timestamp"]) == headers
    assert gitlab.delivery_id(Headers(headers)) == VECTOR["id"]


def signed_gl(offset=0, secret=SIGNING, **extra):
    return {**standard_webhooks(secret, GL_BODY, "msg_1", NOW + offset), **extra}


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_gitlab_signature_inside_the_window(offset):
    gitlab.verify(Headers(signed_gl(offset)), GL_BODY, [SIGNING.encode()], accept=("signature",),
                  now=lambda: NOW)


@pytest.mark.parametrize("offset", [-301, 301, -86400])
def test_gitlab_signature_outside_the_window_is_refused(offset):
    assert refused(gitlab, signed_gl(offset), body=GL_BODY, secrets=[SIGNING.encode()],
                   accept=("signature",), now=lambda: NOW) == \
        "webhook-timestamp is more than 5 minutes from the bridge's clock (an old delivery replayed, or a clock off)"


@pytest.mark.parametrize("change, message", [
    ({"webhook-signature": None}, "webhook-signature is missing"),
    ({"webhook-id": None}, "webhook-id is missing"),
    ({"webhook-timestamp": "soon"}, "webhook-timestamp is malformed: expected Unix seconds"),
    ({"webhook-timestamp": "1" * 13}, "webhook-timestamp is malformed: expected Unix seconds"),
    ({"webhook-timestamp": "9" * 12}, "webhook-timestamp is more than 5 minutes from the bridge's clock "
                                      "(an old delivery replayed, or a clock off)"),    # 12 digits: read
    ({"webhook-id": "msg_2"}, "webhook-signature does not match the body"),     # the id is signed
    ({"webhook-signature": "v1a,AAAA"}, "webhook-signature is malformed: expected 'v1,' and base64"),
], ids=["no-signature", "no-id", "bad-timestamp", "13-digits", "12-digits", "other-id", "ed25519-only"])
def test_gitlab_signature_refusals(change, message):
    headers = {k: v for k, v in {**signed_gl(), **change}.items() if v is not None}
    assert refused(gitlab, headers, body=GL_BODY, secrets=[SIGNING.encode()], accept=("signature",),
                   now=lambda: NOW) == message


def test_gitlab_several_signatures_any_may_match_and_the_key_needs_whsec():
    good = signed_gl()
    headers = {**good, "webhook-signature": "v1,AAAA " + good["webhook-signature"]}
    gitlab.verify(Headers(headers), GL_BODY, [b"plain", SIGNING.encode()], accept=("signature",),
                  now=lambda: NOW)
    assert refused(gitlab, good, body=GL_BODY, secrets=[b"plain"], accept=("signature",),
                   now=lambda: NOW) == \
        "webhook-signature cannot be checked: the source has no whsec_ signing token"
    assert refused(gitlab, good, body=GL_BODY + b" ", secrets=[SIGNING.encode()], accept=("signature",),
                   now=lambda: NOW) == "webhook-signature does not match the body"


def test_gitlab_accept_forms_and_rotation():
    token = {"X-Gitlab-Token": "tok"}
    secrets = [b"tok", SIGNING.encode()]
    # The default, token: a signature alone is not enough.
    assert refused(gitlab, signed_gl(), body=GL_BODY, secrets=secrets, now=lambda: NOW) == \
        "X-Gitlab-Token is missing"
    # signature only: the plain token is not enough.
    assert refused(gitlab, token, body=GL_BODY, secrets=secrets, accept=("signature",),
                   now=lambda: NOW) == "webhook-id is missing"
    both = ("token", "signature")
    gitlab.verify(Headers(token), GL_BODY, secrets, accept=both, now=lambda: NOW)
    gitlab.verify(Headers(signed_gl()), GL_BODY, secrets, accept=both, now=lambda: NOW)
    # While rotating, GitLab may send both: either one authenticates.
    gitlab.verify(Headers(signed_gl(-9999, **token)), GL_BODY, secrets, accept=both, now=lambda: NOW)
    assert refused(gitlab, signed_gl(-9999), body=GL_BODY, secrets=secrets, accept=both,
                   now=lambda: NOW).startswith("webhook-timestamp is more than 5 minutes")
    # Both sent and neither right: refused (the signature's failure falls back to the token's).
    assert refused(gitlab, signed_gl(-9999, **{"X-Gitlab-Token": "not-it"}), body=GL_BODY, secrets=secrets,
                   accept=both, now=lambda: NOW) == "X-Gitlab-Token does not match"
    assert refused(gitlab, signed_gl(**{"X-Gitlab-Token": "not-it"}), body=GL_BODY + b" ", secrets=secrets,
                   accept=both, now=lambda: NOW) == "X-Gitlab-Token does not match"


def test_signing_for_cibridge_send():
    body = b'{"ref": "refs/heads/main"}'
    headers = sign_headers("gitea", body, SECRET.encode(), delivery="d1")
    assert headers["X-Gitea-Signature"] == hmac_hex(SECRET, body) and headers["X-Gitea-Delivery"] == "d1"
    GITEA.verify(Headers(headers), body, [SECRET.encode()])
    headers = sign_headers("forgejo", body, SECRET.encode(), delivery="d2")
    assert (headers["X-Forgejo-Event"], headers["X-Forgejo-Delivery"]) == ("push", "d2")
    FORGEJO.verify(Headers(headers), body, [SECRET.encode()])
    headers = sign_headers("bitbucket", body, SECRET.encode(), delivery="d3")
    assert headers["X-Hub-Signature"] == "sha256=" + hmac_hex(SECRET, body)
    assert (headers["X-Event-Key"], headers["X-Request-UUID"]) == ("repo:push", "d3")
    headers = sign_headers("gitlab", body, SIGNING.encode(), delivery="d4")
    assert "X-Gitlab-Token" not in headers and headers["webhook-id"] == "d4"
    gitlab.verify(Headers(headers), body, [SIGNING.encode()], accept=("signature",))
    assert sign_headers("gitlab", body, b"plain", delivery="d5")["X-Gitlab-Token"] == "plain"


def test_signature_headers_are_never_kept_identification_headers_are():
    sent = {"X-Gitea-Signature": GOOD, "X-Gogs-Signature": GOOD, "X-Forgejo-Signature": GOOD,
            "X-Hub-Signature-256": f"sha256={GOOD}", "X-Hub-Signature": "sha256=" + GOOD,
            "webhook-signature": "v1,AAAA", "X-Gogs-Delivery": "g", "X-Forgejo-Event": "push",
            "X-Event-Key": "repo:push", "X-Request-UUID": "u", "X-Hook-UUID": "h", "webhook-id": "m"}
    assert kept_headers(sent) == {"X-Gogs-Delivery": "g", "X-Forgejo-Event": "push",
                                  "X-Event-Key": "repo:push", "X-Request-UUID": "u", "X-Hook-UUID": "h",
                                  "webhook-id": "m"}


def test_gitlab_signing_without_a_delivery_names_the_body():
    # The id is the body's: the same body signed again keeps it (a resend is known as one).
    headers = gitlab.signature(GL_BODY, SIGNING.encode(), now=lambda: NOW)
    assert headers["webhook-id"] == "msg_" + hashlib.sha256(GL_BODY).hexdigest()[:24]
    assert headers["webhook-timestamp"] == str(int(NOW))
    gitlab.verify(Headers(headers), GL_BODY, [SIGNING.encode()], accept=("signature",), now=lambda: NOW)
