"""A Jenkins stand-in for tests: a real HTTP server on 127.0.0.1 that answers as Jenkins core does
on the wire for everything the bridge uses (crumbs, basic auth with API tokens, folders, build
requests, the queue, builds, 303 merges, 400/401/403/404/409/503, slow answers).

Input: jobs, users and modes set by the test. Output: HTTP answers, plus `requests`, a record of
every request (method, path, query, headers, body) for assertions. Time inside the stand-in is
`now()`, which tests move with `advance(seconds)`, so queue and build progress is deterministic.
Here: the test controls, the queue and the routes; its model and JSON in jenkins_model.py, the
HTTP server and handler in jenkins_wire.py.
"""
from __future__ import annotations

import base64
import hmac
import re
import secrets
import threading
import time
from urllib.parse import parse_qs, unquote, urlsplit

from helpers.standins.http import ServesHTTP
from helpers.standins.jenkins_model import (JenkinsDocuments, QueueItem, Recorded, StandinBuild,
                                            StandinJob, apply_tree)
from helpers.standins.jenkins_wire import VERSION, Handler, Server, page

__all__ = ["CRUMB_FIELD", "VERSION", "JenkinsStandin", "QueueItem", "Recorded", "StandinBuild",
           "StandinJob"]

CRUMB_FIELD = "Jenkins-Crumb"
_DELAY = re.compile(r"^(\d+)(sec)?$")
#: Query parameters Jenkins reads itself; they never become build parameters.
_CONTROL = ("token", "delay", "cause", "json", "Submit")


