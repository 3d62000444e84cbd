"""Parts of the Jenkins target tests: the Jenkins stand-in fixture (real HTTP on 127.0.0.1), a target
on it, a Job of a build request, and the queue detail a start records."""
from __future__ import annotations

import traceback

import pytest

from bridge.events import Event
from bridge.jobs import Job
from bridge.targets.jenkins import JenkinsTarget
from helpers.standins.jenkins import JenkinsStandin


SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
PARAMS = ["GIT_SHA", "BRANCH", "BRIDGE_DELIVERY"]


@pytest.fixture
def standin(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    s = JenkinsStandin(readers={"viewer": "0f9e8d7c6b5a49382716"})
    s.add_job("team/api/build", PARAMS)
    s.add_job("plain")                                   # not parameterized
    s.add_job("old", ["GIT_SHA"])                        # parameterized, without BRIDGE_DELIVERY
    s.add_job("broken", PARAMS, result="FAILURE")
    s.start()
    yield s
    s.stop()


def messages(exc: BaseException) -> str:
    """What a logged traceback of `exc` would print (its chain, as `traceback` walks it)."""
    te, out = traceback.TracebackException.from_exception(exc), []
    while te is not None:
        out += te.format_exception_only()
        te = te.__cause__ or (None if te.__suppress_context__ else te.__context__)
    return "".join(out)


def target(standin, **options) -> JenkinsTarget:
    opts = {"kind": "jenkins", "url": standin.url.rstrip("/"), "user": "bridge",
            "token": standin.users["bridge"], "timeout": 5}
    opts.update(options)
    # The stand-in's clock is the adapter's clock: waiting for the queue takes no real time.
    return JenkinsTarget("ci", opts, sleep=standin.advance, now=standin.now)


def job(request: dict, *, id: int = 7, delivery: str = "d-1") -> Job:
    event = Event(provider="github", source="github", delivery_id=delivery, kind="push",
                  repo="acme/api", ref="refs/heads/main", ref_name="main", before="0" * 40,
                  after=SHA, sha=SHA)
    return Job(id=id, delivery=delivery, rule="api-main", target="ci",
               request={"target": "ci", **request}, event=event)


API = {"job": "team/api/build", "parameters": {"GIT_SHA": SHA, "BRANCH": "main"}}


def queued_detail(standin, queue_id: int, **more) -> dict:
    return {"job": "team/api/build", "queue_id": queue_id,
            "queue_url": f"{standin.url}queue/item/{queue_id}/", **more}
