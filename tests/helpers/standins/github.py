"""A GitHub REST API stand-in for tests: a real HTTP server on 127.0.0.1 that answers the commit
status endpoint (`POST /repos/{owner}/{repo}/statuses/{sha}`) and a pull request's
(`GET /repos/{owner}/{repo}/pulls/{number}`, those `add_pull` made) as GitHub does on the wire.

Input: the token it accepts, an optional path prefix (GHES: /api/v3), the commits it knows, and
answers scripted by the test (403/422/429/500, slow answers for timeouts). Output: HTTP answers,
`statuses` (every status it accepted, in order), `requests` (everything received) and
`problems` (every way a request broke the API's contract: the tests assert there are none).
`stop()` then `start()` listens on the same port again: a git host that went down and came back.
"""
from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from helpers.standins.http import ServesHTTP

GITHUB_STATES = ("error", "failure", "pending", "success")


@dataclass
class Received:
    method: str
    path: str                       # raw, as sent (percent-encoding kept)
    headers: dict[str, str]         # lower-cased names
    body: bytes
    status: int = 0                 # what the stand-in answered
    received: float = field(default_factory=time.monotonic)


@dataclass
class Posted:
    """One accepted status, in the host's own words."""
    repo: str
    sha: str
    state: str
    context: str
    description: str = ""
    target_url: str | None = None
    ref: str | None = None          # GitLab only


@dataclass
class Scripted:
    status: int
    body: dict | str | None = None
    headers: dict = field(default_factory=dict)
    delay: float = 0.0              # seconds before answering (longer than the client's timeout)


