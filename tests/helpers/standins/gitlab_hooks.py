"""GitLab's project hooks and refs as its REST docs describe them, for the API stand-in: hooks that
deliver pushes with `X-Gitlab-Token` and an `Idempotency-Key` to a URL (the bridge) and log every
attempt; the hook events API (`GET /projects/:id/hooks/:hook_id/events`, 17.3+: newest first,
`page`/`per_page` pages with X-Next-Page and a Link header, each event with its request headers
and body and its `created_at`), resend (`POST .../events/:id/resend`, 17.4+: 201, sent a moment
later, 5 a minute per hook, then 429), `repository/branches` and `repository/tags`.

`version` (17.3 or 17.4) says whether resend exists (17.3: 404). Tokens: the stand-in's own is a
Maintainer's with `api`; `limited` ones get 403 insufficient_scope from hook endpoints; a hook
made `visible=False`, or an unknown id, is 404; answers carry RateLimit-* headers.
"""
from __future__ import annotations

import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import parse_qs, quote, unquote, urlsplit

import requests

NOT_FOUND = {"message": "404 Not found"}
INSUFFICIENT = {"error": "insufficient_scope",
                "error_description": "The request requires higher privileges than provided by the access token.",
                "scope": "api"}


@dataclass
class Event:
    id: int
    headers: dict
    data: dict
    status: str          # "200", "502", "internal error"
    created_at: float = field(default_factory=time.time)


@dataclass
class Hook:
    id: int
    url: str
    token: str
    visible: bool = True
    events: list[Event] = field(default_factory=list)
    resends: list[float] = field(default_factory=list)


