"""Parts of the provider tests: the test secrets, a real payload signed and normalized by its provider,
and a payload's body (a GitHub push by default) with some fields changed or removed."""
from __future__ import annotations

import json

from werkzeug.datastructures import Headers

from bridge.providers import get_provider
from helpers.payloads import load_payload, signed_request


SECRET = b"s3cret-for-tests"
OLD_SECRET = b"the-previous-secret"


def normalize(provider: str, rel_path: str):
    body, headers = signed_request(provider, rel_path, SECRET)
    headers = Headers(headers)
    mod = get_provider(provider)
    mod.verify(headers, body, [SECRET])
    return mod.normalize(headers, body, source=f"{provider}-src", delivery_id=mod.delivery_id(headers) or "none")


def _push_body(**changes) -> bytes:
    return changed_payload("github/push__goscm-branch.json", changes)


def changed_payload(rel_path: str, changes: dict) -> bytes:
    """The shared payload's body with `changes` made: key -> new value, or `...` to remove it."""
    body, _ = load_payload(rel_path)
    payload = json.loads(body)
    for key, value in changes.items():
        if value is ...:
            del payload[key]
        else:
            payload[key] = value
    return json.dumps(payload).encode()
