"""GitHub's webhooks and refs as the REST docs describe them, for the API stand-in: a repository's
branches and tags, hooks that deliver signed pushes to a URL (the bridge) and log every attempt,
the delivery log (`GET .../hooks/{id}/deliveries`, newest first, `per_page` up to 100, cursor pages
in the Link header), redelivery (`POST .../deliveries/{id}/attempts`: 202, sent a moment later
with the same GUID), `git/matching-refs/{heads,tags}/` and `git/tags/{sha}` for annotated tags.

Tokens: the stand-in's own sees everything; `limited` tokens (contents only) get 403 from hook
endpoints; a hook made `visible=False`, or an unknown id, is 404; every answer carries GitHub's
rate-limit headers, and `rate_remaining = 0` answers 403 "API rate limit exceeded".
"""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import requests

FORBIDDEN = {"message": "Resource not accessible by personal access token",
             "documentation_url": "https://docs.github.com/rest/webhooks/repo-deliveries"}
NOT_FOUND = {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}


@dataclass
class Attempt:
    id: int
    guid: str
    event: str
    body: bytes
    delivered_at: float
    status_code: int
    redelivery: bool = False

    def item(self) -> dict:
        return {"id": self.id, "guid": self.guid, "event": self.event, "action": None,
                "delivered_at": datetime.fromtimestamp(self.delivered_at, timezone.utc)
                .strftime("%Y-%m-%dT%H:%M:%SZ"),
                "redelivery": self.redelivery, "duration": 0.01,
                "status": "OK" if 200 <= self.status_code < 300 else
                ("failed to connect to host" if self.status_code == 0 else "Invalid HTTP Response: "
                 f"{self.status_code}"),
                "status_code": self.status_code, "installation_id": None, "repository_id": 1}


@dataclass
class Hook:
    id: int
    url: str
    secret: str
    visible: bool = True
    attempts: list[Attempt] = field(default_factory=list)


