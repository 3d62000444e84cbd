"""Provider stage, before normalizing: the HMAC-SHA256 hex signature GitHub, Bitbucket, Gitea and
Forgejo send with a delivery, checked in constant time, and made (for `cibridge send`).

Input: the body, the source's secrets, the header's 64 hex digits. Output: whether one of the
secrets signed the body; the hex digest of a body under a secret.
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable


def hex_digest(secret: bytes, body: bytes) -> str:
    """HMAC-SHA256(secret, body) as 64 lowercase hex digits."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def signed_by_one_of(body: bytes, secrets: Iterable[bytes], given_hex: str) -> bool:
    """Whether `given_hex` (any case) is the body's digest under one of `secrets`, each compared
    in constant time."""
    given = given_hex.lower().encode("ascii")
    return any(hmac.compare_digest(hex_digest(secret, body).encode("ascii"), given)
               for secret in secrets)