class JenkinsStandin(JenkinsDocuments, ServesHTTP):
    """Start with `start()`, stop with `stop()`; `start()` after `stop()` binds the same port again."""

    def __init__(self, *, users: dict[str, str] | None = None, readers: dict[str, str] | None = None,
                 quiet_period: float = 5.0, build_duration: float = 0.0, expire_after: float = 300.0,
                 crumbs: bool = True, crumb_exempt_api_tokens: bool = False):
        #: user -> API token, with Overall/Read, Job/Read and Job/Build.
        self.users = dict(users if users is not None else {"bridge": "11d8c3a0f6b24e0c9e1b5a7f2c4d6e80"})
        #: user -> API token, with read permissions only (a build request answers 403).
        self.readers = dict(readers or {})
        self.quiet_period = quiet_period      # Jenkins' default quiet period is 5 s
        self.build_duration = build_duration
        self.expire_after = expire_after      # queue items vanish 5 min after leaving the queue
        self.crumbs = crumbs
        # Jenkins 2.96+ does not check crumbs on API-token requests; the default here checks them,
        # so a test sees that the client fetches and sends one.
        self.crumb_exempt_api_tokens = crumb_exempt_api_tokens
        self.restarting = False               # every request answers 503 "restarting"
        self.slow = 0.0                       # seconds to wait before answering each request
        self.requests: list[Recorded] = []
        self.root: dict = {}                  # folder tree: name -> dict (folder) | StandinJob
        self.queue: dict[int, QueueItem] = {}
        self._next_queue_id = 1
        self._offset = 0.0
        self._lock = threading.RLock()
        self._crumbs: dict[str, str] = {}
        self._stopping = threading.Event()
        self.port = 0

    # --- test controls ---------------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the stand-in's clock (usable as the adapter's injected `sleep`). The queue moves
        with it, as Jenkins' own queue maintenance does: items start, left items vanish."""
        with self._lock:
            self._offset += seconds
            self._tick()

    def add_job(self, full_name: str, parameters=None, *, result: str = "SUCCESS",
                build_token: str | None = None, disabled: bool = False) -> StandinJob:
        """`parameters`: None (not parameterized), a list of names, or a dict name -> default."""
        if isinstance(parameters, (list, tuple)):
            parameters = {p: "" for p in parameters}
        job = StandinJob(full_name, parameters, result, build_token, disabled)
        with self._lock:
            node = self.root
            *folders, short = full_name.split("/")
            for f in folders:
                node = node.setdefault(f, {})
            node[short] = job
        return job

    def remove_job(self, full_name: str) -> None:
        with self._lock:
            node = self.root
            *folders, short = full_name.split("/")
            for f in folders:
                node = node[f]
            del node[short]

    def job(self, full_name: str) -> StandinJob:
        node = self.root
        for part in full_name.split("/"):
            node = node[part]
        return node

    def cancel(self, queue_id: int) -> None:
        with self._lock:
            item = self.queue[queue_id]
            item.cancelled, item.left_at = True, self.now()

    def peak_running(self) -> int:
        """The most builds that were running at one moment (stopped builds end when stopped)."""
        with self._lock:
            self._tick()
            edges = sorted((t, d) for job in self._jobs() for b in job.builds.values()
                           for t, d in ((b.started, 1), (b.finish_at, -1)) if b.finish_at > b.started)
        peak = running = 0
        for _, delta in edges:      # an end sorts before a start at the same moment
            running += delta
            peak = max(peak, running)
        return peak

    def builds(self) -> list[StandinBuild]:
        """Every build of every job, oldest first."""
        with self._lock:
            self._tick()
            return sorted((b for job in self._jobs() for b in job.builds.values()),
                          key=lambda b: (b.started, b.queue_id))

    def _jobs(self):
        stack = [self.root]
        while stack:
            for child in stack.pop().values():
                if isinstance(child, dict):
                    stack.append(child)
                else:
                    yield child

    def posts(self) -> list[Recorded]:
        """Build requests (POSTs) received, in order."""
        return [r for r in self.requests if r.method == "POST"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> "JenkinsStandin":
        self._stopping.clear()
        return super().start()

    def stop(self) -> None:
        self._stopping.set()      # slow answers give up at once
        super().stop()

    # --- Jenkins behaviour -----------------------------------------------------------------

    def _tick(self) -> None:
        """Let time act: waiting items whose quiet period passed start a build; old items vanish."""
        now = self.now()
        for item in list(self.queue.values()):
            if item.left_at is None and now >= item.ready_at:
                job, at = item.job, item.ready_at   # it started when due, not when first asked
                build = StandinBuild(job.next_build, job, item.id, item.params, at,
                                     at + self.build_duration, job.result)
                job.builds[build.number] = build
                job.next_build += 1
                item.build, item.left_at = build, at
            if item.left_at is not None and now >= item.left_at + self.expire_after:
                del self.queue[item.id]

    def _find(self, parts: list[str]):
        """Walk /job/a/job/b/... -> (node, full name, rest of the path) or None if a name is unknown."""
        node, names = self.root, []
        while len(parts) >= 2 and parts[0] == "job":
            if not isinstance(node, dict) or parts[1] not in node:
                return None
            node = node[parts[1]]
            names.append(parts[1])
            parts = parts[2:]
        return node, "/".join(names), parts

    def _build(self, h: Handler, job: StandinJob, full_name: str, action: str, query, user) -> None:
        """POST /job/.../build or /buildWithParameters: queue a build, merge, or refuse."""
        token = (query.get("token") or [None])[0]
        if job.build_token is not None and token is not None:
            if not hmac.compare_digest(token.encode(), job.build_token.encode()):
                return h.error_page(403, "Invalid token provided")
        elif user in self.readers:
            return h.error_page(403, f"{user} is missing the Job/Build permission")
        if job.disabled:
            return h.error_page(409, f"{full_name} is not buildable")
        sent = {k: v[-1] for k, v in query.items() if k not in _CONTROL}
        if action == "build" and job.parameters is not None:
            # Stapler's getSubmittedForm(): no `json` form field; which words depend on whether the
            # request carried any parameter at all (delay, token, ...). It answers with sendError,
            # which Jetty renders, not Jenkins. Nothing is queued.
            return h.jetty_error(400, "This page expects a form submission" if query
                                 else "Nothing is submitted")
        if action == "buildWithParameters" and job.parameters is None:
            return h.error_page(400, f"{full_name} is not parameterized")
        params, dropped = {}, []
        if job.parameters is not None:
            # buildWithParameters: each defined parameter not sent takes its default.
            params = {k: sent.get(k, default) for k, default in job.parameters.items()}
            dropped = [k for k in sent if k not in job.parameters]
        delay = self.quiet_period
        m = _DELAY.match((query.get("delay") or [""])[0])
        if m:
            delay = float(m.group(1))
        for item in self.queue.values():
            # Jenkins 2.308+: an identical request while the first waits is merged into it.
            if item.job is job and item.left_at is None and item.params == params:
                return h.answer(303, b"", {"Location": f"{self.url}queue/item/{item.id}/"})
        now = self.now()
        item = QueueItem(self._next_queue_id, job, params, dropped, user, now, now + delay)
        self.queue[item.id] = item
        self._next_queue_id += 1
        h.answer(201, b"", {"Location": f"{self.url}queue/item/{item.id}/"})

    def _cancel_item(self, h: Handler, query) -> None:
        """POST /queue/cancelItem?id=N, as Jenkins core's Queue.doCancelItem: 204 for an item
        still in the queue, 404 "Provided id (N) not found" for one that left it (or never was)."""
        raw = (query.get("id") or [""])[0]
        item = self.queue.get(int(raw)) if raw.isdigit() else None
        if item is None or item.left_at is not None:
            return h.error_page(404, f"Provided id ({raw}) not found")
        item.cancelled, item.left_at = True, self.now()
        h.answer(204, b"")

    def _stop(self, h: Handler, job: StandinJob, number: int) -> None:
        """POST /job/.../N/stop, as Run.doStop: a running build is aborted (result ABORTED); a
        finished one is left as it is; either way a 302 back to the build's page."""
        build = job.builds.get(number)
        if build is None:
            return h.error_page(404, "Not Found")
        now = self.now()
        if now < build.finish_at:
            build.finish_at, build.result = max(now, build.started), "ABORTED"
        h.answer(302, b"", {"Location": f"{self._job_url(job.full_name)}{number}/"})

    def handle(self, h: Handler) -> None:
        split = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        query = parse_qs(split.query, keep_blank_values=True)
        if h.command == "POST" and "form-urlencoded" in (h.headers.get("Content-Type") or ""):
            for k, v in parse_qs(body.decode(), keep_blank_values=True).items():
                query.setdefault(k, []).extend(v)
        record = Recorded(h.command, split.path, query, {k.lower(): v for k, v in h.headers.items()}, body)
        with self._lock:
            self.requests.append(record)
        h.record = record
        if self.slow and self._stopping.wait(self.slow):
            return
        if self.restarting:
            return h.answer(503, page("Jenkins", "<h1>Please wait while Jenkins is restarting</h1>"
                                                  "<p>Your browser will reload automatically when Jenkins is ready.</p>"))
        user, failure = self._authenticate(h)
        if failure:
            return failure()
        if h.command == "POST" and self.crumbs and not self.crumb_exempt_api_tokens:
            crumb = h.headers.get(CRUMB_FIELD) or ""
            expected = self._crumbs.get(user, "")
            if not expected or not hmac.compare_digest(crumb.encode(), expected.encode()):
                return h.error_page(403, "No valid crumb was included in the request")
        with self._lock:
            self._tick()
            self._route(h, split.path, query, user)

    def _authenticate(self, h):
        auth = h.headers.get("Authorization") or ""
        if not auth.startswith("Basic "):
            return None, lambda: h.error_page(403, "Authentication required", {"X-You-Are-Authenticated-As": "anonymous"})
        try:
            user, _, token = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            user, token = "", ""
        known = self.users.get(user) or self.readers.get(user)
        if known is None or not hmac.compare_digest(token.encode(), known.encode()):
            return None, lambda: h.error_page(401, f"Invalid password/token for user: {user}",
                                              {"WWW-Authenticate": 'Basic realm="Jenkins"'})
        return user, None

    def _route(self, h: Handler, path: str, query, user: str) -> None:
        parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
        if h.command == "GET" and parts == ["api", "json"]:
            return h.json({"_class": "hudson.model.Hudson", "mode": "NORMAL", "nodeName": "",
                           "useCrumbs": self.crumbs, "url": self.url, "jobs": self._children(self.root, "")})
        if h.command == "GET" and parts == ["crumbIssuer", "api", "json"]:
            if not self.crumbs:
                return h.error_page(404, "Not Found")
            crumb = self._crumbs.setdefault(user, secrets.token_hex(16))
            return h.json({"_class": "hudson.security.csrf.DefaultCrumbIssuer", "crumb": crumb,
                           "crumbRequestField": CRUMB_FIELD})
        if h.command == "GET" and parts == ["queue", "api", "json"]:
            return h.json({"_class": "hudson.model.Queue", "items": [
                self._queue_json(i) for i in self.queue.values() if i.left_at is None]})
        if h.command == "GET" and len(parts) == 5 and parts[:2] == ["queue", "item"] and parts[3:] == ["api", "json"]:
            item = self.queue.get(int(parts[2])) if parts[2].isdigit() else None
            return h.json(self._queue_json(item)) if item else h.error_page(404, "Not Found")
        if h.command == "POST" and parts == ["queue", "cancelItem"]:
            return self._cancel_item(h, query)
        found = self._find(parts) if parts[:1] == ["job"] else None
        if found is None:
            return h.error_page(404, "Not Found")
        node, full_name, rest = found
        if h.command == "GET" and rest == ["api", "json"]:
            doc = self._job_json(node, full_name)
            tree = (query.get("tree") or [None])[0]
            if tree is not None and isinstance(node, StandinJob):
                # `tree` reaches as deep as it names: builds come whole, then are cut to the tree.
                doc["builds"] = [self._build_json(node.builds[n]) for n in sorted(node.builds, reverse=True)]
            return h.json(apply_tree(doc, tree) if tree is not None else doc)
        if isinstance(node, StandinJob):
            if h.command == "POST" and rest in (["build"], ["buildWithParameters"]):
                return self._build(h, node, full_name, rest[0], query, user)
            if h.command == "POST" and len(rest) == 2 and rest[0].isdigit() and rest[1] == "stop":
                return self._stop(h, node, int(rest[0]))
            if h.command == "GET" and len(rest) == 1 and rest[0].isdigit() and int(rest[0]) in node.builds:
                return h.answer(200, page(f"{full_name} #{rest[0]}", f"<h1>Build #{rest[0]}</h1>"))
            if h.command == "GET" and len(rest) == 3 and rest[0].isdigit() and rest[1:] == ["api", "json"]:
                build = node.builds.get(int(rest[0]))
                return h.json(self._build_json(build)) if build else h.error_page(404, "Not Found")
        h.error_page(404, "Not Found")


JenkinsStandin.server_class = Server
JenkinsStandin.handler_class = Handler
