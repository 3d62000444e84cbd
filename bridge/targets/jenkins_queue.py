"""Jenkins target, from the build request on: the POST that queues a build, the queue item followed
to its build and the build to its result, and a request found again by its BRIDGE_DELIVERY value
(after a lost answer, or once Jenkins forgot the queue item).

Input: a `JenkinsConnection`, job names, parameters, and `Run`s. Output: `Run`s (queued,
started, succeeded, failed) or `TargetUnavailable` / `TargetRejected` from the connection.
"""
from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any, Callable
from urllib.parse import quote, urlencode

import jenkins
import requests

from bridge.errors import TargetError, TargetUnavailable
from bridge.jobs import Run
from bridge.targets.jenkins_http import JenkinsConnection, http_error, http_status, jenkins_message
from bridge.targets.jenkins_spec import UNIQUE_PARAMETER

#: How many of the job's newest builds are searched for a request of ours (one API call).
LOOKBACK_BUILDS = 50
#: Looks for the build of a queue item that vanished before we saw its build: then "unknown".
LOST_ITEM_LOOKS = 3

_QUEUE_LOCATION = re.compile(r"/queue/item/(\d+)/?$")
#: Stapler's answers to a /build of a parameterized job without a form (query empty / not).
_FORM_MISSING = ("Nothing is submitted", "This page expects a form submission")
_BUILDS_TREE = ("builds[number,url,queueId,actions[parameters[name,value]]]"
                f"{{0,{LOOKBACK_BUILDS}}}")


class JenkinsQueue:
    """Requests and follows builds on one Jenkins; `sleep`/`now` drive the wait for the queue."""

    def __init__(self, conn: JenkinsConnection, *, sleep: Callable[[float], None],
                 now: Callable[[], float], queue_wait: float, poll_interval: float):
        self.conn = conn
        self.url = conn.url
        self.queue_wait = queue_wait
        self.poll_interval = poll_interval
        self._sleep = sleep
        self._now = now

    def request_build(self, name: str, params: dict[str, str], delay: str | None) -> int:
        """POST .../buildWithParameters (any parameter) or .../build (none), with `delay` in the
        query. With no parameter to send, which one Jenkins takes depends on the job: a job
        without parameters refuses buildWithParameters (400 "... is not parameterized"); a
        parameterized one answers /build with 400 "Nothing is submitted" / "This page expects a
        form submission" (Stapler wants a form) and buildWithParameters with a build using the
        parameters' defaults. So /build first, and after that 400 (nothing was queued) once
        buildWithParameters. Returns the queue item's number from the 201's Location."""
        client = self.conn.client()
        # python-jenkins adds the build token to the dict it is given: pass a copy.
        url = client.build_job_url(name, dict(params) or None, token=self.conn.build_token)
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
            run = self.from_queue(run)[0]
        if run.state != "started":
            return run
        name, number = run.detail["job"], run.detail["number"]
        with self.conn.translated(name):
            try:
                info = self.conn.client().get_build_info(name, number)
            except jenkins.JenkinsException as exc:
                if http_status(exc) != 404:
                    raise
                return replace(run, state="failed", detail={**run.detail, "result": "NOT_FOUND"})
        result = info.get("result")
        if result is None:
            return run
        return replace(run, state="succeeded" if result == "SUCCESS" else "failed",
                       detail={**run.detail, "result": result})

    def cancel(self, run: Run) -> bool:
        """Cancel the queue item, then (it may have left the queue meanwhile) stop its build."""
        name = run.detail.get("job", "")
        if run.state == "queued":
            with self.conn.translated(name):
                # Jenkins answers 204, or 404 for an item no longer in the queue (python-jenkins
                # takes that 404 as the best effort it is).
                self.conn.client().cancel_queue(int(run.detail["queue_id"]))
            run = self.from_queue(run)[0]
        if run.state != "started" or run.detail.get("number") is None:
            return True
        with self.conn.translated(name):
            try:
                self.conn.client().stop_build(name, int(run.detail["number"]))
            except jenkins.NotFoundException:
                pass      # the build is gone (rotated away): nothing runs
        return True

    def requested_before(self, name: str, value: str) -> Run | None:
        """The queue item or recent build that carries BRIDGE_DELIVERY=`value`, if any. The queue
        is read first: an item that starts meanwhile is then among the builds."""
        client = self.conn.client()
        with self.conn.translated(name):
            for item in client.get_queue_info():
                if _parameter(item, UNIQUE_PARAMETER) == value:
                    run = self.queued(name, int(item["id"]), value)
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
        builds = self._newest_builds(name)
        if builds is None:
            return None
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

    def _newest_builds(self, name: str) -> list[dict] | None:
        """The job's newest `LOOKBACK_BUILDS` builds with their parameters; None if the job 404s."""
        client = self.conn.client()
        url = f"{self.job_url(name)}api/json?{urlencode({'tree': _BUILDS_TREE})}"
        with self.conn.translated(name):
            try:
                text = client.jenkins_open(requests.Request("GET", url))
            except jenkins.JenkinsException as exc:
                if http_status(exc) == 404:
                    return None
                raise
        try:
            return json.loads(text).get("builds") or []
        except (ValueError, AttributeError):
            raise TargetUnavailable(f"Jenkins target '{self.conn.target_name}' gave an answer that is "
                                    f"not JSON for the builds of job '{name}'") from None

    def queued(self, name: str, queue_id: int, unique: str | None, merged: bool = False) -> Run:
        # The queue item's page 404s in Jenkins' UI: a person gets the job's page (which lists the
        # queue); following uses the queue id.
        detail: dict[str, Any] = {"job": name, "queue_id": queue_id,
                                  "queue_url": f"{self.url}queue/item/{queue_id}/"}
        if unique is not None:
            detail[UNIQUE_PARAMETER] = unique   # finds the build should the queue item vanish
        if merged:
            detail["merged"] = True
        return Run(remote_id=f"{name}#queue/{queue_id}", url=self.job_url(name), state="queued",
                   detail=detail)

    def job_url(self, name: str) -> str:
        """team/api/build -> <url>job/team/job/api/job/build/ (quoted as python-jenkins does)."""
        return self.url + "".join(f"job/{quote(part)}/" for part in name.split("/"))

    def wait_for_build(self, run: Run) -> Run:
        """Poll the queue item until it has a build or `queue_wait` passes. An item sitting out a
        quiet period longer than that wait is returned at once: waiting would only hold the
        dispatcher's slot (Jenkins' default quiet period is 5 s), and the dispatcher follows
        queued runs anyway."""
        deadline = self._now() + self.queue_wait
        while True:
            try:
                run, item = self.from_queue(run)
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

    def from_queue(self, run: Run) -> tuple[Run, dict | None]:
        """Where queue item `run` is now, and the item's JSON (None once it vanished)."""
        name, queue_id = run.detail["job"], run.detail["queue_id"]
        with self.conn.translated(name):
            try:
                item = self.conn.client().get_queue_item(queue_id)
            except jenkins.JenkinsException as exc:
                if http_status(exc) != 404:
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


def merged_queue_id(exc: BaseException) -> int | None:
    """Jenkins 2.308+ answers 303 to the queue item an identical request merged into; requests
    follows it to a page that 404s. The redirect in the history tells a merge from a missing job."""
    http = http_error(exc)
    if http is None:
        return None
    for hop in http.response.history:
        if hop.status_code in (301, 302, 303, 307, 308):
            m = _QUEUE_LOCATION.search(hop.headers.get("Location", ""))
            if m:
                return int(m.group(1))
    return None


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
            and any(m in jenkins_message(exc.response) for m in _FORM_MISSING))


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
