"""`cibridge retry` in bulk: builds that failed while their command was down are found by filter,
counted, confirmed (a terminal, or --yes) and run again; each as a new run of its job.

Input: real exec builds run by a real Dispatcher on a real SQLite store, `cibridge retry` run
in-process and, for the prompt, as a process on a pseudo-terminal. Output: job states, history
and the command's text.
"""
from __future__ import annotations

import os
import pty
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from bridge.cli.main import cli
from bridge.dispatch.loop import Dispatcher
from bridge.jobs import Job
from bridge.policies import RetryPolicy
from bridge.store import Store
from bridge.targets.codebuild import idempotency_token
from bridge.targets.exec import ExecTarget
from helpers.store import db_url, new_delivery, new_job, open_store  # noqa: F401  (fixtures)

#: Fails while the command's service is down (no flag file), builds once it is back.
NEEDS_SERVICE = ["/bin/sh", "-c", 'test -e "$UP" && echo built']


@pytest.fixture
def outage(tmp_path):
    """Three builds of target `local` and one of `other` failed while the service was down."""
    state = tmp_path / "var"
    store = Store.open(f"sqlite:///{state}/bridge.db", durability="normal")
    up = tmp_path / "up"
    env = {"UP": str(up)}
    now = time.time()
    for i in range(3):
        store.ingest(new_delivery(f"d-{i}", received_at=now, repo="acme/api", after=f"{i:040x}"),
                     [new_job("deploy", target="local", kind="exec", command=NEEDS_SERVICE, env=env)])
    store.ingest(new_delivery("d-other", received_at=now, repo="acme/web"),
                 [new_job("lint", target="other", kind="exec", command=NEEDS_SERVICE, env=env)])
    targets = {name: ExecTarget(name, {"kind": "exec"}) for name in ("local", "other")}
    dispatcher = Dispatcher(store, targets, {name: RetryPolicy() for name in targets}, owner="d1")
    while dispatcher.run_once():
        pass
    assert states(store) == {"d-0": "failed", "d-1": "failed", "d-2": "failed", "d-other": "failed"}
    yield store, dispatcher, state, up
    store.close()


def states(store) -> dict:
    return {r["delivery"]: r["jobs"][0]["state"] for r in store.list_deliveries()}


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def test_failed_builds_of_a_target_retried_in_bulk_after_the_outage(outage):
    store, dispatcher, state, up = outage
    bulk = ["retry", "--state-dir", state, "--state", "failed", "--since", "1h", "--target", "local"]
    # No terminal to ask on (CliRunner's stdin is not one): nothing without --yes.
    code, out = run(*bulk)
    assert code == 1
    assert "3 failed job(s) match; there is no terminal to confirm on: add --yes to queue them again" in out
    assert out.count("  deploy -> local  failed  ") == 3
    assert set(states(store).values()) == {"failed"}

    code, out = run(*bulk, "--yes")
    assert code == 0 and out.endswith("queued 3 job(s) again\n"), out
    up.touch()                                                    # the service is back
    while dispatcher.run_once():
        pass
    assert states(store) == {"d-0": "succeeded", "d-1": "succeeded", "d-2": "succeeded",
                             "d-other": "failed"}
    job = store.get_delivery("d-0")["jobs"][0]
    assert [a["outcome"] for a in job["history"]] == ["failed", "requeued", "succeeded"]
    assert job["history"][1]["error"] == "queued again by an operator (was failed)"
    assert job["attempts"] == 2 and job["request"]["bridge_rerun"] == 1
    # Done: the same command again finds nothing.
    assert run(*bulk, "--yes") == (0, "no failed job matches; nothing queued\n")


def test_filters_by_repo_glob_rule_and_age(outage):
    store, _, state, _ = outage
    common = ["retry", "--state-dir", state, "--state", "failed", "--yes"]
    assert run(*common, "--since", "1h", "--repo", "ACME/w*") [1].endswith("queued 1 job(s) again\n")
    assert states(store)["d-other"] == "queued"
    assert run(*common, "--rule", "dep*", "--since", "0s")[1] == "no failed job matches; nothing queued\n"
    code, out = run("retry", "--state-dir", state)
    assert code == 2 and "give job ids, or filters such as --state failed --since 1h" in out
    code, out = run(*common, "--since", "soon")
    assert code == 2 and "'soon' is not a duration" in out


def test_a_failed_job_by_its_id_and_a_succeeded_one_refused(outage):
    store, _, state, _ = outage
    job_id = store.get_delivery("d-1")["jobs"][0]["id"]
    assert run("retry", "--state-dir", state, job_id) == (0, f"job {job_id} queued again\n")
    code, out = run("retry", "--state-dir", state, job_id)
    assert (code, out) == (1, f"job {job_id} does not exist or is not dead or failed\n")


