"""Per-target policy through real dispatchers, on SQLite and PostgreSQL, against the Jenkins
stand-in and real exec commands: the breaker with a Jenkins that is down and comes back, two
dispatchers sharing one database under max_running, a superseded build cancelled on Jenkins with
its status, and a superseded exec command stopped in its own dispatcher."""
from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace

from bridge.dispatch.loop import Dispatcher
from bridge.events import Event
from bridge.policies import Breaker, Policies, RetryPolicy, TargetPolicy
from bridge.targets.exec import ExecTarget
from helpers.process import wait_for
from helpers.statuses import Setup, github, jenkins  # noqa: F401  (fixtures)
from helpers.store import Clock, db_url, new_delivery, new_job, open_store  # noqa: F401  (fixtures)


def push(setup, n: int, *, branch="main", group=None) -> list[int]:
    """`n` pushes to `branch`, each its own commit, one job each of the rule "build"."""
    ids = []
    for _ in range(n):
        sha = uuid.uuid4().hex + "0" * 8
        delivery = f"d-{uuid.uuid4().hex[:8]}"
        event = Event(provider="github", source="github", delivery_id=delivery, kind="push",
                      repo="acme/api", ref=f"refs/heads/{branch}", ref_name=branch, before="1" * 40,
                      after=sha, sha=sha)
        d = replace(new_delivery(delivery, received_at=setup.clock()), event=event)
        job = replace(new_job("build", "ci", "jenkins", job="api/build", delay=0),
                      group=group or f"build/refs/heads/{branch}")
        ids += setup.store.ingest(d, [job]).job_ids
        setup.clock.t += 0.001
    return ids


def state(setup, job_id: int) -> dict:
    for d in setup.store.list_deliveries(limit=1000):
        for j in setup.store.get_delivery(d["delivery"])["jobs"]:
            if j["id"] == job_id:
                return j
    raise KeyError(job_id)


def test_the_breaker_stops_hammering_a_jenkins_that_is_down_and_closes_when_it_is_back(
        tmp_path, jenkins, github, open_store):
    setup = Setup(tmp_path, jenkins, github, open_store())
    pol = Policies(targets={"ci": TargetPolicy(breaker=Breaker(failures=2, open_for=30.0))})
    d = setup.dispatcher(policies=pol, concurrency=1)
    jobs = push(setup, 4, group="g")
    jenkins.restarting = True                     # every request: 503 "restarting"
    assert d.run_once() == 1 and d.run_once() == 1      # two transient failures: the breaker opens
    asked = len(jenkins.requests)
    setup.clock.t += 10                           # the retries are due, the breaker is open
    assert d.run_once() == 0 and len(jenkins.requests) == asked
    assert setup.store.breaker_states(pol, now=setup.clock()) == {"ci": "open"}
    jenkins.restarting = False                    # Jenkins is back
    setup.clock.t += 25
    assert d.run_once() == 1                      # one probe
    assert setup.store.breaker_states(pol, now=setup.clock()) == {"ci": "closed"}
    while d.run_once():
        pass
    assert [state(setup, j)["state"] for j in jobs] == ["started"] * 4
    assert len([p for p in jenkins.posts() if p.status == 201]) == 4       # one build each


def test_two_dispatchers_on_one_database_never_run_more_than_max_running(
        tmp_path, jenkins, github, open_store):
    jenkins.build_duration = 0.3
    setup = Setup(tmp_path, jenkins, github, open_store(), interval=0.05, max_interval=0.1)
    pol = Policies(targets={"ci": TargetPolicy(max_running=2)})
    other = open_store()
    dispatchers = [Dispatcher(s, {"ci": setup.target}, {"ci": RetryPolicy()}, owner=owner, concurrency=3,
                              poll_interval=0.01, policies=pol, follow=setup.follow)
                   for s, owner in ((setup.store, "d1"), (other, "d2"))]
    setup.clock.t = time.time()
    jobs = push(setup, 4, branch="a") + push(setup, 4, branch="b")
    stop = threading.Event()
    threads = [threading.Thread(target=d.run, args=(stop,), kwargs={"grace": 5}) for d in dispatchers]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: all(state(setup, j)["state"] == "succeeded" for j in jobs), timeout=120,
                 what="every build to end")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert len(jenkins.builds()) == 8 and jenkins.peak_running() <= 2


