"""A Gitea (and Forgejo) REST API stand-in for tests: a real HTTP server on 127.0.0.1 answering
the commit status endpoint (`POST /api/v1/repos/{owner}/{repo}/statuses/{sha}`) and a pull
request's (`GET /api/v1/repos/{owner}/{repo}/pulls/{index}`, those `add_pull` made) as Gitea's API
docs describe them: `Authorization: token <token>`; a JSON `CreateStatusOption` (state pending,
success, error, failure or warning; target_url, description, context), 201 with the status; a
`PullRequest` (number, state, merged, head/base `PRBranchInfo`: label, ref, sha, repo_id, repo).

Input: the token it accepts, the pull requests it knows and answers scripted by the test.
Output: HTTP answers, `statuses`, `requests`, `problems` (contract violations: a bad state, an
unknown field, a missing token).
"""
from __future__ import annotations

import re
from urllib.parse import unquote

from helpers.standins.github import ApiStandin, Posted

GITEA_STATES = ("pending", "success", "error", "failure", "warning")
#: Gitea's answer for what is not there (or not visible to the token): 404 with this message.
NOT_FOUND = {"errors": None, "message": "The target couldn't be found.", "url": "/api/swagger"}


class GiteaAPIStandin(ApiStandin):
    """Checks: POST, `/api/v1/repos/<owner>/<repo>/statuses/<sha>`, `Authorization: token`,
    JSON with state/target_url/description/context; answers 201 (401 bad token, 422 bad state).
    GET `/api/v1/repos/<owner>/<repo>/pulls/<index>`: the pull request (401 bad token, 404 an
    index it does not know)."""

    _PATH = re.compile(r"^/api/v1/repos/([^/]+)/([^/]+)/statuses/([^/]+)$")
    _PULL = re.compile(r"^/api/v1/repos/([^/]+)/([^/]+)/pulls/([0-9]+)$")

    def __init__(self, token: str = "gitea-standin-token-000000", *, prefix: str = ""):
        super().__init__(token, prefix)
        self._next_id = 1
        self.pulls: dict[tuple[str, int], dict] = {}     # (owner/repo, index) -> GET pulls/{index}

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v1"

    def add_pull(self, repo: str, number: int, head_sha: str, *, head_ref: str = "feature",
                 base_ref: str = "main", head_repo: str | None = None, state: str = "open",
                 merged: bool = False, repo_ids: bool = True) -> dict:
        """A pull request `GET /repos/{repo}/pulls/{number}` answers, in Gitea's `PullRequest`
        shape (modules/structs/pull.go). `head_repo=""`: the head repository was deleted (Gitea
        then sends `repo_id: 0` and `repo: null`). `repo_ids=False`: no `repo_id`s, as before
        Gitea 1.12. Returns the document, for a test to change."""
        head_repo = repo if head_repo is None else head_repo
        ids: dict[str, int] = {}

        def repository(full_name: str) -> dict | None:
            if not full_name:
                return None
            ids.setdefault(full_name.lower(), 40000 + len(ids))
            owner, name = full_name.split("/", 1)
            return {"id": ids[full_name.lower()], "owner": {"login": owner, "username": owner},
                    "name": name, "full_name": full_name, "private": False, "fork": full_name != repo,
                    "html_url": f"{self.url}/{full_name}", "clone_url": f"{self.url}/{full_name}.git",
                    "ssh_url": f"git@127.0.0.1:{full_name}.git", "default_branch": "main"}

        base, head = repository(repo), repository(head_repo)
        doc = {
            "id": 60000 + number, "url": f"{self.url}/{repo}/pulls/{number}", "number": number,
            "user": {"login": "contributor", "username": "contributor"}, "title": "Fix", "body": "",
            "labels": [], "milestone": None, "assignee": None, "assignees": None,
            "requested_reviewers": None, "state": state, "is_locked": False, "comments": 1,
            "html_url": f"{self.url}/{repo}/pulls/{number}",
            "diff_url": f"{self.url}/{repo}/pulls/{number}.diff",
            "patch_url": f"{self.url}/{repo}/pulls/{number}.patch", "mergeable": not merged,
            "merged": merged, "merged_at": "2024-03-01T10:00:00Z" if merged else None,
            "merge_commit_sha": "f" * 40 if merged else None, "merged_by": None,
            "allow_maintainer_edit": False,
            "base": {"label": base_ref, "ref": base_ref, "sha": "b" * 40, "repo_id": base["id"], "repo": base},
            "head": {"label": head_ref, "ref": head_ref, "sha": head_sha,
                     "repo_id": head["id"] if head else 0, "repo": head},
            "merge_base": "c" * 40, "due_date": None, "created_at": "2024-03-01T09:00:00Z",
            "updated_at": "2024-03-01T10:00:00Z", "closed_at": None if state == "open" else "2024-03-01T10:00:00Z",
            "pin_order": 0}
        if not repo_ids:
            del doc["base"]["repo_id"], doc["head"]["repo_id"]
        with self._lock:
            self.pulls[(repo, number)] = doc
        return doc

    def handle(self, h, rec):
        path = rec.path[len(self.prefix):] if rec.path.startswith(self.prefix + "/") else None
        pull = self._PULL.match(path or "")
        if rec.method == "GET" and pull is not None:
            return self._get_pull(rec, f"{unquote(pull[1])}/{unquote(pull[2])}", int(pull[3]))
        m = self._PATH.match(path or "")
        if rec.method != "POST" or m is None:
            self._problem(f"{rec.method} {rec.path}: not the statuses endpoint")
            return 404, {"message": "Not Found"}, {}
        owner, repo, sha = m.groups()
        if not self._authorized(rec):
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

    def _authorized(self, rec) -> bool:
        if rec.headers.get("authorization") in (f"token {self.token}", f"Bearer {self.token}"):
            return True
        self._problem(f"{rec.method} {rec.path}: bad Authorization header")
        return False

    def _get_pull(self, rec, repo: str, number: int):
        if not self._authorized(rec):
            return 401, {"message": "token is required"}, {}
        if rec.body:
            self._problem(f"GET {rec.path}: a body")
        doc = self.pulls.get((repo, number))
        if doc is None:
            return 404, NOT_FOUND, {}
        return 200, doc, {}