class GitHubHooks:
    """The hooks and refs part of `GitHubAPIStandin` (set as its `hooks`)."""

    _ids = itertools.count(1000)

    def __init__(self, api, *, limited=()):
        self.api = api
        self.limited = set(limited)
        self.hooks: dict[tuple[str, int], Hook] = {}      # ("repo:acme/api" | "org:acme", id)
        self.heads: dict[str, dict[str, str]] = {}        # repo -> branch -> sha
        self.tags: dict[str, dict[str, tuple[str, str]]] = {}   # repo -> tag -> (object sha, commit)
        self.rate_remaining = 5000
        self.redeliveries: list[str] = []                 # GUIDs redelivered, in order
        self.release = threading.Event()                  # cleared: redeliveries wait for it
        self.release.set()
        self._lock = threading.Lock()
        self._sent = threading.Condition(self._lock)
        self._threads: list[threading.Thread] = []

    # --- test controls ---------------------------------------------------------------------

    def add_hook(self, url: str, secret: str, *, repo: str | None = None, org: str | None = None,
                 visible: bool = True) -> int:
        hook = Hook(next(self._ids), url, secret, visible)
        self.hooks[(f"repo:{repo}" if repo else f"org:{org}", hook.id)] = hook
        return hook.id

    def push(self, repo: str, body: bytes, *, hook_id: int, event: str = "push",
             branch: str | None = None, tag: str | None = None, after: str | None = None) -> Attempt:
        """A push on the host: the ref moves, then the hook delivers `body` (logged, whatever
        the bridge answers)."""
        if branch:
            self.heads.setdefault(repo, {})[branch] = after
        if tag:
            self.tags.setdefault(repo, {})[tag] = (after, after)
        hook = self._hook(repo, hook_id)
        return self._deliver(hook, str(uuid.uuid4()), event, body)

    def move(self, repo: str, *, branch: str | None = None, tag: str | None = None, sha: str,
             commit: str | None = None) -> None:
        """A ref moves with no webhook at all (GitHub sends none for over 3 tags at once)."""
        if branch:
            self.heads.setdefault(repo, {})[branch] = sha
        if tag:
            self.tags.setdefault(repo, {})[tag] = (sha, commit or sha)

    def redeliver_by_hand(self, repo: str, hook_id: int, attempt: Attempt) -> None:
        """Someone clicks "Redeliver" on the hook's page (as the API does it)."""
        self._redeliver({}, f"repos/{repo}", str(hook_id), str(attempt.id))

    def wait_sent(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        with self._sent:
            while len(self.redeliveries) < count:
                if not self._sent.wait(max(0.0, deadline - time.monotonic())) and time.monotonic() > deadline:
                    raise AssertionError(f"{len(self.redeliveries)} of {count} redeliveries sent")

    def join(self) -> None:
        for t in list(self._threads):
            t.join(timeout=20)

    # --- delivering ----------------------------------------------------------------------

    def _hook(self, repo: str, hook_id: int) -> Hook:
        hook = self.hooks.get((f"repo:{repo}", hook_id))
        if hook is None:
            hook = self.hooks[(f"org:{repo.split('/')[0]}", hook_id)]
        return hook

    def _deliver(self, hook: Hook, guid: str, event: str, body: bytes, redelivery: bool = False):
        digest = hmac.new(hook.secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-GitHub-Event": event,
                   "X-GitHub-Delivery": guid, "X-Hub-Signature-256": f"sha256={digest}",
                   "X-GitHub-Hook-ID": str(hook.id), "User-Agent": "GitHub-Hookshot/standin"}
        try:
            code = requests.post(hook.url, data=body, headers=headers, timeout=10).status_code
        except requests.RequestException:
            code = 0
        attempt = Attempt(next(self._ids), guid, event, body, time.time(), code, redelivery)
        with self._sent:
            hook.attempts.append(attempt)
            if redelivery:
                self.redeliveries.append(guid)
            self._sent.notify_all()
        return attempt

    # --- the API -------------------------------------------------------------------------

    def handle(self, rec, path: str):
        """(status, body, headers) for the hook and ref endpoints, None for other paths."""
        split = urlsplit(path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        routes = (
            (r"^/(repos/[^/]+/[^/]+|orgs/[^/]+)/hooks/(\d+)/deliveries$", "GET", self._list),
            (r"^/(repos/[^/]+/[^/]+|orgs/[^/]+)/hooks/(\d+)/deliveries/(\d+)/attempts$", "POST",
             self._redeliver),
            (r"^/repos/([^/]+/[^/]+)/git/matching-refs/(heads|tags)/?$", "GET", self._refs),
            (r"^/repos/([^/]+/[^/]+)/git/tags/([0-9a-f]{40})$", "GET", self._tag),
        )
        for pattern, method, handler in routes:
            m = re.match(pattern, split.path)
            if m is None:
                continue
            auth = rec.headers.get("authorization", "")
            token = auth.split(" ", 1)[1] if " " in auth else ""
            if rec.method != method:
                return 404, NOT_FOUND, self._rate()
            if token != self.api.token and token not in self.limited:
                return 401, {"message": "Bad credentials"}, self._rate()
            if self.rate_remaining <= 0:
                return 403, {"message": "API rate limit exceeded for user ID 1."}, self._rate()
            self.rate_remaining -= 1
            hooks = "hooks" in split.path
            if hooks and token in self.limited:
                return 403, FORBIDDEN, self._rate()
            status, body, extra = handler(query, *m.groups())
            return status, body, {**self._rate(), **extra}
        return None

    def _rate(self) -> dict:
        return {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": str(max(0, self.rate_remaining)),
                "x-ratelimit-used": str(5000 - max(0, self.rate_remaining)),
                "x-ratelimit-reset": str(int(time.time()) + 3600), "x-ratelimit-resource": "core"}

    def _find(self, owner: str, hook_id: str) -> Hook | None:
        key = ("repo:" + owner[len("repos/"):] if owner.startswith("repos/")
               else "org:" + owner[len("orgs/"):], int(hook_id))
        hook = self.hooks.get(key)
        return hook if hook is not None and hook.visible else None

    def _list(self, query, owner, hook_id):
        hook = self._find(owner, hook_id)
        if hook is None:
            return 404, NOT_FOUND, {}
        per_page = min(int(query.get("per_page", 30)), 100)
        with self._lock:
            items = sorted(hook.attempts, key=lambda a: a.id, reverse=True)
        start = int(query["cursor"][3:]) if query.get("cursor", "").startswith("v1_") else 0
        page = items[start:start + per_page]
        extra = {}
        if start + per_page < len(items):
            base = f"{self.api.url}/{owner}/hooks/{hook_id}/deliveries"
            extra["Link"] = f'<{base}?per_page={per_page}&cursor=v1_{start + per_page}>; rel="next"'
        return 200, [a.item() for a in page], extra

    def _redeliver(self, query, owner, hook_id, attempt_id):
        hook = self._find(owner, hook_id)
        found = hook and next((a for a in hook.attempts if a.id == int(attempt_id)), None)
        if not found:
            return 404, NOT_FOUND, {}
        def later():
            self.release.wait(30)
            self._deliver(hook, found.guid, found.event, found.body, True)
        t = threading.Thread(target=later, daemon=True)
        self._threads.append(t)
        t.start()
        return 202, {}, {}

    def _refs(self, query, repo, kind):
        if kind == "heads":
            refs = [(f"refs/heads/{n}", sha, "commit") for n, sha in self.heads.get(repo, {}).items()]
        else:
            refs = [(f"refs/tags/{n}", sha, "commit" if sha == commit else "tag")
                    for n, (sha, commit) in self.tags.get(repo, {}).items()]
        return 200, [{"ref": ref, "node_id": "REF_standin", "url": f"{self.api.url}/repos/{repo}/git/{ref}",
                      "object": {"sha": sha, "type": type_, "url": ""}} for ref, sha, type_ in sorted(refs)], {}

    def _tag(self, query, repo, sha):
        for name, (obj, commit) in self.tags.get(repo, {}).items():
            if obj == sha:
                return 200, {"sha": sha, "tag": name, "object": {"sha": commit, "type": "commit"}}, {}
        return 404, NOT_FOUND, {}


def body_of(payload: dict) -> bytes:
    return json.dumps(payload).encode()
