"""Signing as the git hosts do, for `cibridge send` (testing a setup end to end).

Input: provider name, body bytes, one secret. Output: the headers GitHub or GitLab would send.
"""
from __future__ import annotations

import hashlib
import hmac

DEFAULT_EVENTS = {"github": "push", "gitlab": "Push Hook"}


def sign_headers(provider: str, body: bytes, secret: bytes, *, event: str | None = None,
                 delivery: str) -> dict:
    if provider == "github":
        digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
        return {"Content-Type": "application/json", "X-GitHub-Event": event or DEFAULT_EVENTS[provider],
                "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": f"sha256={digest}",
                "User-Agent": "bridge-send"}
    if provider == "gitlab":
        return {"Content-Type": "application/json", "X-Gitlab-Event": event or DEFAULT_EVENTS[provider],
                "X-Gitlab-Event-UUID": delivery, "X-Gitlab-Token": secret.decode("utf-8"),
                "User-Agent": "bridge-send"}
    raise ValueError(f"cannot sign for provider '{provider}'")
