"""Jenkins target, the wire: one python-jenkins client per thread (its requests session, TLS
settings, the crumb python-jenkins fetches) and the one place its and requests' errors become
`TargetUnavailable` / `TargetRejected` (`JenkinsConnection.translated`), with every secret scrubbed.

Input: the target's options (url, user, token, build_token, timeout, verify_tls, ca_bundle).
Output: a `jenkins.Jenkins` client, and our errors with Jenkins' reason in one short line.
"""
from __future__ import annotations

import html
import re
import threading
from contextlib import contextmanager
from typing import Any

import jenkins
import requests

from bridge.errors import TargetError, TargetRejected, TargetUnavailable
from bridge.policies import retry_after

_ERROR_TEXT = (
    re.compile(r"<h1>[^<]*Error\s*</h1>\s*<p>(.*?)</p>", re.S),      # hudson.model.Failure page
    re.compile(r"<h2>HTTP ERROR \d+\s*(.*?)</h2>", re.S),             # Jetty's sendError page
    re.compile(r"<h1[^>]*>(.*?)</h1>", re.S),                         # e.g. the restart page
)


class JenkinsConnection:
    """The clients of one Jenkins target (one per dispatcher thread) and its error translation."""

    def __init__(self, target_name: str, url: str, options: dict[str, Any], *, timeout: float,
                 client: jenkins.Jenkins | None = None):
        self.target_name = target_name
        self.url = url
        self.user = options.get("user")
        self._token = options.get("token")
        #: The job's "Trigger builds remotely" token: python-jenkins puts it in the build URL.
        self.build_token = options.get("build_token")
        self.timeout = timeout
        self._options = options
        self._client = client
        self._local = threading.local()

    def client(self) -> jenkins.Jenkins:
        if self._client is not None:
            return self._client
        client = getattr(self._local, "client", None)
        if client is None:
            # requests sessions are not promised to be thread-safe: one client per thread.
            client = jenkins.Jenkins(self.url, username=self.user, password=self._token,
                                     timeout=self.timeout)
            # python-jenkins has no parameter for TLS; its session wrapper exists for this.
            if self._options.get("verify_tls") is False:
                client._session.verify = False
            elif self._options.get("ca_bundle"):
                client._session.verify = self._options["ca_bundle"]
            self._local.client = client
        return client

    @contextmanager
    def translated(self, job_name: str, hint_400: str = ""):
        """The one place python-jenkins and requests errors become ours."""
        try:
            yield
        except (jenkins.JenkinsException, requests.RequestException) as exc:
            error = self.error(exc, job_name, hint_400)
            # A library message can quote the request URL, whose query carries the build token.
            raise error from (None if self._leaks(exc) else exc)

    def error(self, exc: BaseException, job_name: str, hint_400: str = "") -> TargetError:
        where = f"Jenkins target '{self.target_name}'"
        http = http_error(exc)
        if http is None:
            return self._transport_error(exc, where)
        response = http.response
        status = response.status_code
        text = self._scrub(jenkins_message(response))
        if status in (401, 403):
            return TargetRejected(f"Jenkins refused user '{self.user or 'anonymous'}' on target "
                                  f"'{self.target_name}' (HTTP {status}: {text})")
        if status == 404:
            return TargetRejected(f"job '{job_name}' not found on target '{self.target_name}'")
        if status == 400:
            hint = hint_400 if "not parameterized" in text else ""
            return TargetRejected(f"{where} refused job '{job_name}': {text}{hint}")
        if status == 409:
            return TargetRejected(f"{where} refused job '{job_name}' (HTTP 409: {text}): "
                                  "is the job disabled?")
        if status == 429 or status >= 500:
            return TargetUnavailable(f"{where} answered HTTP {status}: {text}",
                                     retry_after=retry_after(response.headers.get("Retry-After")))
        return TargetRejected(f"{where} answered HTTP {status} for job '{job_name}': {text}")

    def _transport_error(self, exc: BaseException, where: str) -> TargetError:
        """No HTTP answer to read: TLS, a timeout, a refused connection, or an unusable answer."""
        if _in_chain(exc, (requests.exceptions.SSLError,)):
            return TargetUnavailable(f"{where}: TLS handshake failed (check verify_tls / ca_bundle)")
        if _in_chain(exc, (requests.Timeout, jenkins.TimeoutException)):
            return TargetUnavailable(f"{where} did not answer within {self.timeout:g} s")
        if _in_chain(exc, (requests.ConnectionError,)):
            return TargetUnavailable(f"{where} is unreachable (connection refused or reset)")
        return TargetUnavailable(f"{where} gave an answer python-jenkins could not use "
                                 f"({type(exc).__name__})")

    def _secrets(self) -> list[str]:
        return [s for s in (self._token, self.build_token) if s]

    def _scrub(self, text: str) -> str:
        for secret in self._secrets():
            text = text.replace(secret, "***")
        return re.sub(r"(\S)\?\S+", r"\1?…", text)   # URLs with query strings carry the build token

    def _leaks(self, exc: BaseException) -> bool:
        texts = [str(e) for e in _chain(exc)]
        return any(s in t for s in self._secrets() for t in texts)


def _chain(exc: BaseException | None):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _in_chain(exc: BaseException, types: tuple) -> bool:
    return any(isinstance(e, types) for e in _chain(exc))


def http_error(exc: BaseException) -> requests.HTTPError | None:
    """python-jenkins re-raises HTTP errors as its own exceptions (401/403/500 as JenkinsException,
    404 as NotFoundException, some as 'does not exist'): the status lives in the chained original."""
    for e in _chain(exc):
        if isinstance(e, requests.HTTPError) and e.response is not None:
            return e
    return None


def http_status(exc: BaseException) -> int | None:
    http = http_error(exc)
    return http.response.status_code if http is not None else None


def jenkins_message(response: requests.Response) -> str:
    """Jenkins' reason in a short line: from its HTML error page, or the plain-text body."""
    text = response.text or ""
    if text.lstrip().startswith("<"):
        found = next((m.group(1) for p in _ERROR_TEXT if (m := p.search(text))), "")
        text = re.sub(r"<[^>]+>", " ", found)
    text = " ".join(html.unescape(text).split())
    if len(text) > 200:
        text = text[:199] + "…"
    return text or response.reason or f"HTTP {response.status_code}"
