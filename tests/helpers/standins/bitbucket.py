"""A Bitbucket Cloud REST API stand-in for tests: a real HTTP server on 127.0.0.1 answering
`POST /2.0/repositories/{workspace}/{repo_slug}/commit/{commit}/statuses/build` as Atlassian's
REST reference describes it: a commit status with `key`, `state` (INPROGRESS, SUCCESSFUL, FAILED,
STOPPED), `url` (required), `name`, `description`, `refname`; the same key overwrites; auth by
`Authorization: Bearer <access token>` or basic `user:app-password`; 201 with the status.

Input: the credentials it accepts and answers scripted by the test. Output: HTTP answers,
`statuses`, `current` (key -> state per commit), `requests`, `problems`.
"""
from __future__ import annotations

import base64
import re
from urllib.parse import unquote

from helpers.standins.github import ApiStandin, Posted

BITBUCKET_STATES = ("INPROGRESS", "SUCCESSFUL", "FAILED", "STOPPED")


class BitbucketAPIStandin(ApiStandin):
    """`token` is an access token (Bearer) or `user:app-password` (basic)."""

    _PATH = re.compile(r"^/2\.0/repositories/([^/]+)/([^/]+)/commit/([^/]+)/statuses/build/?$")

    def __init__(self, token: str = "bb-access-token-standin", *, prefix: str = ""):
        super().__init__(token, prefix)
        self.current: dict[tuple, str] = {}     # (repo, sha, key) -> state

    @property
    def api_url(self) -> str:
        return f"{self.url}/2.0"

    def _authorized(self, header: str) -> bool:
        if ":" in self.token:
            return header == "Basic " + base64.b64encode(self.token.encode()).decode()
        return header == f"Bearer {self.token}"

    def handle(self, h, rec):
        path = rec.path[len(self.prefix):] if rec.path.startswith(self.prefix + "/") else None
        m = self._PATH.match(path or "")
        if rec.method != "POST" or m is None:
            self._problem(f"{rec.method} {rec.path}: not the build status endpoint")
            return 404, _error("Resource not found"), {}
        workspace, slug, sha = (unquote(g) for g in m.groups())
        if not self._authorized(rec.headers.get("authorization", "")):
            self._problem(f"{rec.path}: bad Authorization header")
            return 401, _error("Unauthorized"), {}
        doc = self._json(rec)
        if doc is None:
            self._problem(f"{rec.path}: body is not a JSON object")
            return 400, _error("Bad request"), {}
        missing = [k for k in ("key", "state", "url") if not doc.get(k)]
        if missing or doc.get("state") not in BITBUCKET_STATES:
            self._problem(f"{rec.path}: missing {missing} or state {doc.get('state')!r}")
            return 400, _error(f"{', '.join(missing) or 'state'}: This field is required."), {}
        unknown = set(doc) - {"key", "state", "url", "name", "description", "refname", "type"}
        if unknown:
            self._problem(f"{rec.path}: unknown fields {sorted(unknown)}")
        repo = f"{workspace}/{slug}"
        self.current[(repo, sha, doc["key"])] = doc["state"]
        self.statuses.append(Posted(repo=repo, sha=sha, state=doc["state"], context=doc["key"],
                                    description=doc.get("description", ""),
                                    target_url=doc["url"], ref=doc.get("refname")))
        return 201, {"type": "build", "key": doc["key"], "state": doc["state"],
                     "name": doc.get("name", ""), "url": doc["url"],
                     "description": doc.get("description", "")}, {}


def _error(message: str) -> dict:
    return {"type": "error", "error": {"message": message}}
