"""A Bitbucket pull request from a fork: source.repository is not destination.repository, by uuid
first (a renamed repository keeps it), else by full name in any case; no source repository at
all (a deleted fork) is a fork."""
from __future__ import annotations

import json

import pytest

from bridge.providers import bitbucket

BASE = {"full_name": "acme/api", "uuid": "{1111}"}


def fork(source) -> bool:
    pr = {"id": 12, "state": "OPEN", "author": {"nickname": "alice"},
          "source": {"branch": {"name": "fix"}, "commit": {"hash": "1a2b3c4d5e6f"}},
          "destination": {"branch": {"name": "main"}, "commit": {"hash": "99aa88bb77cc"}, "repository": BASE}}
    if source is not None:
        pr["source"]["repository"] = source
    body = json.dumps({"actor": {"nickname": "alice"}, "repository": BASE, "pullrequest": pr}).encode()
    [event] = bitbucket.normalize_all({"X-Event-Key": "pullrequest:created"}, body, source="bb", delivery_id="d")
    return event.fork


@pytest.mark.parametrize("source, want", [
    (BASE, False),
    ({"full_name": "acme/api", "uuid": "{2222}"}, True),        # same name, another repository
    ({"full_name": "old/name", "uuid": "{1111}"}, False),       # renamed: the uuid decides
    ({"full_name": "ACME/Api"}, False),                          # no uuid: by name, any case
    ({"full_name": "mallory/api"}, True),
    (None, True),                                                # the fork was deleted
])
def test_a_fork(source, want):
    assert fork(source) is want
