"""Store outages as the dispatch side logs them: once when one begins, once when it ends.

Input: each store call's outcome (`down(what, exc)` on `StoreUnavailable`, `up()` on success).
Output: those log lines, `is_down`, and how long a loop backs off while it lasts (`delay`).
"""
from __future__ import annotations

import logging

STORE_BACKOFF_MAX = 5.0   # seconds between claims (and between tries to record) while the store is down


class Outage:
    """One store outage tracker: `down()` logs "<what>: <error>" at its start only, `up()`
    logs `recovered` (if any) at its end. `delay` doubles from `interval` (capped) with each
    `down()`, for a loop that backs off instead of polling a dead store hard."""

    def __init__(self, log: logging.Logger, *, recovered: str | None = None,
                 interval: float = 0.05, max_delay: float = STORE_BACKOFF_MAX):
        self.log = log
        self.recovered = recovered
        self.interval = interval
        self.max_delay = max_delay
        self.is_down = False
        self.delay = interval

    def down(self, what: str, exc: BaseException) -> None:
        """A store call failed: log the start of an outage once; back off further."""
        if not self.is_down:
            self.log.error("%s: %s", what, exc, extra={"delivery": None})
            self.delay = self.interval
        self.delay = min(self.max_delay, max(self.interval, 0.05, self.delay * 2))
        self.is_down = True

    def up(self) -> None:
        """A store call succeeded: the outage (if any) is over."""
        if self.is_down:
            if self.recovered:
                self.log.info(self.recovered, extra={"delivery": None})
            self.is_down = False
