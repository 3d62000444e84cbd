"""Ingress's record of the deliveries it refuses (bad signature, unknown source, too large, not
JSON) for the delivery page: bounded so a flood of them is no lever on the store.

Input: a refusal (source, status, our message, the clipped delivery id, the client's address)
and its reply. Output: at most one row a second per web worker, written after the reply has
gone and never two at a time; refusals in between are counted into the next row's `dropped`.
A row that cannot be written is logged and counted in the next one; the reply never waits for
it or depends on it, and a valid delivery never does either.
"""
from __future__ import annotations

import logging
import threading
import time

from bridge.store import NewRefusal

log = logging.getLogger("bridge.ingress")

#: Seconds between two rows of one worker.
INTERVAL = 1.0
#: A write not finished after this long (a database that hangs) no longer blocks the next one.
STALE = 30.0


class RefusalRecorder:
    """One per web worker (AppState): decides which refusals are written, and writes them."""

    def __init__(self, interval: float = INTERVAL, *, clock=time.monotonic, wall=time.time):
        self.interval = interval
        self._clock, self._wall = clock, wall
        self._lock = threading.Lock()
        self._next = float("-inf")     # the clock's time the next row may be written
        self._writing_since = None     # a write is under way since then
        self._dropped = 0              # refusals let go since the last row written

    def note(self, store, response, *, source: str, status: int, reason: str,
             delivery: str | None, peer: str | None) -> bool:
        """Record this refusal after `response` has been sent, if its turn has come; else count
        it. Returns whether it will be written. Never raises."""
        dropped = self._take()
        if dropped is None:
            return False
        try:
            row = NewRefusal(received_at=self._wall(), source=source, status=status, reason=reason,
                             delivery=delivery, peer=peer, dropped=dropped)
            response.call_on_close(lambda: self.write(store, row))
            return True
        except Exception:   # noqa: BLE001 - a refusal's record must not break its reply
            log.exception("refused delivery not recorded")
            self._done(dropped + 1)
            return False

    def _take(self) -> int | None:
        """The refusals let go before this one when it is to be written now, else None."""
        now = self._clock()
        with self._lock:
            busy = self._writing_since is not None and now - self._writing_since < STALE
            if busy or now < self._next:
                self._dropped += 1
                return None
            self._writing_since, self._next = now, now + self.interval
            dropped, self._dropped = self._dropped, 0
            return dropped

    def _done(self, lost: int = 0) -> None:
        with self._lock:
            self._writing_since = None
            self._dropped += lost

    def write(self, store, row: NewRefusal) -> None:
        """Store the row (after the reply); a failure is logged and counted, never raised."""
        try:
            store.record_refusal(row)
        except Exception as exc:   # noqa: BLE001 - StoreUnavailable, or anything: log and go on
            log.warning("refused delivery not recorded: %s", exc,
                        extra={"delivery": row.delivery, "source": row.source})
            self._done(row.dropped + 1)
        else:
            self._done()
