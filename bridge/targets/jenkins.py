"""Jenkins target: starts a rule's job through python-jenkins and follows it to a result.

Input: a `Job` whose request names a Jenkins `job` (folder path), `parameters`, `unique`, `delay`
(its keys and their checks: `JenkinsSpec`, jenkins_spec.py). Output: a `Run` (build number and
URL, or the queue item, linked to the job's page, while Jenkins has not started a build), or `TargetUnavailable` / `TargetRejected`, translated at one point
(`JenkinsConnection.translated` in jenkins_http.py; the queue and builds: jenkins_queue.py).
"""
from __future__ import annotations

import time
from typing import Any, Callable

import jenkins
import requests

from bridge.jobs import Job, Run, rerun_suffix
from bridge.targets.jenkins_http import JenkinsConnection, http_status
from bridge.targets.jenkins_queue import JenkinsQueue, merged_queue_id
from bridge.targets.jenkins_spec import DEFAULT_TIMEOUT, DELAY, UNIQUE_PARAMETER, JenkinsSpec


class JenkinsTarget(JenkinsSpec):
    """A Jenkins server. One client per dispatcher thread; `sleep`/`now` drive the queue wait."""

    def __init__(self, name: str, options: dict[str, Any], *, client: jenkins.Jenkins | None = None,
                 sleep: Callable[[float], None] = time.sleep, now: Callable[[], float] = time.monotonic,
                 queue_wait: float = 2.0, poll_interval: float = 0.25):
        super().__init__(name, options)
        self.url = str(options["url"]).rstrip("/") + "/"
        self.user = options.get("user")
        self.timeout = float(options.get("timeout", DEFAULT_TIMEOUT))
        self._conn = JenkinsConnection(name, self.url, options, timeout=self.timeout, client=client)
        self._queue = JenkinsQueue(self._conn, sleep=sleep, now=now, queue_wait=queue_wait,
                                   poll_interval=poll_interval)

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
            delay = f"{DELAY.match(str(req['delay'])).group(1)}sec"
        hint = (f" (unique: true sends {UNIQUE_PARAMETER}: add that string parameter to the job, "
                "or set unique: false)") if unique else ""
        queue = self._queue
        if unique and job.attempt > 1:
            # An earlier attempt may have reached Jenkins although its answer never reached us (a
            # timeout, a reset connection): find that request by its BRIDGE_DELIVERY value.
            found = queue.requested_before(name, params[UNIQUE_PARAMETER])
            if found is not None:
                return queue.wait_for_build(found) if found.state == "queued" else found
        with self._conn.translated(name, hint_400=hint):
            try:
                queue_id = queue.request_build(name, params, delay)
            except jenkins.NotFoundException as exc:
                queue_id = merged_queue_id(exc)
                if queue_id is None:
                    raise
                return queue.queued(name, queue_id, params.get(UNIQUE_PARAMETER), merged=True)
        return queue.wait_for_build(queue.queued(name, queue_id, params.get(UNIQUE_PARAMETER)))

    def follow(self, run: Run) -> Run:
        """Queue item -> build -> result. SUCCESS is "succeeded"; any other result is "failed"."""
        return self._queue.follow(run)

    def cancel(self, run: Run) -> bool:
        """A queued item is cancelled (POST /queue/cancelItem?id=N), a running build stopped
        (POST /job/.../N/stop); an item that became a build meanwhile is stopped as a build."""
        return self._queue.cancel(run)

    def ping(self) -> str:
        """`/readyz?targets=1`: one authenticated call."""
        with self._conn.translated(""):
            # Authenticated, unlike python-jenkins' get_version(); Jenkins names itself in a header.
            client = self._conn.client()
            resp = client.jenkins_request(requests.Request("GET", client.server.rstrip("/") + "/api/json"))
        return f"ok (Jenkins {resp.headers.get('X-Jenkins', '?')})"

    # --- cibridge check --online -------------------------------------------------------------

    def check_online(self, runs: list[tuple[str, int, dict]], *, rules_file: str = "rules.yaml") -> list[str]:
        """Each job exists, is a buildable job, defines the parameters the rule sends (none if it
        is not parameterized), and (with unique: true) defines BRIDGE_DELIVERY. A parameterized
        job sent no parameter is fine: it builds with the parameters' defaults."""
        problems: list[str] = []
        infos: dict[str, dict | None] = {}
        client = self._conn.client()
        for rule, line, run in runs:
            name = run.get("job", "")
            if "${" in name:
                continue  # the name depends on the push; nothing to ask Jenkins yet
            if name not in infos:
                try:
                    infos[name] = client.get_job_info(name)
                except (jenkins.JenkinsException, requests.RequestException) as exc:
                    if http_status(exc) != 404:
                        return problems + [f"target '{self.name}': {self._conn.error(exc, name)}"]
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


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"   # what Jenkins' boolean parameters expect
    return "" if value is None else str(value)
