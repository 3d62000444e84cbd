"""Test support for the hosts beyond GitHub and GitLab: real payloads signed the way Gitea, Forgejo
and Bitbucket Cloud sign them (and GitLab with a signing token), posted through the app and
explained through `cibridge explain --format json`, and the expected event written out in full.

Input: a payload path under shared/payloads and the fields a reader of the host's docs expects.
Output: the reply, the explain JSON, and the whole expected event dict to compare them with.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json

from click.testing import CliRunner

from bridge.cli.main import cli
from helpers.payloads import load_payload, payloads_dir
from helpers.rules import BITBUCKET_SECRET, FORGEJO_SECRET, GITEA_SECRET

ZERO = "0" * 40
SECRETS = {"gitea": GITEA_SECRET, "forgejo": FORGEJO_SECRET, "bitbucket": BITBUCKET_SECRET}


def hmac_hex(secret: str, body: bytes) -> str:
    """HMAC-SHA256 of the raw body, hex: what every one of these hosts signs with."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def host_headers(host: str, body: bytes, headers: dict, secret: str | None = None) -> dict:
    """`headers` plus the signature the host sends (written from its docs, not from our code):
    Gitea `X-Gitea-Signature` bare hex (and `X-Hub-Signature-256`), Forgejo the same under
    `X-Forgejo-Signature` (and Gitea's), Bitbucket `X-Hub-Signature: sha256=<hex>`."""
    digest = hmac_hex(secret or SECRETS[host], body)
    out = dict(headers)
    if host == "bitbucket":
        out["X-Hub-Signature"] = f"sha256={digest}"
    else:
        out.update({"X-Gitea-Signature": digest, "X-Hub-Signature-256": f"sha256={digest}"})
        if host == "forgejo":
            out["X-Forgejo-Signature"] = digest
    return out


def signed(host: str, rel: str, secret: str | None = None) -> tuple[bytes, dict]:
    body, headers = load_payload(rel)
    return body, host_headers(host, body, headers, secret)


def standard_webhooks(signing_token: str, body: bytes, msg_id: str, timestamp: int) -> dict:
    """GitLab's signing-token headers, per the Standard Webhooks spec: v1,base64(HMAC-SHA256(key,
    "id.timestamp.body")) with key = base64-decoded text after `whsec_`."""
    key = base64.b64decode(signing_token[len("whsec_"):])
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": "v1," + base64.b64encode(mac).decode()}


def explain_json(rules_path, source: str, rel: str, tmp_path) -> dict:
    _, headers = load_payload(rel)
    hfile = tmp_path / f"headers-{rel.replace('/', '_')}"
    hfile.write_text(json.dumps(headers))
    result = CliRunner().invoke(cli, ["explain", "--rules", str(rules_path), "--source", source,
                                      "--headers", str(hfile), "--format", "json",
                                      str(payloads_dir() / rel)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def event(provider, delivery, kind, repo, ref, *, before, after, sha="same", commits=(),
          complete=True, pusher="", default_branch="", clone_urls=(), head_message="",
          forced=False, source=None) -> dict:
    """The whole event dict `explain` prints. `sha="same"`: the commit is `after` (no deletion)."""
    deleted = after == ZERO
    name = ref.split("/", 2)[2]
    return {"provider": provider, "source": source or provider, "delivery_id": delivery,
            "kind": kind, "repo": repo, "ref": ref, "ref_name": name, "before": before,
            "after": after, "sha": (None if deleted else after) if sha == "same" else sha,
            "created": before == ZERO, "deleted": deleted, "forced": forced,
            "commits": list(commits), "commits_complete": complete, "pusher": pusher,
            "default_branch": default_branch, "clone_urls": list(clone_urls),
            "head_message": head_message, "repo_case_insensitive": True}


def comparable(event_dict: dict) -> dict:
    """An explained or stored event with its commits reduced to their ids (their other fields
    are checked on their own)."""
    return {**event_dict, "commits": [c["id"] for c in event_dict["commits"]]}