class ApiStandin(ServesHTTP):
    """The server part shared by the GitHub and GitLab stand-ins: threads, script, records."""

    def __init__(self, token: str, prefix: str = ""):
        self.token = token
        self.prefix = prefix.rstrip("/")
        self.requests: list[Received] = []
        self.statuses: list[Posted] = []
        self.problems: list[str] = []
        self.port = 0
        self._script: list[Scripted] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    # --- test controls ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """What a source's `report: api_url:` names."""
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    def answer_next(self, status: int, body=None, *, headers: dict | None = None, times: int = 1,
                    delay: float = 0.0) -> None:
        """The next `times` requests get this answer instead of the normal one."""
        with self._lock:
            self._script += [Scripted(status, body, dict(headers or {}), delay)] * times

    def hang_next(self, seconds: float, times: int = 1) -> None:
        """The next requests are answered (normally) only after `seconds`: a client timeout."""
        self.answer_next(0, delay=seconds, times=times)

    def states(self, context: str | None = None, sha: str | None = None) -> list[str]:
        with self._lock:
            return [s.state for s in self.statuses
                    if (context is None or s.context == context) and (sha is None or s.sha == sha)]

    def wait_for(self, predicate, timeout: float = 20.0) -> list[Posted]:
        """Wait until predicate(statuses) holds; returns the statuses (or raises with them)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(list(self.statuses)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; statuses so far: {self.statuses}; "
                                         f"problems: {self.problems}")
                self._changed.wait(min(left, 0.2))
            return list(self.statuses)

    # --- the API ---------------------------------------------------------------------------

    def handle(self, h: "_Handler", rec: Received) -> tuple[int, dict, dict]:  # pragma: no cover
        raise NotImplementedError

    def _serve(self, h: "_Handler") -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        rec = Received(h.command, h.path, {k.lower(): v for k, v in h.headers.items()}, body)
        with self._lock:
            self.requests.append(rec)
            scripted = self._script.pop(0) if self._script else None
        if scripted is not None and scripted.delay:
            time.sleep(scripted.delay)
        if scripted is not None and scripted.status:
            status, doc, headers = scripted.status, scripted.body, scripted.headers
        else:
            with self._lock:
                status, doc, headers = self.handle(h, rec)
        rec.status = status
        payload = doc if isinstance(doc, (bytes, str)) else json.dumps({} if doc is None else doc)
        payload = payload.encode() if isinstance(payload, str) else payload
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json; charset=utf-8")
            h.send_header("Content-Length", str(len(payload)))
            for k, v in headers.items():
                h.send_header(k, str(v))
            h.end_headers()
            h.wfile.write(payload)
        except OSError:
            pass            # the client gave up (timeout): as a real server, carry on
        with self._changed:
            self._changed.notify_all()

    def _problem(self, message: str) -> None:
        self.problems.append(message)

    @staticmethod
    def _json(rec: Received):
        if not rec.headers.get("content-type", "").startswith("application/json"):
            return None
        try:
            doc = json.loads(rec.body)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None


class GitHubAPIStandin(ApiStandin):
    """Checks: POST, the path, `Authorization: Bearer <token>` (or `token <token>`), JSON with
    state/target_url/description/context; answers 201 like GitHub (422 for an unknown commit or
    a description over 140 characters, 401 for a bad token, 404 elsewhere)."""

    _PATH = re.compile(r"^/repos/([^/]+)/([^/]+)/statuses/([^/]+)$")
    _PULL = re.compile(r"^/repos/([^/]+)/([^/]+)/pulls/([0-9]+)$")

    def __init__(self, token: str = "ghp_standin0000000000000000000000000000", *, prefix: str = "",
                 known_shas: set[str] | None = None):
        super().__init__(token, prefix)
        self.known_shas = known_shas     # None: every commit exists
        self._next_id = 1
        self.pulls: dict[tuple[str, int], dict] = {}     # (owner/repo, number) -> GET pulls/N
        self.hooks = None                # github_hooks.GitHubHooks: hooks, delivery logs, refs

    def add_pull(self, repo: str, number: int, head_sha: str, *, head_ref: str = "feature",
                 base_ref: str = "main", head_repo: str | None = None, state: str = "open") -> None:
        """A pull request `GET /repos/{repo}/pulls/{number}` answers, in GitHub's shape."""
        head_repo = head_repo or repo
        with self._lock:
            self.pulls[(repo, number)] = {
                "url": f"{self.url}/repos/{repo}/pulls/{number}", "number": number, "state": state,
                "draft": False, "merged": False, "user": {"login": "contributor"},
                "head": {"label": f"{head_repo.split('/')[0]}:{head_ref}", "ref": head_ref, "sha": head_sha,
                         "repo": {"id": hash(head_repo) & 0xFFFFFF, "full_name": head_repo}},
                "base": {"label": f"{repo.split('/')[0]}:{base_ref}", "ref": base_ref, "sha": "b" * 40,
                         "repo": {"id": hash(repo) & 0xFFFFFF, "full_name": repo}}}

    def handle(self, h, rec):
        path = rec.path[len(self.prefix):] if rec.path.startswith(self.prefix + "/") else None
        if self.hooks is not None and path is not None:
            answer = self.hooks.handle(rec, path)
            if answer is not None:
                return answer
        pull = self._PULL.match(path or "")
        if rec.method == "GET" and pull is not None:
            return self._get_pull(rec, f"{pull[1]}/{pull[2]}", int(pull[3]))
        m = self._PATH.match(path or "")
        if rec.method != "POST" or m is None:
            self._problem(f"{rec.method} {rec.path}: not the statuses endpoint")
            return 404, {"message": "Not Found"}, {}
        owner, repo, sha = m.groups()
        auth = rec.headers.get("authorization", "")
        if auth not in (f"Bearer {self.token}", f"token {self.token}"):
            self._problem(f"{rec.path}: bad Authorization header")
            return 401, {"message": "Bad credentials",
                         "documentation_url": "https://docs.github.com/rest"}, {}
        doc = self._json(rec)
        if doc is None:
            self._problem(f"{rec.path}: body is not a JSON object")
            return 400, {"message": "Problems parsing JSON"}, {}
        errors = []
        if doc.get("state") not in GITHUB_STATES:
            errors.append({"resource": "Status", "field": "state", "code": "custom",
                           "message": "state is not included in the list"})
        for key in ("description", "context", "target_url"):
            if key in doc and not isinstance(doc[key], str):
                errors.append({"resource": "Status", "field": key, "code": "invalid"})
        if len(doc.get("description") or "") > 140:
            errors.append({"resource": "Status", "field": "description", "code": "custom",
                           "message": "description is too long (maximum is 140 characters)"})
        unknown = set(doc) - {"state", "target_url", "description", "context"}
        if unknown:
            self._problem(f"{rec.path}: unknown fields {sorted(unknown)}")
        if not re.fullmatch(r"[0-9a-f]{40}", sha):
            errors.append({"resource": "Status", "field": "sha", "code": "invalid"})
        if errors:
            self._problem(f"{rec.path}: {errors}")
            return 422, {"message": "Validation Failed", "errors": errors}, {}
        if self.known_shas is not None and sha not in self.known_shas:
            return 422, {"message": f"No commit found for SHA: {sha}"}, {}
        status = Posted(repo=f"{owner}/{repo}", sha=sha, state=doc["state"],
                        context=doc.get("context", "default"), description=doc.get("description", ""),
                        target_url=doc.get("target_url"))
        self.statuses.append(status)
        self._next_id += 1
        return 201, {"id": self._next_id, "state": status.state, "description": status.description,
                     "target_url": status.target_url, "context": status.context,
                     "url": f"{self.url}/repos/{owner}/{repo}/statuses/{sha}"}, {}

    def _get_pull(self, rec, repo: str, number: int):
        if rec.headers.get("authorization", "") not in (f"Bearer {self.token}", f"token {self.token}"):
            self._problem(f"{rec.path}: bad Authorization header")
            return 401, {"message": "Bad credentials"}, {}
        doc = self.pulls.get((repo, number))
        if doc is None:
            return 404, {"message": "Not Found",
                         "documentation_url": "https://docs.github.com/rest/pulls/pulls#get-a-pull-request"}, {}
        return 200, doc, {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.server.standin.connected(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.standin.disconnected(self.connection)

    def log_message(self, format, *args):
        pass

    def do_POST(self):
        self.server.standin._serve(self)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST


ApiStandin.handler_class = _Handler   # defined below the class that serves with it
