"""The content key as the content_keys table holds it (store/inbox.claim_key): kept as it is up to
2,000 bytes of UTF-8, its SHA-256 beyond, so a very long repo or ref dedupes the same way on
SQLite and PostgreSQL (whose b-tree entries are capped near 2.7 KB)."""
from __future__ import annotations

import hashlib

from bridge.store.inbox import claim_key


def hashed(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def test_none_and_short_keys_are_kept():
    assert claim_key(None) is None
    assert claim_key("github|acme/api|refs/heads/main|a|b") == "github|acme/api|refs/heads/main|a|b"


def test_the_2000_byte_boundary_in_ascii():
    assert claim_key("k" * 2000) == "k" * 2000
    assert claim_key("k" * 2001) == hashed("k" * 2001)


def test_the_boundary_counts_utf8_bytes_not_characters():
    key = "é" * 1000            # 1,000 characters, 2,000 bytes: kept
    assert claim_key(key) == key
    longer = "é" * 1001         # 2,002 bytes: hashed, though only 1,001 characters
    assert claim_key(longer) == hashed(longer)
    short = "é" * 500 + "k"     # 501 characters, well under any limit: kept as it is
    assert claim_key(short) == short


def test_the_same_long_key_always_claims_the_same_row():
    key = "github|" + "r" * 3000
    assert claim_key(key) == claim_key(key) != claim_key(key + "x")
