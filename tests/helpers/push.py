"""A Zuul-style builder of git pushes for tests: `push(repo, ref, files=...)` takes a real GitHub
push payload as its template and gives the signed delivery (id, body, headers) GitHub would send,
with `.event` the Event the bridge's GitHub provider reads from it."""
from __future__ import annotations

import functools
import json
import os
import uuid
from dataclasses import dataclass

from bridge.events import Event
from bridge.providers import github
from helpers.payloads import load_payload, sign_github
from helpers.rules import GITHUB_SECRET

TEMPLATE = "github/push__f110-single-commit.json"


@dataclass(frozen=True)
class Push:
    delivery: str
    body: bytes
    headers: dict[str, str]

    @property
    def event(self) -> Event:
        return github.normalize(self.headers, self.body, source="github", delivery_id=self.delivery)

    def __iter__(self):
        """`delivery, body, headers = push(...)`."""
        return iter((self.delivery, self.body, self.headers))


@functools.lru_cache(maxsize=None)
def _template(rel: str):
    """(body, headers, after, ref, repo) of a payload file, read at the first use: without
    shared/payloads only the tests that post it skip."""
    body, headers = load_payload(rel)
    payload = json.loads(body)
    return body, headers, payload["after"], payload["ref"], payload["repository"]["full_name"]


def push(repo: str | None = None, ref: str | None = None, *, files=None, delivery: str | None = None,
         after: str | None = None, pad: int = 0, secret: str = GITHUB_SECRET,
         template: str = TEMPLATE) -> Push:
    """A fresh push of `repo` to `ref` (the template's own when None) with a new `after` SHA. The
    template's bytes stay as they are except the values changed in place; `files` replaces the
    commit list by one commit that modifies those paths; `pad` adds trailing whitespace."""
    raw, recorded, old_after, old_ref, old_repo = _template(template)
    after = after or os.urandom(20).hex()
    body = raw.replace(old_after.encode(), after.encode())
    if ref and ref != old_ref:
        body = body.replace(b'"ref": "' + old_ref.encode() + b'"', b'"ref": "' + ref.encode() + b'"')
    if (repo and repo != old_repo) or files is not None:
        payload = json.loads(body)
        if repo:
            owner, _, name = repo.partition("/")
            payload["repository"].update(full_name=repo, name=name)
        if files is not None:
            payload["commits"] = [{**payload["head_commit"], "added": [], "removed": [],
                                   "modified": list(files)}]
            payload["head_commit"] = payload["commits"][0]
        body = json.dumps(payload, indent=2).encode()
    if pad:
        body = body.rstrip()[:-1] + b" " * pad + b"}"      # still the same JSON, just bigger
    delivery = delivery or str(uuid.uuid4())
    headers = {**recorded, "X-GitHub-Delivery": delivery, **sign_github(body, secret)}
    return Push(delivery, body, headers)
