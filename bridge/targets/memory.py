"""The in-memory target: records the jobs it is given, for tests and dry runs.

Input: `Job`. Output: a `Run` in state "succeeded"; the job is appended to `started` (the last
KEEP of each target: a bridge that runs for months on it must not keep every job it ever ran).
"""
from __future__ import annotations

import collections
import threading

from bridge.jobs import Job, Run
from bridge.targets.base import Target


class MemoryTarget(Target):
    kind = "memory"
    config_keys = {"kind": True, "fail": False}
    run_keys = {"target": True, "name": False, "parameters": False}

    #: How many of its latest jobs each memory target keeps in `started`.
    KEEP = 100
    #: The latest jobs any MemoryTarget started in this process, by target name (tests read it).
    started: dict[str, collections.deque[Job]] = {}
    _lock = threading.Lock()

    def start(self, job: Job) -> Run:
        with self._lock:
            kept = self.started.get(self.name)
            if kept is None:
                kept = self.started[self.name] = collections.deque(maxlen=self.KEEP)
            kept.append(job)
        return Run(remote_id=f"memory-{job.id}", state="succeeded")
