"""Faults on a real `cibridge serve` (supervisor + gunicorn + dispatcher) on 127.0.0.1: its metric
files removed under it, and a store outage longer than the lease while a job runs. Each delivery
is a real GitHub push payload, signed; the exec target appends one line per run of a job to a
file, so a test counts how often each job really ran."""
from __future__ import annotations

import collections
import functools
import json
import os
import shutil
import sqlite3
import time
import uuid

import pytest
import requests

from bridge.metrics import metrics_dir
from helpers.rules import GITHUB_SECRET, SECRET_ENV
from helpers.payloads import load_payload, sign_github
from helpers.process import BridgeProcess, wait_for
from helpers.service import RECORD, rules as service_rules
from helpers.store import unwritable



@functools.lru_cache(maxsize=None)
def _payload():
    """(body, headers, after), read at the first use: without shared/payloads only the tests
    that post it skip."""
    body, headers = load_payload("github/push__f110-single-commit.json")
    return body, headers, json.loads(body)["after"].encode()

def rules(command: str, env: dict) -> str:
    return service_rules(env["BUILDS"], f"{{target: local, command: ['/bin/sh', '-c', '{command}']}}",
                         env=env)


def push():
    delivery = str(uuid.uuid4())
    template, recorded, after = _payload()
    body = template.replace(after, os.urandom(20).hex().encode())
    return delivery, body, {**recorded, "X-GitHub-Delivery": delivery, **sign_github(body, GITHUB_SECRET)}


def build_counts(path) -> collections.Counter:
    if not path.exists():
        return collections.Counter()
    return collections.Counter(int(line.split()[0]) for line in path.read_text().splitlines() if line)


def query(bridge, sql: str) -> list[tuple]:
    conn = sqlite3.connect(bridge.state / "bridge.db", timeout=30)
    try:
        return [tuple(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def settled(bridge) -> bool:
    return not query(bridge, "SELECT 1 FROM jobs WHERE state IN ('queued', 'running')")


@pytest.fixture
def bridge_factory(tmp_path):
    started = []

    def make(text: str) -> BridgeProcess:
        bp = BridgeProcess(tmp_path / "bridge", text, env=SECRET_ENV, workers=2)
        started.append(bp)
        return bp

    yield make
    for bp in started:
        bp.stop()


@pytest.mark.slow
def test_metric_files_removed_under_a_running_bridge_cost_no_reply_and_no_second_build(
        tmp_path, bridge_factory):
    """The metric directory removed (a cleanup of /dev/shm) before a delivery and again while
    its job runs: the stored delivery still gets its 202, the job is recorded and built once."""
    builds = tmp_path / "builds.log"
    mdir = metrics_dir(tmp_path / "bridge" / "var")
    # The build removes the directory too: the dispatcher then counts into a missing one.
    bridge = bridge_factory(rules(f'rm -rf "$METRICS"; {RECORD}',
                                  {"BUILDS": str(builds), "METRICS": str(mdir)}))
    bridge.start()
    assert metrics_dir(bridge.state) == mdir
    shutil.rmtree(mdir)

    delivery, body, headers = push()
    r = bridge.post("github", body, headers)
    assert r.status_code == 202, r.text
    wait_for(lambda: settled(bridge), timeout=30, what="the job recorded")
    assert query(bridge, "SELECT state FROM jobs") == [("succeeded",)]
    assert list(build_counts(builds).values()) == [1]
    logs = bridge.logs()
    assert "cannot count a delivery in the metrics" in logs      # the web worker's count failed
    assert "cannot count a job in the metrics" in logs           # and the dispatcher's
    assert "failed in the dispatcher" not in logs
    assert requests.get(f"{bridge.url}/metrics", timeout=10).status_code == 200


@pytest.mark.slow
def test_a_store_outage_longer_than_the_lease_builds_the_job_once(tmp_path, bridge_factory):
    """The database unwritable from the moment a job runs until well past its 2 s lease: the
    result is recorded once the store is back, the lease renewed before anything is claimed, and
    the job built once (no 'lost' attempt: the dispatcher did not take its own job over)."""
    if os.geteuid() != 0:
        pytest.skip("an unwritable file an open process cannot write needs chattr +i (root)")
    builds, started, go = tmp_path / "builds.log", tmp_path / "started", tmp_path / "go"
    command = f'touch "$STARTED"; while [ ! -e "$GO" ]; do sleep 0.05; done; {RECORD}'
    bridge = bridge_factory(rules(command, {"BUILDS": str(builds), "STARTED": str(started),
                                            "GO": str(go)}))
    bridge.start()
    delivery, body, headers = push()
    assert bridge.post("github", body, headers).status_code == 202
    wait_for(started.exists, timeout=30, what="the build started")
    wal = bridge.state / "bridge.db-wal"
    with unwritable(bridge.state / "bridge.db"), unwritable(wal):
        go.touch()
        wait_for(lambda: build_counts(builds), timeout=30, what="the build finished")
        # Three lease periods with the store down: the lease expires long before it is back.
        # Whichever store call meets the outage first logs it (renewing, claiming, recording).
        wait_for(lambda: any(m in bridge.logs() for m in ("cannot renew leases", "cannot claim jobs",
                                                          "cannot record the result yet")),
                 timeout=30, what="the dispatcher to notice the outage")
        time.sleep(6)
    wait_for(lambda: settled(bridge), timeout=30, what="the result recorded")
    assert query(bridge, "SELECT state FROM jobs") == [("succeeded",)]
    assert query(bridge, "SELECT outcome FROM job_attempts") == [("succeeded",)]
    assert list(build_counts(builds).values()) == [1]
    assert "retrying until the store is back" in bridge.logs()
    wait_for(lambda: "store available again" in bridge.logs(), timeout=30,
             what="the dispatcher to see the store back")
    assert list(build_counts(builds).values()) == [1]
