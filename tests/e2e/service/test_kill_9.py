"""kill -9 of a web worker and the dispatcher in the middle of a stream of signed pushes to a real
`cibridge serve`: nothing lost, nothing built twice."""
from __future__ import annotations

import os
import signal
import threading

import pytest
import requests

from helpers.process import wait_for
from helpers.service import (RECORD, build_counts, db, half_stored, job_states, push, rules, settled,
                             start_bridge)  # noqa: F401  (fixture)


# --- kill -9 in the middle of a stream ---------------------------------------------------------

class Stream:
    """Posts distinct signed deliveries from a few keep-alive connections until stopped or
    `total` are sent; records each answer (status code, or None for no answer)."""

    def __init__(self, bridge, total: int, connections: int = 3):
        self.bridge = bridge
        self.total = total
        self.answers: dict[str, int | None] = {}
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(connections)]

    def _run(self):
        session = requests.Session()
        while True:
            with self._lock:
                if len(self.answers) >= self.total:
                    return
                delivery, body, headers = push()
                self.answers[delivery] = None
            try:
                status = session.post(f"{self.bridge.url}/hooks/github", data=body, headers=headers,
                                      timeout=10).status_code
            except requests.RequestException:
                session.close()
                session = requests.Session()
                continue
            with self._lock:
                self.answers[delivery] = status

    def start(self):
        for t in self._threads:
            t.start()
        return self

    def wait_for_count(self, n: int):
        wait_for(lambda: len(self.answers) >= n, timeout=60, what=f"{n} deliveries sent")

    def join(self):
        for t in self._threads:
            t.join(60)


@pytest.mark.slow
def test_kill_9_of_a_web_worker_and_the_dispatcher_mid_stream_loses_and_doubles_nothing(
        tmp_path, start_bridge):
    builds = tmp_path / "builds.log"
    concurrency = 4
    bridge = start_bridge(rules(builds, f"{{target: local, command: ['/bin/sh', '-c', '{RECORD}; sleep 0.03']}}",
                                settings=f"dispatcher_concurrency: {concurrency}"))
    stream = Stream(bridge, total=360).start()

    stream.wait_for_count(120)
    worker = bridge.web_workers()[0]
    os.kill(worker, signal.SIGKILL)
    stream.wait_for_count(240)
    dispatcher = bridge.child("dispatch")
    wait_for(lambda: job_states(bridge).get("running"), timeout=20, what="jobs in flight")
    os.kill(dispatcher, signal.SIGKILL)
    stream.join()

    # The supervisor restarts the dispatcher, gunicorn the worker; the new dispatcher takes over
    # the dead one's leases once they expire (2 s).
    wait_for(lambda: (bridge.child("dispatch") or dispatcher) != dispatcher, what="a new dispatcher")
    wait_for(lambda: worker not in bridge.web_workers(), what="the killed worker replaced")
    wait_for(lambda: settled(bridge), timeout=60, what="every job finished")

    acked = [d for d, status in stream.answers.items() if status in (200, 202)]
    unanswered = [d for d, status in stream.answers.items() if status is None]
    assert len(acked) >= 300, stream.answers          # the stream really went on through both kills
    assert {s for s in stream.answers.values() if s is not None} <= {202}
    runs = build_counts(builds)
    with db(bridge) as conn:
        jobs = {r["delivery_id"]: r for r in conn.execute("SELECT id, delivery_id, state FROM jobs")}
        lost = {r[0] for r in conn.execute("SELECT job_id FROM job_attempts WHERE outcome = 'lost'")}

    # Every acknowledged delivery was built...
    for d in acked:
        assert d in jobs, f"acknowledged delivery {d} has no job"
        assert jobs[d]["state"] == "succeeded" and runs[jobs[d]["id"]] >= 1, dict(jobs[d])
    # ...and none twice, except jobs in flight when their dispatcher died (their lease was lost).
    doubled = {job for job, n in runs.items() if n > 1}
    assert max(runs.values()) <= 2
    assert doubled <= lost, (doubled, lost)
    assert len(doubled) <= concurrency
    # A delivery that got no answer is either absent or stored whole; nothing is ever half-stored.
    assert half_stored(bridge) == []
    for d in unanswered:
        assert d not in jobs or jobs[d]["state"] == "succeeded"
    # Every job that ran belongs to a stored delivery (nothing ran for a rolled-back one).
    assert set(runs) <= {r["id"] for r in jobs.values()}
