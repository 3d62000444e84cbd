"""A Gitea (and Forgejo) REST API stand-in for tests: a real HTTP server on 127.0.0.1 answering
the commit status endpoint (`POST /api/v1/repos/{owner}/{repo}/statuses/{sha}`) as Gitea's API
docs describe it: `Authorization: token <token>`, a JSON `CreateStatusOption` (state pending,
success, error, failure or warning; target_url, description, context), 201 with the status.

Input: the token it accepts and answers scripted by the test. Output: HTTP answers, `statuses`,
`requests`, `problems` (contract violations: a bad state, an unknown field, a missing token).
"""
from __future__ import annotations

import re

from helpers.standins.github import ApiStandin, Posted

GITEA_STATES = ("pending", "success", "error", "failure", "warning")


class GiteaAPIStandin(ApiStandin):
    """Checks: POST, `/api/v1/repos/<owner>/<repo>/statuses/<sha>`, `Authorization: token`,
    JSON with state/target_url/description/context; answers 201 (401 bad token, 422 bad state)."""

    _PATH = re.compile(r"^/api/v1/repos/([^/]+)/([^/]+)/statuses/([^/]+)$")

    def __init__(self, token: str = "gitea-standin-token-000000", *, prefix: str = ""):
        super().__init__(token, prefix)
        self._next_id = 1

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v1"

    def handle(self, h, rec):
        path = rec.path[len(self.prefix):] if rec.path.startswith(self.prefix + "/") else None
        m = self._PATH.match(path or "")
        if rec.method != "POST" or m is None:
            self._problem(f"{rec.method} {rec.path}: not the statuses endpoint")
            return 404, {"message": "Not Found"}, {}
        owner, repo, sha = m.groups()
        if rec.headers.get("authorization") not in (f"token {self.token}", f"Bearer {self.token}"):
            self._problem(f"{rec.path}: bad Authorization header")
            return 401, {"message": "token is required"}, {}
        doc = self._json(rec)
        if doc is None:
            self._problem(f"{rec.path}: body is not a JSON object")
            return 422, {"message": "invalid JSON"}, {}
        state = doc.get("state")
        if state not in GITEA_STATES:
            self._problem(f"{rec.path}: state {state!r}")
            return 422, {"message": f"[State]: invalid commit status state {state!r}"}, {}
        unknown = set(doc) - {"state", "target_url", "description", "context"}
        if unknown:
            self._problem(f"{rec.path}: unknown fields {sorted(unknown)}")
        self.statuses.append(Posted(repo=f"{owner}/{repo}", sha=sha, state=state,
                                    context=doc.get("context", ""),
                                    description=doc.get("description", ""),
                                    target_url=doc.get("target_url")))
        self._next_id += 1
        return 201, {"id": self._next_id, "status": state, "context": doc.get("context", ""),
                     "description": doc.get("description", ""),
                     "target_url": doc.get("target_url", "")}, {}
