"""The in-memory target: records every job it is given, for tests and dry runs.

Input: `Job`. Output: a `Run` in state "succeeded"; the job is appended to `started`.
"""
from __future__ import annotations

import threading

from bridge.jobs import Job, Run
from bridge.targets.base import Target


class MemoryTarget(Target):
    kind = "memory"
    config_keys = {"kind": True, "fail": False}
    run_keys = {"target": True, "name": False, "parameters": False}

    #: Every job any MemoryTarget started in this process, by target name (tests read it).
    started: dict[str, list[Job]] = {}
    _lock = threading.Lock()

    def start(self, job: Job) -> Run:
        with self._lock:
            self.started.setdefault(self.name, []).append(job)
        return Run(remote_id=f"memory-{job.id}", state="succeeded")