class GitLabHooks:
    """The hooks and refs part of `GitLabAPIStandin` (set as its `hooks`)."""

    _ids = itertools.count(500)

    def __init__(self, api, *, limited=(), version: str = "17.4"):
        self.api = api
        self.limited = set(limited)
        self.version = version
        self.hooks: dict[tuple[str, int], Hook] = {}
        self.branches: dict[str, dict[str, str]] = {}
        self.tags: dict[str, dict[str, tuple[str, str]]] = {}
        self.resent: list[str] = []           # Idempotency-Keys sent again, in order
        self._lock = threading.Lock()
        self._sent = threading.Condition(self._lock)
        self._threads: list[threading.Thread] = []

    def add_hook(self, project: str, url: str, token: str, *, visible: bool = True) -> int:
        hook = Hook(next(self._ids), url, token, visible)
        self.hooks[(project, hook.id)] = hook
        return hook.id

    def push(self, project: str, payload: dict, *, hook_id: int, event: str = "Push Hook") -> Event:
        """A push on the host: its ref moves, then the hook delivers (logged whatever the answer)."""
        ref, after = payload["ref"], payload["after"]
        table = self.tags if ref.startswith("refs/tags/") else self.branches
        value = (after, payload.get("checkout_sha") or after) if table is self.tags else after
        table.setdefault(project, {})[ref.split("/", 2)[2]] = value
        headers = {"Content-Type": "application/json", "X-Gitlab-Event": event,
                   "Idempotency-Key": str(uuid.uuid4()), "X-Gitlab-Event-UUID": str(uuid.uuid4()),
                   "User-Agent": "GitLab/17.4.0"}
        return self._deliver(self.hooks[(project, hook_id)], headers, payload)

    def retry(self, project: str, hook_id: int, event: Event) -> Event:
        """GitLab retries a delivery by itself (after a timeout): the same Idempotency-Key."""
        headers = {k: v for k, v in event.headers.items() if k != "X-Gitlab-Token"}
        return self._deliver(self.hooks[(project, hook_id)], headers, event.data)

    def wait_resent(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        with self._sent:
            while len(self.resent) < count:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{len(self.resent)} of {count} resent")
                self._sent.wait(0.1)

    def join(self) -> None:
        for t in list(self._threads):
            t.join(timeout=20)

    def _deliver(self, hook: Hook, headers: dict, payload: dict, resend: bool = False) -> Event:
        try:
            code = str(requests.post(hook.url, data=json.dumps(payload).encode(),
                                     headers={**headers, "X-Gitlab-Token": hook.token}, timeout=10).status_code)
        except requests.RequestException:
            code = "internal error"
        event = Event(next(self._ids), {**headers, "X-Gitlab-Token": "[REDACTED]"}, payload, code)
        with self._sent:
            hook.events.append(event)
            if resend:
                self.resent.append(headers["Idempotency-Key"])
            self._sent.notify_all()
        return event

    # --- the API -------------------------------------------------------------------------

    def handle(self, rec, path: str):
        split = urlsplit(path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        routes = (
            (r"^/api/v4/projects/([^/]+)/hooks/(\d+)/events$", "GET", self._events),
            (r"^/api/v4/projects/([^/]+)/hooks/(\d+)/events/(\d+)/resend$", "POST", self._resend),
            (r"^/api/v4/projects/([^/]+)/repository/(branches|tags)$", "GET", self._refs),
        )
        for pattern, method, handler in routes:
            m = re.match(pattern, split.path)
            if m is None:
                continue
            token = rec.headers.get("private-token", "")
            if rec.method != method:
                return 404, NOT_FOUND, self._rate()
            if token != self.api.token and token not in self.limited:
                return 401, {"message": "401 Unauthorized"}, self._rate()
            if "/hooks/" in split.path and token in self.limited:
                return 403, INSUFFICIENT, self._rate()
            status, body, extra = handler(query, unquote(m.group(1)), *m.groups()[1:])
            return status, body, {**self._rate(), **extra}
        return None

    def _rate(self) -> dict:
        return {"RateLimit-Limit": "2000", "RateLimit-Remaining": "1999",
                "RateLimit-Reset": str(int(time.time()) + 60)}

    def _hook(self, project: str, hook_id: str) -> Hook | None:
        if not self.version >= "17.3":
            return None
        hook = self.hooks.get((project, int(hook_id)))
        return hook if hook is not None and hook.visible else None

    def _page(self, items: list, query: dict, path: str):
        per_page = min(int(query.get("per_page", 20)), 100)
        page = int(query.get("page", 1))
        chunk = items[(page - 1) * per_page:page * per_page]
        extra = {"X-Page": str(page), "X-Per-Page": str(per_page), "X-Total": str(len(items))}
        if page * per_page < len(items):
            extra["X-Next-Page"] = str(page + 1)
            extra["Link"] = f'<{self.api.url}{path}?page={page + 1}&per_page={per_page}>; rel="next"'
        return chunk, extra

    def _events(self, query, project, hook_id):
        hook = self._hook(project, hook_id)
        if hook is None:
            return 404, NOT_FOUND, {}
        with self._lock:
            events = sorted(hook.events, key=lambda e: e.id, reverse=True)
        chunk, extra = self._page(events, query, f"/api/v4/projects/{quote(project, safe='')}/hooks/{hook_id}/events")
        return 200, [{"id": e.id, "url": hook.url, "trigger": "push_hooks", "request_headers": e.headers,
                      "request_data": e.data, "response_headers": {}, "response_body": "",
                      "execution_duration": 0.01, "response_status": e.status,
                      "created_at": datetime.fromtimestamp(e.created_at, timezone.utc)
                      .strftime("%Y-%m-%dT%H:%M:%S.%fZ")} for e in chunk], extra

    def _resend(self, query, project, hook_id, event_id):
        hook = self._hook(project, hook_id)
        found = hook and next((e for e in hook.events if e.id == int(event_id)), None)
        if not found or self.version < "17.4":
            return 404, NOT_FOUND, {}
        now = time.monotonic()
        hook.resends = [t for t in hook.resends if now - t < 60]
        if len(hook.resends) >= 5:
            return 429, {"message": {"error": "This endpoint has been requested too many times. "
                                              "Try again later."}}, {"Retry-After": "60"}
        hook.resends.append(now)
        headers = {k: v for k, v in found.headers.items() if k != "X-Gitlab-Token"}
        t = threading.Thread(target=self._deliver, args=(hook, headers, found.data, True), daemon=True)
        self._threads.append(t)
        t.start()
        return 201, {}, {}

    def _refs(self, query, project, kind):
        if kind == "branches":
            items = [{"name": n, "commit": {"id": sha}, "protected": False}
                     for n, sha in sorted(self.branches.get(project, {}).items())]
        else:
            items = [{"name": n, "target": obj, "commit": {"id": commit}}
                     for n, (obj, commit) in sorted(self.tags.get(project, {}).items())]
        chunk, extra = self._page(items, query, f"/api/v4/projects/{quote(project, safe='')}/repository/{kind}")
        return 200, chunk, extra
