"""Test support: real payload files from shared/payloads with their headers, signed the way the
hosts sign them.

Input: a payload path relative to shared/payloads and a secret. Output: the exact body bytes and a
headers dict (event, delivery id, signature or token) ready to post or to hand to a provider.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from urllib.parse import quote_plus

import pytest

from bridge.providers import gitlab, signature_headers


def shared_dir() -> Path:
    """shared/ sits beside the checkout (also in CI); BRIDGE_SHARED_DIR overrides."""
    override = os.environ.get("BRIDGE_SHARED_DIR")
    return Path(override) if override else Path(__file__).resolve().parents[3] / "shared"


def payloads_dir() -> Path:
    """shared/payloads; when it is missing, the calling test (or module, at collection) is
    skipped with one message saying where it was looked for, instead of a FileNotFoundError."""
    directory = shared_dir() / "payloads"
    if not (directory / "headers.json").is_file():
        pytest.skip(missing_message(directory), allow_module_level=True)
    return directory


def missing_message(directory: Path) -> str:
    return (f"real payloads not found: {directory} has no headers.json (put shared/ beside the "
            "checkout or set BRIDGE_SHARED_DIR to the directory holding payloads/)")


@functools.lru_cache(maxsize=None)
def _all_headers(directory: Path) -> dict:
    return json.loads((directory / "headers.json").read_text(encoding="utf-8"))


def payload_files(provider: str) -> list[str]:
    """Every payload of a provider, as paths relative to shared/payloads ("github/push__x.json").
    Without shared/payloads, one stand-in name whose test skips (in load_payload) with the message
    of payloads_dir(): a parametrize at collection must not skip the whole module."""
    directory = shared_dir() / "payloads"
    if not (directory / "headers.json").is_file():
        return [f"{provider}/payloads-missing"]
    return sorted(f"{provider}/{p.name}" for p in (directory / provider).glob("*.json"))


def load_payload(rel_path: str) -> tuple[bytes, dict[str, str]]:
    """The body byte for byte and a fresh copy of its recorded headers (no signature)."""
    directory = payloads_dir()
    return (directory / rel_path).read_bytes(), dict(_all_headers(directory)[rel_path])


def _as_bytes(secret: bytes | str) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def sign_github(body: bytes, secret: bytes | str) -> dict[str, str]:
    """`X-Hub-Signature-256` over exactly `body`, as the product signs it."""
    return signature_headers("github", body, _as_bytes(secret))


def gitlab_token_headers(secret: bytes | str) -> dict[str, str]:
    """GitLab sends the secret itself. Header values travel as latin-1 text under WSGI."""
    return {gitlab.TOKEN_HEADER: _as_bytes(secret).decode("latin-1")}


def github_form_body(json_body: bytes) -> bytes:
    """A JSON body the way a GitHub hook set to `application/x-www-form-urlencoded` sends it."""
    return b"payload=" + quote_plus(json_body).encode("ascii")


def signed_request(provider: str, rel_path: str, secret: bytes | str) -> tuple[bytes, dict[str, str]]:
    """A payload file with the headers a real delivery of it carries, signature or token included."""
    body, headers = load_payload(rel_path)
    if provider == "gitlab":
        # Not the product's signature(): the test client sends header values as latin-1 text.
        headers.update(gitlab_token_headers(secret))
    else:
        headers.update(signature_headers(provider, body, _as_bytes(secret)))
    return body, headers
