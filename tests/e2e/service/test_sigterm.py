"""SIGTERM to a real `cibridge serve`: the job in flight finishes, the rest stays queued, exit 0."""
from __future__ import annotations

import os
import time

import pytest

from helpers.process import children, wait_for
from helpers.service import (RECORD, build_counts, db, job_states, push, rules,
                             start_bridge)  # noqa: F401  (fixture)


# --- SIGTERM ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_sigterm_finishes_the_job_in_flight_leaves_the_rest_queued_and_exits_0(tmp_path, start_bridge):
    builds = tmp_path / "builds.log"
    bridge = start_bridge(rules(builds, f"{{target: local, command: ['/bin/sh', '-c', 'sleep 1; {RECORD}']}}",
                                settings="dispatcher_concurrency: 1"))
    for _ in range(3):
        _, body, headers = push()
        assert bridge.post("github", body, headers).status_code == 202
    # One job in flight; exec jobs are never claimed ahead of a free slot (another instance may
    # be idle), so the other two wait unleased.
    wait_for(lambda: job_states(bridge).get("running") == 1, what="a job in flight")
    pids = [bridge.proc.pid] + children(bridge.proc.pid)
    pids += [p for c in children(bridge.proc.pid) for p in children(c)]

    t0 = time.monotonic()
    assert bridge.stop() == 0
    assert time.monotonic() - t0 < 15, bridge.logs()[-6000:]    # what held the stop up
    assert not [p for p in pids if os.path.exists(f"/proc/{p}")]   # the whole tree is gone
    states = job_states(bridge)
    assert states.get("succeeded") == 1 and states.get("queued") == 2 and not states.get("running")
    assert list(build_counts(builds).values()) == [1]   # the one in flight finished, once
    # The other two wait for the next start: no lease, no attempt spent. (Releasing jobs claimed
    # ahead is tested in test_dispatcher.py with a quick-starting target.)
    with db(bridge) as conn:
        waiting = conn.execute("SELECT lease_owner, attempts FROM jobs WHERE state = 'queued'").fetchall()
    assert [tuple(r) for r in waiting] == [(None, 0), (None, 0)]
