"""The memory target keeps the latest jobs it started, not every one: a bridge that runs on it
for months (or a 100,000-delivery soak, bench/start_bench.py --soak) must stay flat."""
from __future__ import annotations

import os

from bridge.jobs import Job
from bridge.targets.memory import MemoryTarget


def test_it_keeps_the_latest_jobs_of_each_target(monkeypatch):
    monkeypatch.setattr(MemoryTarget, "KEEP", 5)
    name = f"mem-keep-{os.getpid()}"
    target = MemoryTarget(name, {})
    other = MemoryTarget(name + "-other", {})
    jobs = [Job(id=i, delivery=f"d{i}", rule="r", target=name, kind="memory", request={"i": i})
            for i in range(12)]
    for job in jobs:
        run = target.start(job)
        assert run.state == "succeeded" and run.remote_id == f"memory-{job.id}"
    other.start(jobs[0])
    assert list(MemoryTarget.started[name]) == jobs[-5:]
    assert list(MemoryTarget.started[name + "-other"]) == [jobs[0]]
