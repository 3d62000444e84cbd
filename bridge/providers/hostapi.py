"""Reconcile stage, the wire: the HTTP client every git host's REST API shares for reading hook
delivery logs and refs and asking for redeliveries (each host's `Reconcile` subclasses it).

Input: an API URL, a token, paths and query parameters. Output: decoded JSON with the response's
headers, or `ApiDenied` (401/403/404: the token or the hook; not worth repeating), `ApiRateLimited`
(with the wait the host asked for) or `ApiUnavailable` (network, 5xx). The token never appears in
a message.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Callable
from urllib.parse import urlsplit

from bridge.policies import MAX_RETRY_AFTER, retry_after
from bridge.providers.status import cap

if TYPE_CHECKING:
    import requests


class ApiError(Exception):
    """A host API call that failed; `status` is the HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status


class ApiDenied(ApiError):
    """401, 403 (not a rate limit) or 404: the token lacks a scope, or cannot see the hook."""


class ApiUnavailable(ApiError):
    """No answer, or a 5xx: try again at the next run."""


class ApiRateLimited(ApiError):
    """The host's rate limit: `wait` seconds until it resets (None: not said)."""

    def __init__(self, message: str, status: int | None, wait: float | None):
        super().__init__(message, status)
        self.wait = wait


#: Requests of the host's rate limit reconcile leaves to others (the same token may post the
#: commit statuses): below this, it stops until the limit resets.
RATE_RESERVE = 100


class HostAPI:
    """GET and POST on one host's REST API with one token, one session. `auth_headers(token)` is
    the host's; `calls` counts requests (the run's report)."""

    def __init__(self, api_url: str, token: str, *, timeout: float = 10.0,
                 now: Callable[[], float] = time.time):
        self.api_url = api_url.rstrip("/")
        self._token = token or ""
        self.timeout = timeout
        self._now = now
        import requests   # here, not at the top: only a dispatcher asks (web workers stay light)
        self._requests = requests
        self._session = requests.Session()
        self.calls = 0

    def auth_headers(self, token: str) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        self._session.close()

    def get(self, path: str, params: dict | None = None, *, url: str | None = None):
        """(decoded JSON, response headers) of GET `path` (or a full `url` from a Link header,
        only on the API's own host)."""
        if url is not None and urlsplit(url).netloc != urlsplit(self.api_url).netloc:
            raise ApiDenied(f"refusing a next-page link to another host ({urlsplit(url).netloc})")
        return self._call("GET", url or self.api_url + path, params)

    def pages(self, path: str, params: dict | None = None, *, max_pages: int | None = None):
        """The items of GET `path`, page after page by the Link header's `rel="next"`; the next
        page is asked for only when the caller reads past this one, and at most `max_pages`."""
        doc, headers = self.get(path, params)
        read = 1
        while True:
            yield from doc or ()
            link = next_link(headers)
            if not link or (max_pages is not None and read >= max_pages):
                return
            doc, headers = self.get("", url=link)
            read += 1

    def post(self, path: str, params: dict | None = None):
        return self._call("POST", self.api_url + path, params)

    def _call(self, method: str, url: str, params):
        headers = {"User-Agent": "bridge", **self.auth_headers(self._token)}
        self.calls += 1
        try:
            resp = self._session.request(method, url, params=params, headers=headers,
                                         timeout=self.timeout, allow_redirects=False)
        except self._requests.Timeout:
            raise ApiUnavailable(f"no answer from {self._host()} within {self.timeout:g}s") from None
        except self._requests.RequestException as exc:
            raise ApiUnavailable(f"cannot reach {self._host()} ({type(exc).__name__})") from None
        if 200 <= resp.status_code < 300:
            try:
                doc = resp.json() if resp.content else None
            except ValueError:
                raise ApiUnavailable(f"{self._host()} answered {resp.status_code} with no JSON",
                                     resp.status_code) from None
            self._check_reserve(resp)
            return doc, resp.headers
        raise self.classify(resp)

    def classify(self, resp: requests.Response) -> ApiError:
        """The error a non-2xx answer means (hosts refine `_rate_limited`)."""
        code = resp.status_code
        message = self._message(resp)
        if code == 429 or (code == 403 and self._rate_limited(resp)):
            return ApiRateLimited(message, code, self._wait(resp))
        if code in (401, 403, 404):
            return ApiDenied(message, code)
        return ApiUnavailable(message, code)

    def _check_reserve(self, resp) -> None:
        """Stop before the rate limit runs out: the rest is for commit statuses."""
        left = resp.headers.get("x-ratelimit-remaining") or resp.headers.get("ratelimit-remaining")
        if left is not None and left.isdigit() and int(left) < RATE_RESERVE:
            raise ApiRateLimited(f"{left} requests of the rate limit left: the last {RATE_RESERVE} "
                                 "are left to commit statuses", resp.status_code, self._wait(resp))

    def _rate_limited(self, resp) -> bool:
        return (resp.headers.get("x-ratelimit-remaining") == "0" or "Retry-After" in resp.headers
                or "rate limit" in resp.text[:2000].lower())

    def _wait(self, resp) -> float | None:
        wait = retry_after(resp.headers.get("Retry-After"), self._now)
        if wait is not None:
            return wait
        try:
            reset = float(resp.headers.get("x-ratelimit-reset") or resp.headers.get("ratelimit-reset"))
        except (TypeError, ValueError):
            return None
        return min(max(0.0, reset - self._now()), MAX_RETRY_AFTER)

    def _host(self) -> str:
        return re.sub(r"^https?://([^/]+).*$", r"\1", self.api_url)

    def _message(self, resp: requests.Response) -> str:
        try:
            doc = resp.json()
        except ValueError:
            doc = None
        text = doc.get("message", "") if isinstance(doc, dict) else ""
        text = str(text) or resp.reason or ""
        if self._token:
            text = text.replace(self._token, "***")
        return f"{resp.status_code} {cap(text, 200)}".strip()


@dataclass(frozen=True)
class HostDelivery:
    """One attempt in a hook's delivery log, in words every host shares."""
    host_id: str              # what the host's URLs name it by (redelivery)
    guid: str                 # the delivery id the bridge stores it under
    delivered_at: float       # epoch seconds (0: the host did not say)
    ok: bool                  # the bridge answered 2xx
    status_code: int | None   # the bridge's answer (None/0: no answer at all)
    event: str                # the host's event name (push, Push Hook, ...)
    redelivery: bool = False
    payload: dict | None = None   # the request body, when the log carries it (GitLab)
    headers: dict | None = None   # the request headers, when the log carries them (GitLab)


@dataclass(frozen=True)
class HostRef:
    """A branch or tag on the host: `sha` is what the ref points at (an annotated tag's object),
    `commit` the commit to build (None: not listed with it; the host's `peel` finds it)."""
    ref: str
    sha: str
    commit: str | None


def epoch(stamp) -> float:
    """An API's ISO 8601 timestamp (`Z` or an offset) as epoch seconds; 0.0 when it is none."""
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def next_link(headers) -> str | None:
    """The rel="next" URL of a Link header (GitHub's cursor pages, GitLab's pages)."""
    for part in (headers.get("Link") or "").split(","):
        m = re.match(r'\s*<([^>]+)>\s*;\s*rel="?next"?', part)
        if m:
            return m.group(1)
    return None
