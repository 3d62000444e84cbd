"""Feedback stage, the wire: the HTTP client base every git host's commit-status API shares.

Input: a stored status (repo, sha, ref, state, context, description, target_url) and one token.
Output: an `Answer` (sent, or done: refused for good, e.g. an unknown commit), else it raises
`StatusUnavailable` (retry) or `StatusRejected` (failed); the token never appears in either. Each
host module (github.py, gitlab.py, gitea.py, bitbucket.py) subclasses `StatusClient` as
`Statuses`.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from bridge.errors import StatusRejected, StatusUnavailable
from bridge.policies import retry_after

if TYPE_CHECKING:
    import requests

#: GitHub answers 422 to a longer description.
MAX_DESCRIPTION = 140
_MAX_ANSWER = 300


def cap(text: str, limit: int = MAX_DESCRIPTION) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


@dataclass(frozen=True)
class Answer:
    """A post's result. outcome: sent | done (the host refuses it for good, e.g. unknown commit or
    same state twice: not retried). The clients raise the other two, which the poster records as
    retry (`StatusUnavailable`) | failed (`StatusRejected`: auth, permissions: not retried)."""
    outcome: str
    code: int | None
    message: str
    retry_after: float | None = None


class StatusClient:
    """One git host's commit-status API with one token. Thread-safe: a session per thread.
    `states`: our states (a superset) -> what the host calls them."""

    provider = ""
    states: dict[str, str] = {}
    #: Whether `pull_head` asks the host (its comment events name no commit; GitHub, Gitea).
    asks_pull_heads = False

    def __init__(self, api_url: str, token: str, *, timeout: float = 10.0,
                 now: Callable[[], float] = time.time):
        self.api_url = api_url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self._now = now
        self._local = threading.local()

    def post(self, status) -> Answer:
        """Post one status: its Answer, or StatusUnavailable / StatusRejected."""
        url, headers, body = self.request(status)
        return self.classify(self.send("POST", url, headers=headers, json=body))

    def pull_head(self, repo: str, number: int) -> dict:
        """A pull request's head as the Event fields a comment lacked, plus `state`; hosts whose
        comments name their commit (`asks_pull_heads` False) have nothing to ask."""
        raise StatusRejected(f"{self.provider or 'this host'} is not asked for pull request heads")

    def send(self, method: str, url: str, **kw) -> requests.Response:
        """One request on this thread's session; StatusUnavailable when the host did not answer."""
        import requests   # here, not at the top: only a dispatcher sends (web workers stay light)

        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        try:
            return session.request(method, url, timeout=self.timeout, allow_redirects=False, **kw)
        except requests.Timeout:
            raise StatusUnavailable(f"no answer from {self._host()} within {self.timeout:g}s") from None
        except requests.ConnectionError:
            raise StatusUnavailable(f"cannot connect to {self._host()}") from None
        except requests.RequestException as exc:
            raise StatusUnavailable(f"{type(exc).__name__} talking to {self._host()}") from None

    def request(self, status) -> tuple[str, dict, dict]:  # pragma: no cover - interface
        raise NotImplementedError

    def classify(self, resp: requests.Response) -> Answer:  # pragma: no cover - interface
        """The host's reply as an Answer, or StatusUnavailable / StatusRejected raised."""
        raise NotImplementedError

    def _host(self) -> str:
        return re.sub(r"^https?://([^/]+).*$", r"\1", self.api_url)

    def _message(self, resp: requests.Response) -> str:
        try:
            doc = resp.json()
        except ValueError:
            doc = None
        text = doc.get("message", "") if isinstance(doc, dict) else ""
        if isinstance(doc, dict) and doc.get("errors"):
            text = f"{text}: {doc['errors']}"
        text = str(text) or resp.reason or ""
        text = cap(text.replace(self._token, "***"), _MAX_ANSWER)
        return f"{resp.status_code} {text}".strip()

    def _retry_after(self, resp: requests.Response) -> float | None:
        return retry_after(resp.headers.get("Retry-After"), self._now)