def test_cancel_stops_the_superseded_build_on_jenkins_and_its_status_names_the_successor(
        tmp_path, jenkins, github, open_store):
    setup = Setup(tmp_path, jenkins, github, open_store())
    pol = Policies(targets={"ci": TargetPolicy(on_newer="cancel", max_running_per_group=1)})
    d = setup.dispatcher(policies=pol)
    (old,) = push(setup, 1)
    assert d.run_once() == 1
    assert state(setup, old)["state"] == "started"
    (new,) = push(setup, 1)
    assert d.run_once() == 1
    old_job, new_job_ = state(setup, old), state(setup, new)
    assert (old_job["state"], old_job["superseded_by"], new_job_["state"]) == ("superseded", new, "started")
    stops = [r for r in jenkins.posts() if r.path.endswith("/stop")]
    assert [r.status for r in stops] == [302]
    assert [b.result for b in jenkins.builds()][:1] == ["ABORTED"]
    new_sha = setup.store.get_delivery(_delivery_of(setup, new))["event"]["sha"]
    final = [s for s in setup.store.statuses_of(_delivery_of(setup, old)) if s["rank"] % 10 == 3]
    assert [(s["state"], s["description"]) for s in final] == [("error", f"superseded by {new_sha[:12]}")]


def _delivery_of(setup, job_id: int) -> str:
    for d in setup.store.list_deliveries(limit=1000):
        if any(j["id"] == job_id for j in d["jobs"]):
            return d["delivery"]
    raise KeyError(job_id)


def test_a_superseded_exec_command_gets_sigterm_in_its_own_dispatcher(tmp_path, open_store):
    store = open_store()
    marker = tmp_path / "terminated"
    target = ExecTarget("ci", {})
    pol = Policies(targets={"ci": TargetPolicy(on_newer="cancel", max_running_per_group=1)})
    clock = Clock(time.time())
    d = Dispatcher(store, {"ci": target}, {"ci": RetryPolicy()}, owner="d1", concurrency=2,
                   policies=pol, poll_interval=0.01)
    script = f"trap 'echo term > {marker}; exit 143' TERM; sleep 30 & wait"
    command = {"command": ["sh", "-c", script]}

    def enqueue(name):
        job = replace(new_job("build", "ci", "exec", **command), group="build/refs/heads/main")
        return store.ingest(new_delivery(name, received_at=clock()), [job]).job_ids[0]

    first = enqueue("d-1")
    stop = threading.Event()
    thread = threading.Thread(target=d.run, args=(stop,), kwargs={"grace": 5})
    thread.start()
    try:
        wait_for(lambda: target._by_job, timeout=30, what="the first command to run")
        command["command"] = ["true"]
        second = enqueue("d-2")
        wait_for(marker.exists, timeout=30, what="SIGTERM to the first command")
        wait_for(lambda: store.get_delivery("d-2")["jobs"][0]["state"] == "succeeded", timeout=30,
                 what="the newer job to run")
    finally:
        stop.set()
        thread.join(30)
    old = store.get_delivery("d-1")["jobs"][0]
    assert (old["id"], old["state"], old["superseded_by"]) == (first, "superseded", second)


def test_coalesce_reports_the_waiting_jobs_it_replaced_as_canceled(tmp_path, jenkins, github, open_store):
    setup = Setup(tmp_path, jenkins, github, open_store())
    d = setup.dispatcher(policies=Policies(targets={"ci": TargetPolicy(on_newer="coalesce")}))
    old, new = push(setup, 2)
    assert d.run_once() == 1
    assert (state(setup, old)["state"], state(setup, new)["state"]) == ("superseded", "started")
    new_sha = setup.store.get_delivery(_delivery_of(setup, new))["event"]["sha"]
    final = [s for s in setup.store.statuses_of(_delivery_of(setup, old)) if s["rank"] % 10 == 3]
    assert [(s["state"], s["description"]) for s in final] == [("canceled", f"superseded by {new_sha[:12]}")]
    assert len([p for p in jenkins.posts() if p.status == 201]) == 1
