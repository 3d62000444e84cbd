"""A GitLab REST API stand-in for tests: a real HTTP server on 127.0.0.1 that answers the commit
status endpoint (`POST /api/v4/projects/{id}/statuses/{sha}`) as GitLab does on the wire.

Input: the token it accepts and answers scripted by the test (409/429/500, slow answers).
Output: HTTP answers, `statuses` (every status it accepted), `requests`, `problems` (contract
violations: the project path not URL-encoded, a bad state, a missing token). Posting the state a
status already has answers 400 "Cannot transition status", as GitLab does.
"""
from __future__ import annotations

import re
from urllib.parse import unquote

from helpers.standins.github import ApiStandin, Posted

GITLAB_STATES = ("pending", "running", "success", "failed", "canceled", "skipped")


class GitLabAPIStandin(ApiStandin):
    """Checks: POST, `/api/v4/projects/<url-encoded path or id>/statuses/<sha>`, `PRIVATE-TOKEN`
    (or `Authorization: Bearer`), JSON with state/name/ref/target_url/description; answers 201."""

    _PATH = re.compile(r"^/api/v4/projects/([^/]+)/statuses/([^/]+)$")

    def __init__(self, token: str = "glpat-standin000000000000", *, prefix: str = ""):
        super().__init__(token, prefix)
        self.current: dict[tuple, str] = {}    # (project, sha, name, ref) -> state
        self._next_id = 1
        self.hooks = None                      # gitlab_hooks.GitLabHooks: hooks, event logs, refs

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v4"

    def handle(self, h, rec):
        path = rec.path[len(self.prefix):] if rec.path.startswith(self.prefix + "/") else None
        if self.hooks is not None and path is not None:
            answer = self.hooks.handle(rec, path)
            if answer is not None:
                return answer
        m = self._PATH.match(path or "")
        if rec.method != "POST" or m is None:
            self._problem(f"{rec.method} {rec.path}: not the statuses endpoint (is the project "
                          "path URL-encoded?)")
            return 404, {"message": "404 Not Found"}, {}
        project, sha = unquote(m.group(1)), m.group(2)
        if rec.headers.get("private-token") != self.token \
                and rec.headers.get("authorization") != f"Bearer {self.token}":
            self._problem(f"{rec.path}: no valid PRIVATE-TOKEN")
            return 401, {"message": "401 Unauthorized"}, {}
        doc = self._json(rec)
        if doc is None:
            self._problem(f"{rec.path}: body is not a JSON object")
            return 400, {"error": "state is missing"}, {}
        state = doc.get("state")
        if state not in GITLAB_STATES:
            self._problem(f"{rec.path}: state {state!r}")
            return 400, {"error": "state does not have a valid value"}, {}
        unknown = set(doc) - {"state", "ref", "name", "context", "target_url", "description",
                              "coverage", "pipeline_id"}
        if unknown:
            self._problem(f"{rec.path}: unknown fields {sorted(unknown)}")
        if not re.fullmatch(r"[0-9a-f]{40}", sha):
            return 404, {"message": "404 References Not Found"}, {}
        name = doc.get("name") or doc.get("context") or "default"
        key = (project, sha, name, doc.get("ref"))
        if self.current.get(key) == state:
            event = {"pending": "enqueue", "running": "run", "success": "success", "failed": "drop",
                     "canceled": "cancel", "skipped": "skip"}[state]
            return 400, {"message": f"Cannot transition status via :{event} from :{state} "
                                    f"(Reason(s): Status cannot transition via \"{event}\")"}, {}
        self.current[key] = state
        self.statuses.append(Posted(repo=project, sha=sha, state=state, context=name,
                                    description=doc.get("description", ""),
                                    target_url=doc.get("target_url"), ref=doc.get("ref")))
        self._next_id += 1
        return 201, {"id": self._next_id, "sha": sha, "ref": doc.get("ref"), "status": state,
                     "name": name, "target_url": doc.get("target_url"),
                     "description": doc.get("description")}, {}