def test_the_prompt_on_a_terminal(outage, tmp_path):
    store, _, state, _ = outage
    primary, secondary = pty.openpty()
    try:
        os.write(primary, b"y\n")
        done = subprocess.run([sys.executable, "-m", "bridge", "retry", "--state-dir", str(state),
                               "--state", "failed", "--target", "local"],
                              stdin=secondary, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "BRIDGE_RULES": str(tmp_path / "none.yaml")})
    finally:
        os.close(primary)
        os.close(secondary)
    assert done.returncode == 0, done.stderr
    assert "Queue these 3 failed job(s) again? [y/N]: " in done.stdout
    assert done.stdout.endswith("queued 3 job(s) again\n")
    assert sorted(states(store).values()) == ["failed", "queued", "queued", "queued"]


def test_a_rerun_is_a_new_build_for_targets_with_an_idempotency_key():
    """CodeBuild would answer a failed build's token with that build; Jenkins would find it by
    BRIDGE_DELIVERY. After `cibridge retry` of a failed job both keys change; a transient retry
    of the same run keeps them."""
    first = Job(id=7, delivery="d-1", rule="r", target="t", request={}, event=None)
    rerun = Job(id=7, delivery="d-1", rule="r", target="t", request={"bridge_rerun": 1}, event=None)
    assert idempotency_token(first) != idempotency_token(rerun)
    assert idempotency_token(rerun) == idempotency_token(Job(id=7, delivery="d-1", rule="", target="",
                                                             request={"bridge_rerun": 1}, event=None, attempt=5))


def test_a_jenkins_rerun_requests_a_new_build_instead_of_finding_the_failed_one():
    from dataclasses import replace

    from bridge.events import Event
    from bridge.targets.jenkins import JenkinsTarget
    from helpers.standins.jenkins import JenkinsStandin
    standin = JenkinsStandin(quiet_period=0.2)
    standin.add_job("team/api/build", ["GIT_SHA", "BRIDGE_DELIVERY"])
    standin.start()
    try:
        t = JenkinsTarget("ci", {"kind": "jenkins", "url": standin.url, "user": "bridge",
                                 "token": standin.users["bridge"]}, sleep=standin.advance, now=standin.now)
        event = Event(provider="github", source="github", delivery_id="d-9", kind="push", repo="a/b",
                      ref="refs/heads/main", ref_name="main", before="0" * 40, after="1" * 40, sha="1" * 40)
        job = Job(id=1, delivery="d-9", rule="api-build", target="ci", event=event,
                  request={"target": "ci", "job": "team/api/build", "parameters": {"GIT_SHA": "1" * 40}})
        first = t.start(job)
        assert first.remote_id == "team/api/build#1"
        transient = t.start(replace(job, attempt=2))           # the same run: found, not requested
        assert transient.detail["requested_before"] is True
        rerun = t.start(replace(job, attempt=3, request={**job.request, "bridge_rerun": 1}))
        assert "requested_before" not in rerun.detail and rerun.remote_id == "team/api/build#2"
        assert [p.query["BRIDGE_DELIVERY"] for p in standin.posts()] == [["d-9-1"], ["d-9-1-rerun1"]]
    finally:
        standin.stop()


def test_find_and_requeue_jobs_on_both_backends(open_store):
    from bridge.jobs import Run
    store = open_store()
    failed, dead, running = store.ingest(new_delivery("d-1", repo="Acme/Api"), [
        new_job("a", target="t1"), new_job("b", target="t2"), new_job("c", target="t1")]).job_ids
    store.claim("A", 3, lease_seconds=60, now=1000.0)
    store.record_run(failed, "A", Run("r-1", state="failed"), now=1001.0)
    store.record_dead(dead, "A", "404", now=1002.0)
    assert [j["id"] for j in store.find_jobs(states=("failed",), repo="acme/*")] == [failed]
    assert [j["id"] for j in store.find_jobs(since=1001.5)] == [dead]
    assert [j["id"] for j in store.find_jobs(rule="[ab]", repo="ACME/API")] == [failed, dead]
    assert store.find_jobs(target="t1", rule="b") == []
    assert store.retry_jobs([failed, dead, running], now=2000.0, states=("failed",)) == [failed]
    assert store.retry_jobs([failed, dead, running], now=2000.0) == [dead]
    claimed = {c.id: c for c in store.claim("A", 3, lease_seconds=60, now=2000.0)}
    again, same = claimed[failed], claimed[dead]             # (and `running`, its lease expired)
    assert (again.id, again.attempt, again.request["bridge_rerun"]) == (failed, 2, 1)
    assert (same.id, same.attempt, "bridge_rerun" in same.request) == (dead, 2, False)
    store.record_run(failed, "A", Run("r-2", state="failed"), now=2001.0)
    assert store.retry_jobs([failed], now=3000.0) == [failed]
    assert store.get_delivery("d-1")["jobs"][0]["request"]["bridge_rerun"] == 2
    assert [d for d in store.delivery_ids("d-")] == ["d-1"]
