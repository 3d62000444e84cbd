"""Two dispatchers of real bridges on one SQLite file: every job runs exactly once and both take part."""
from __future__ import annotations

import collections
import signal
import subprocess
import sys

import pytest
import requests

from helpers.process import wait_for
from helpers.service import (RECORD, build_counts, db, push, rules, settled,
                             start_bridge)  # noqa: F401  (fixture)


# --- two dispatchers on one SQLite file ----------------------------------------------------------

@pytest.mark.slow
def test_two_dispatchers_on_one_database_never_run_a_job_twice(tmp_path, start_bridge):
    builds = tmp_path / "builds.log"
    bridge = start_bridge(rules(builds, f"{{target: local, command: ['/bin/sh', '-c', '{RECORD}; sleep 0.05']}}",
                                settings="dispatcher_concurrency: 3"), dispatcher=False)
    assert bridge.child("dispatch") is None
    logs, procs = [], []
    try:
        for i in range(2):
            logs.append(open(tmp_path / f"dispatch{i}.log", "wb"))
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "bridge", "dispatch", "--rules", str(bridge.rules),
                 "--state-dir", str(bridge.state)], cwd=bridge.dir, env=bridge.env,
                stdout=logs[i], stderr=subprocess.STDOUT))
        wait_for(lambda: all(b"started" in (tmp_path / f"dispatch{i}.log").read_bytes() for i in range(2)),
                 timeout=30, what="both dispatchers started")
        # Both are polling the same queue when a burst of jobs lands in it.
        session = requests.Session()
        for _ in range(80):
            _, body, headers = push()
            assert session.post(f"{bridge.url}/hooks/github", data=body, headers=headers,
                                timeout=10).status_code == 202
        wait_for(lambda: settled(bridge, 80), timeout=60, what="80 jobs built")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            assert p.wait(30) == 0
        for f in logs:
            f.close()
    runs = build_counts(builds)
    assert len(runs) == 80 and set(runs.values()) == {1}
    with db(bridge) as conn:
        owners = collections.Counter(r[0] for r in conn.execute("SELECT owner FROM job_attempts"))
        outcomes = {r[0] for r in conn.execute("SELECT outcome FROM job_attempts")}
    assert outcomes == {"succeeded"} and sum(owners.values()) == 80
    assert len(owners) == 2, owners                        # both really took part
