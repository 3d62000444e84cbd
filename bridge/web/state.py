"""Per-process state of a web worker: the current Config, the Store, the metrics sink, the
recorder of refused deliveries and the brake on wrong admin tokens.

Input: what create_app was given. Output: one object the views read (`current_app.extensions["bridge"]`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from bridge.web.refusals import RefusalRecorder
from bridge.web.throttle import TokenBrake


@dataclass
class AppState:
    config: object
    store: object
    state_dir: str = "var"
    metrics: object = None
    refusals: RefusalRecorder = field(default_factory=RefusalRecorder)
    #: Wrong admin tokens per client, through the login form and the bearer header together.
    brake: TokenBrake = field(default_factory=TokenBrake)

    def observe(self, source: str, status: int, started: float, *, outcome: str, matched=()):
        """Record one delivery's outcome (metrics, sender health). Never raises (Metrics logs
        its own failures): a stored delivery's reply must not depend on it."""
        if self.metrics is not None:
            self.metrics.delivery(source, status, outcome, time.perf_counter() - started, matched)
