"""Jenkins target: starts a rule's job through python-jenkins and follows it to a result.

Input: a `Job` whose request names a Jenkins `job` (folder path), `parameters`, `unique`, `delay`.
Output: a `Run` (build number and URL, or the queue item, linked to the job's page, while Jenkins
has not started a build), or `TargetUnavailable` / `TargetRejected`, translated at one point
(`_translated`).
"""
from __future__ import annotations

import html
import json
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Callable
from urllib.parse import quote, urlencode

import jenkins
import requests

from bridge.errors import TargetError, TargetRejected, TargetUnavailable
from bridge.jobs import Job, Run, rerun_suffix
from bridge.policies import retry_after
from bridge.targets.base import Target

#: The parameter that keeps Jenkins from merging two pushes into one queued build.
UNIQUE_PARAMETER = "BRIDGE_DELIVERY"
#: Query parameters Jenkins (or python-jenkins) reads itself: never job parameters.
RESERVED_PARAMETERS = ("token", "delay", "cause")
DEFAULT_TIMEOUT = 10.0
#: How many of the job's newest builds are searched for a request of ours (one API call).
LOOKBACK_BUILDS = 50
#: Looks for the build of a queue item that vanished before we saw its build: then "unknown".
LOST_ITEM_LOOKS = 3
#: Target options that must be secret references in rules.yaml, never literal text (config/load.py).
SECRET_OPTIONS = ("token", "build_token")

_DELAY = re.compile(r"^(\d+)(sec)?$")
_QUEUE_LOCATION = re.compile(r"/queue/item/(\d+)/?$")
#: Stapler's answers to a /build of a parameterized job without a form (query empty / not).
_FORM_MISSING = ("Nothing is submitted", "This page expects a form submission")
_BUILDS_TREE = ("builds[number,url,queueId,actions[parameters[name,value]]]"
                f"{{0,{LOOKBACK_BUILDS}}}")
_ERROR_TEXT = (
    re.compile(r"<h1>[^<]*Error\s*</h1>\s*<p>(.*?)</p>", re.S),      # hudson.model.Failure page
    re.compile(r"<h2>HTTP ERROR \d+\s*(.*?)</h2>", re.S),             # Jetty's sendError page
    re.compile(r"<h1[^>]*>(.*?)</h1>", re.S),                         # e.g. the restart page
)


class JenkinsTarget(Target):
    """A Jenkins server. One client per dispatcher thread; `sleep`/`now` drive the queue wait."""

    kind = "jenkins"
    secret_keys = SECRET_OPTIONS
    config_keys = {"kind": True, "url": True, "user": False, "token": False, "build_token": False,
                   "timeout": False, "verify_tls": False, "ca_bundle": False, "retry": False}
    run_keys = {"target": True, "job": True, "parameters": False, "unique": False, "delay": False}

    def __init__(self, name: str, options: dict[str, Any], *, client: jenkins.Jenkins | None = None,
                 sleep: Callable[[float], None] = time.sleep, now: Callable[[], float] = time.monotonic,
                 queue_wait: float = 2.0, poll_interval: float = 0.25):
        super().__init__(name, options)
        self.url = str(options["url"]).rstrip("/") + "/"
        self.user = options.get("user")
        self._token = options.get("token")
        self._build_token = options.get("build_token")
        self.timeout = float(options.get("timeout", DEFAULT_TIMEOUT))
        self.queue_wait = queue_wait
        self.poll_interval = poll_interval
        self._sleep = sleep
        self._now = now
        self._client = client
        self._local = threading.local()

    # --- configuration checks --------------------------------------------------------------

    @classmethod
    def validate(cls, options: dict[str, Any]) -> list[str]:
        problems = []
        url = options.get("url")
        if not isinstance(url, str) or not re.match(r"^https?://[^/?#\s]+", url):
            problems.append(f"url must be an http:// or https:// URL, not {url!r}")
        elif "?" in url or "#" in url:
            problems.append("url must not carry a query string or fragment")
        if ("user" in options) != ("token" in options):
            problems.append("'user' and 'token' go together (the token is the user's API token)")
        timeout = options.get("timeout", DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            problems.append(f"timeout must be a positive number of seconds, not {timeout!r}")
        if not isinstance(options.get("verify_tls", True), bool):
            problems.append("verify_tls must be true or false")
        if "ca_bundle" in options and not isinstance(options["ca_bundle"], str):
            problems.append("ca_bundle must be the path of a PEM file")
        return problems

    @classmethod
    def validate_run(cls, run: dict[str, Any]) -> list[str]:
        problems = []
        name = run.get("job")
        if not isinstance(name, str) or not name.strip("/"):
            problems.append("'run.job' must be a job name or folder path such as 'team/api/build'")
        elif name.startswith("/") or name.endswith("/") or "//" in name:
            problems.append(f"'run.job' {name!r}: write folder paths as 'team/api/build'")
        elif name.startswith("job/"):
            problems.append(f"'run.job' {name!r}: write the folder path ('team/api/build'), "
                            "not the URL path ('job/team/job/api/job/build')")
        unique = run.get("unique", True)
        if not isinstance(unique, bool):
            problems.append("'run.unique' must be true or false")
        params = run.get("parameters", {})
        if not isinstance(params, dict):
            problems.append("'run.parameters' must be a mapping of parameter name to value")
            params = {}
        for key, value in params.items():
            if key in RESERVED_PARAMETERS:
                problems.append(f"'run.parameters.{key}': Jenkins reads '{key}' itself; "
                                "it cannot be a job parameter")
            elif key == UNIQUE_PARAMETER and unique is not False:
                problems.append(f"'run.parameters.{key}': the bridge sets {UNIQUE_PARAMETER} itself "
                                "(set unique: false to send your own)")
            if isinstance(value, (dict, list)):
                problems.append(f"'run.parameters.{key}' must be a single value")
        if "delay" in run and not _DELAY.match(str(run["delay"])):
            problems.append(f"'run.delay' must be seconds, e.g. 0 or '0sec', not {run['delay']!r}")
        return problems

    # --- starting and following ------------------------------------------------------------

    def start(self, job: Job) -> Run:
        """Request the build; wait briefly for Jenkins to start it, else return the queue item."""
        req = job.request
        name = req["job"]
        params = {str(k): _text(v) for k, v in (req.get("parameters") or {}).items()}
        unique = req.get("unique", True) is not False
        if unique:
            params[UNIQUE_PARAMETER] = f"{job.delivery}-{job.id}{rerun_suffix(job)}"
        delay = None
        if req.get("delay") is not None:
            delay = f"{_DELAY.match(str(req['delay'])).group(1)}sec"
        hint = (f" (unique: true sends {UNIQUE_PARAMETER}: add that string parameter to the job, "
                "or set unique: false)") if unique else ""
        if unique and job.attempt > 1:
            # An earlier attempt may have reached Jenkins although its answer never reached us (a
            # timeout, a reset connection): find that request by its BRIDGE_DELIVERY value.
            found = self._requested_before(name, params[UNIQUE_PARAMETER])
            if found is not None:
                return self._wait_for_build(found) if found.state == "queued" else found
        with self._translated(name, hint_400=hint):
            try:
                queue_id = self._request_build(name, params, delay)
            except jenkins.NotFoundException as exc:
                queue_id = _merged_queue_id(exc)
                if queue_id is None:
                    raise
                return self._queued(name, queue_id, params.get(UNIQUE_PARAMETER), merged=True)
        return self._wait_for_build(self._queued(name, queue_id, params.get(UNIQUE_PARAMETER)))

    def _request_build(self, name: str, params: dict[str, str], delay: str | None) -> int:
        """POST .../buildWithParameters (any parameter) or .../build (none), with `delay` in the
        query. With no parameter to send, which one Jenkins takes depends on the job: a job
        without parameters refuses buildWithParameters (400 "... is not parameterized"); a
        parameterized one answers /build with 400 "Nothing is submitted" / "This page expects a
        form submission" (Stapler wants a form) and buildWithParameters with a build using the
        parameters' defaults. So /build first, and after that 400 (nothing was queued) once
        buildWithParameters. Returns the queue item's number from the 201's Location."""
        client = self._jenkins()
        # python-jenkins adds the build token to the dict it is given: pass a copy.
        url = client.build_job_url(name, dict(params) or None, token=self._build_token)
        if delay is not None:
            url += ("&" if "?" in url else "?") + urlencode({"delay": delay})
        try:
            response = client.jenkins_request(requests.Request("POST", url))
        except requests.HTTPError as exc:
            if params or not _form_missing(exc):
                raise
            path, sep, query = url.partition("?")
            url = path[:-len("build")] + "buildWithParameters" + sep + query
            response = client.jenkins_request(requests.Request("POST", url))
        m = _QUEUE_LOCATION.search(response.headers.get("Location", ""))
        if m is None:
            raise jenkins.EmptyResponseException("no queue item in the answer to a build request")
        return int(m.group(1))

    def follow(self, run: Run) -> Run:
        """Queue item -> build -> result. SUCCESS is "succeeded"; any other result is "failed"."""
        if run.state == "queued":
            run = self._from_queue(run)[0]
        if run.state != "started":
            return run
        name, number = run.detail["job"], run.detail["number"]
        with self._translated(name):
            try:
                info = self._jenkins().get_build_info(name, number)
            except jenkins.JenkinsException as exc:
                if _status(exc) != 404:
                    raise
                return replace(run, state="failed", detail={**run.detail, "result": "NOT_FOUND"})
        result = info.get("result")
        if result is None:
            return run
        return replace(run, state="succeeded" if result == "SUCCESS" else "failed",
                       detail={**run.detail, "result": result})

    def _requested_before(self, name: str, value: str) -> Run | None:
        """The queue item or recent build that carries BRIDGE_DELIVERY=`value`, if any. The queue
        is read first: an item that starts meanwhile is then among the builds."""
        client = self._jenkins()
        with self._translated(name):
            for item in client.get_queue_info():
                if _parameter(item, UNIQUE_PARAMETER) == value:
                    run = self._queued(name, int(item["id"]), value)
                    return replace(run, detail={**run.detail, "requested_before": True})
        found = self._build_of(name, queue_id=None, value=value)
        if found is None:
            return None
        return replace(found, detail={**found.detail, "requested_before": True})

    def _build_of(self, name: str, *, queue_id: int | None, value: str | None) -> Run | None:
        """Among the job's newest builds (one API call), the one carrying BRIDGE_DELIVERY=`value`,
        else the one Jenkins made from queue item `queue_id`; None if neither is there (or the job
        is gone: the build request or the follow reports that). A Jenkins that numbers its queue
        afresh (restored, migrated) can give our old queue id to another build: a queueId match
        carrying a different BRIDGE_DELIVERY is not ours."""
        client = self._jenkins()
        url = f"{self._job_url(name)}api/json?{urlencode({'tree': _BUILDS_TREE})}"
        with self._translated(name):
            try:
                text = client.jenkins_open(requests.Request("GET", url))
            except jenkins.JenkinsException as exc:
                if _status(exc) == 404:
                    return None
                raise
        try:
            builds = json.loads(text).get("builds") or []
        except (ValueError, AttributeError):
            raise TargetUnavailable(f"Jenkins target '{self.name}' gave an answer that is not "
                                    f"JSON for the builds of job '{name}'") from None
        match = None
        if value is not None:
            match = next((b for b in builds if _parameter(b, UNIQUE_PARAMETER) == value), None)
        if match is None and queue_id is not None:
            match = next((b for b in builds if b.get("queueId") == queue_id
                          and not _other_delivery(b, value)), None)
        if match is None:
            return None
        number = int(match["number"])
        return Run(remote_id=f"{name}#{number}", url=match.get("url", ""), state="started",
                   detail={"job": name, "queue_id": match.get("queueId"), "number": number})

    def _queued(self, name: str, queue_id: int, unique: str | None, merged: bool = False) -> Run:
        # The queue item's page 404s in Jenkins' UI: a person gets the job's page (which lists the
        # queue); following uses the queue id.
        detail: dict[str, Any] = {"job": name, "queue_id": queue_id,
                                  "queue_url": f"{self.url}queue/item/{queue_id}/"}
        if unique is not None:
            detail[UNIQUE_PARAMETER] = unique   # finds the build should the queue item vanish
        if merged:
            detail["merged"] = True
        return Run(remote_id=f"{name}#queue/{queue_id}", url=self._job_url(name), state="queued",
                   detail=detail)

    def _job_url(self, name: str) -> str:
        """team/api/build -> <url>job/team/job/api/job/build/ (quoted as python-jenkins does)."""
        return self.url + "".join(f"job/{quote(part)}/" for part in name.split("/"))

    def _wait_for_build(self, run: Run) -> Run:
        """Poll the queue item until it has a build or `queue_wait` passes. An item sitting out a
        quiet period longer than that wait is returned at once: waiting would only hold the
        dispatcher's slot (Jenkins' default quiet period is 5 s), and the dispatcher follows
        queued runs anyway."""
        deadline = self._now() + self.queue_wait
        while True:
            try:
                run, item = self._from_queue(run)
            except TargetError:
                # The build is requested: a hiccup while watching must not make the dispatcher
                # request it a second time. It keeps following the queue item instead.
                return run
            if run.state != "queued" or self._now() >= deadline:
                return run
            quiet = _quiet_period(item)
            if quiet is not None and quiet > self.queue_wait:
                return run
            self._sleep(self.poll_interval)

    def _from_queue(self, run: Run) -> tuple[Run, dict | None]:
        """Where queue item `run` is now, and the item's JSON (None once it vanished)."""
        name, queue_id = run.detail["job"], run.detail["queue_id"]
        with self._translated(name):
            try:
                item = self._jenkins().get_queue_item(queue_id)
            except jenkins.JenkinsException as exc:
                if _status(exc) != 404:
                    raise
                item = None
        if item is None or _other_delivery(item, run.detail.get(UNIQUE_PARAMETER)):
            # An item of another request under our number: Jenkins numbered its queue afresh.
            return self._vanished(run), None
        if item.get("cancelled"):
            return replace(run, state="failed", detail={**run.detail, "result": "CANCELLED"}), item
        executable = item.get("executable")
        if not executable:
            return run, item
        number = int(executable["number"])
        return Run(remote_id=f"{name}#{number}", url=executable.get("url", ""), state="started",
                   detail={**run.detail, "number": number}), item

    def _vanished(self, run: Run) -> Run:
        """Jenkins forgets a queue item about 5 minutes after it left the queue (and at a restart):
        not the job's fault. Its build names it (queueId), or carries our BRIDGE_DELIVERY; after
        `LOST_ITEM_LOOKS` looks without either, the outcome is unknown."""
        name, queue_id = run.detail["job"], run.detail["queue_id"]
        found = self._build_of(name, queue_id=queue_id, value=run.detail.get(UNIQUE_PARAMETER))
        if found is not None:
            return replace(found, detail={**run.detail, **found.detail, "queue_id": queue_id})
        looks = int(run.detail.get("lost_looks", 0)) + 1
        if looks < LOST_ITEM_LOOKS:
            return replace(run, detail={**run.detail, "lost_looks": looks})
        return replace(run, state="failed", detail={
            **run.detail, "lost_looks": looks, "result": "UNKNOWN",
            "reason": f"queue item {queue_id} vanished and no build of it is among the job's "
                      f"newest {LOOKBACK_BUILDS}"})

    def ping(self) -> str:
        """`/readyz?targets=1`: one authenticated call."""
        with self._translated(""):
            # Authenticated, unlike python-jenkins' get_version(); Jenkins names itself in a header.
            client = self._jenkins()
            resp = client.jenkins_request(requests.Request("GET", client.server.rstrip("/") + "/api/json"))
        return f"ok (Jenkins {resp.headers.get('X-Jenkins', '?')})"

    # --- cibridge check --online -------------------------------------------------------------

    def check_online(self, runs: list[tuple[str, int, dict]], *, rules_file: str = "rules.yaml") -> list[str]:
        """Each job exists, is a buildable job, defines the parameters the rule sends (none if it
        is not parameterized), and (with unique: true) defines BRIDGE_DELIVERY. A parameterized
        job sent no parameter is fine: it builds with the parameters' defaults."""
        problems: list[str] = []
        infos: dict[str, dict | None] = {}
        client = self._jenkins()
        for rule, line, run in runs:
            name = run.get("job", "")
            if "${" in name:
                continue  # the name depends on the push; nothing to ask Jenkins yet
            if name not in infos:
                try:
                    infos[name] = client.get_job_info(name)
                except (jenkins.JenkinsException, requests.RequestException) as exc:
                    if _status(exc) != 404:
                        return problems + [f"target '{self.name}': {self._error(exc, name)}"]
                    infos[name] = None
            for problem in self._job_problems(name, infos[name], run):
                problems.append(f"rule '{rule}' ({rules_file}:{line}): {problem}")
        return problems

    def _job_problems(self, name: str, info: dict | None, run: dict) -> list[str]:
        where = f"job '{name}' on target '{self.name}'"
        if info is None:
            return [f"job '{name}' not found on target '{self.name}'"]
        if "jobs" in info and "buildable" not in info:
            return [f"'{name}' on target '{self.name}' is a folder, not a job"]
        problems = []
        if info.get("buildable") is False:
            problems.append(f"{where} is disabled")
        defined = [d.get("name") for p in info.get("property") or []
                   for d in p.get("parameterDefinitions") or []]
        sent = list(run.get("parameters") or {})
        unique = run.get("unique", True) is not False
        if not defined:
            if sent or unique:
                sends = ", ".join(sent + ([UNIQUE_PARAMETER] if unique else []))
                fix = f" (add a string parameter {UNIQUE_PARAMETER} to the job, or set unique: false)"
                problems.append(f"{where} takes no parameters but the rule sends {sends}: Jenkins "
                                f"answers HTTP 400{fix if unique else ''}")
            return problems
        undefined = [p for p in sent if p not in defined]
        if undefined:
            problems.append(f"{where} does not define parameter(s) {', '.join(undefined)}: "
                            "Jenkins drops them silently")
        if unique and UNIQUE_PARAMETER not in defined:
            problems.append(f"{where} lacks a {UNIQUE_PARAMETER} parameter: Jenkins may merge two "
                            f"pushes into one build (add a string parameter {UNIQUE_PARAMETER} to "
                            "the job, or set unique: false)")
        return problems

    # --- the client and its errors ---------------------------------------------------------

    def _jenkins(self) -> jenkins.Jenkins:
        if self._client is not None:
            return self._client
        client = getattr(self._local, "client", None)
        if client is None:
            # requests sessions are not promised to be thread-safe: one client per thread.
            client = jenkins.Jenkins(self.url, username=self.user, password=self._token,
                                     timeout=self.timeout)
            # python-jenkins has no parameter for TLS; its session wrapper exists for this.
            if self.options.get("verify_tls") is False:
                client._session.verify = False
            elif self.options.get("ca_bundle"):
                client._session.verify = self.options["ca_bundle"]
            self._local.client = client
        return client

    @contextmanager
    def _translated(self, job_name: str, hint_400: str = ""):
        """The one place python-jenkins and requests errors become ours."""
        try:
            yield
        except (jenkins.JenkinsException, requests.RequestException) as exc:
            error = self._error(exc, job_name, hint_400)
            # A library message can quote the request URL, whose query carries the build token.
            raise error from (None if self._leaks(exc) else exc)

    def _error(self, exc: BaseException, job_name: str, hint_400: str = "") -> TargetError:
        where = f"Jenkins target '{self.name}'"
        http = _http_error(exc)
        if http is None:
            if _in_chain(exc, (requests.exceptions.SSLError,)):
                return TargetUnavailable(f"{where}: TLS handshake failed (check verify_tls / ca_bundle)")
            if _in_chain(exc, (requests.Timeout, jenkins.TimeoutException)):
                return TargetUnavailable(f"{where} did not answer within {self.timeout:g} s")
            if _in_chain(exc, (requests.ConnectionError,)):
                return TargetUnavailable(f"{where} is unreachable (connection refused or reset)")
            return TargetUnavailable(f"{where} gave an answer python-jenkins could not use "
                                     f"({type(exc).__name__})")
        response = http.response
        status = response.status_code
        text = self._scrub(_jenkins_message(response))
        if status in (401, 403):
            return TargetRejected(f"Jenkins refused user '{self.user or 'anonymous'}' on target "
                                  f"'{self.name}' (HTTP {status}: {text})")
        if status == 404:
            return TargetRejected(f"job '{job_name}' not found on target '{self.name}'")
        if status == 400:
            hint = hint_400 if "not parameterized" in text else ""
            return TargetRejected(f"{where} refused job '{job_name}': {text}{hint}")
        if status == 409:
            return TargetRejected(f"{where} refused job '{job_name}' (HTTP 409: {text}): "
                                  "is the job disabled?")
        if status == 429 or status >= 500:
            return TargetUnavailable(f"{where} answered HTTP {status}: {text}",
                                     retry_after=_retry_after(response))
        return TargetRejected(f"{where} answered HTTP {status} for job '{job_name}': {text}")

    def _secrets(self) -> list[str]:
        return [s for s in (self._token, self._build_token) if s]

    def _scrub(self, text: str) -> str:
        for secret in self._secrets():
            text = text.replace(secret, "***")
        return re.sub(r"(\S)\?\S+", r"\1?…", text)   # URLs with query strings carry the build token

    def _leaks(self, exc: BaseException) -> bool:
        texts = [str(e) for e in _chain(exc)]
        return any(s in t for s in self._secrets() for t in texts)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"   # what Jenkins' boolean parameters expect
    return "" if value is None else str(value)


def _parameter(doc: dict, name: str) -> str | None:
    """A parameter's value in a queue item's or build's JSON (its ParametersAction)."""
    for action in doc.get("actions") or []:
        for p in (action or {}).get("parameters") or []:
            if p.get("name") == name:
                return None if p.get("value") is None else str(p["value"])
    return None


def _other_delivery(doc: dict, value: str | None) -> bool:
    """Whether a queue item's or build's JSON carries a BRIDGE_DELIVERY other than `value` (ours).
    One without the parameter may be ours: Jenkins drops it for a job that does not define it."""
    theirs = _parameter(doc, UNIQUE_PARAMETER)
    return value is not None and theirs is not None and theirs != value


def _form_missing(exc: requests.HTTPError) -> bool:
    """A 400 from Stapler for a /build without a form: the job is parameterized."""
    return (exc.response is not None and exc.response.status_code == 400
            and any(m in _jenkins_message(exc.response) for m in _FORM_MISSING))


def _quiet_period(item: dict | None) -> float | None:
    """The quiet period, in seconds, of a queue item waiting one out (a Queue$WaitingItem, "In the
    quiet period": `timestamp` is when it may start, `inQueueSince` when it came, both in ms on
    Jenkins' clock); None for an item in any other stage (blocked, buildable, left)."""
    if not item:
        return None
    waiting = (str(item.get("_class", "")).endswith("$WaitingItem")
               or str(item.get("why") or "").startswith("In the quiet period"))
    try:
        return (float(item["timestamp"]) - float(item["inQueueSince"])) / 1000 if waiting else None
    except (KeyError, TypeError, ValueError):
        return None


def _chain(exc: BaseException | None):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _in_chain(exc: BaseException, types: tuple) -> bool:
    return any(isinstance(e, types) for e in _chain(exc))


def _http_error(exc: BaseException) -> requests.HTTPError | None:
    """python-jenkins re-raises HTTP errors as its own exceptions (401/403/500 as JenkinsException,
    404 as NotFoundException, some as 'does not exist'): the status lives in the chained original."""
    for e in _chain(exc):
        if isinstance(e, requests.HTTPError) and e.response is not None:
            return e
    return None


def _status(exc: BaseException) -> int | None:
    http = _http_error(exc)
    return http.response.status_code if http is not None else None


def _merged_queue_id(exc: BaseException) -> int | None:
    """Jenkins 2.308+ answers 303 to the queue item an identical request merged into; requests
    follows it to a page that 404s. The redirect in the history tells a merge from a missing job."""
    http = _http_error(exc)
    if http is None:
        return None
    for hop in http.response.history:
        if hop.status_code in (301, 302, 303, 307, 308):
            m = _QUEUE_LOCATION.search(hop.headers.get("Location", ""))
            if m:
                return int(m.group(1))
    return None


def _jenkins_message(response: requests.Response) -> str:
    """Jenkins' reason in a short line: from its HTML error page, or the plain-text body."""
    text = response.text or ""
    if text.lstrip().startswith("<"):
        found = next((m.group(1) for p in _ERROR_TEXT if (m := p.search(text))), "")
        text = re.sub(r"<[^>]+>", " ", found)
    text = " ".join(html.unescape(text).split())
    if len(text) > 200:
        text = text[:199] + "…"
    return text or response.reason or f"HTTP {response.status_code}"


def _retry_after(response: requests.Response) -> float | None:
    return retry_after(response.headers.get("Retry-After"))
