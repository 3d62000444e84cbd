"""Group commit: the writes that threads of one process ask for at the same time share one transaction.

Input: items from concurrent callers and a function that writes a batch of them in one
transaction. Output: each caller gets its own item's result (or the batch's exception) only after
that transaction committed.

Why: every commit costs a writer-lock round, SQLite's page writes and, with durability "full",
an fsync (milliseconds on most disks). With one commit per delivery, acks per second are capped at
one over that; sharing a commit among the deliveries that arrived while the previous one was being
written lifts the cap with the load, and costs nothing when a delivery arrives alone (it does not
wait for company). The leader takes the batch only once its transaction has begun: callers
arriving while it waited for the writer lock (another process committing) ride along.
"""
from __future__ import annotations

import threading
from collections.abc import Callable


class _Slot:
    __slots__ = ("item", "ready", "lead", "result", "error")

    def __init__(self, item):
        self.item = item
        self.ready = threading.Event()
        self.lead = False
        self.result = None
        self.error: BaseException | None = None


class GroupCommit:
    """Leader/follower batching without a thread of its own.

    The first caller finding no batch in progress leads: it takes every pending item (its own
    included) and runs `write_batch` on them. Callers arriving meanwhile queue; when the batch is
    done its followers are woken with their results and the first queued caller leads the next
    batch, so no caller writes for others for long.

    `write_batch(take) -> results` begins a transaction, calls `take()` once for the items (every
    one pending by then), writes them (in that transaction, as far as it can) and returns one
    result per item; a result that is an exception is raised to that item's caller. If it
    raises, every caller of the batch gets the exception (all pending then, if it never took).
    """

    def __init__(self, write_batch: Callable[[list], list]):
        self._write_batch = write_batch
        self._lock = threading.Lock()
        self._pending: list[_Slot] = []
        self._busy = False

    def submit(self, item):
        slot = _Slot(item)
        with self._lock:
            self._pending.append(slot)
            lead = not self._busy
            self._busy = True
        if not lead:
            slot.ready.wait()
            if not slot.lead:
                return _outcome(slot)
        batch: list[_Slot] | None = None

        def take() -> list:
            nonlocal batch
            if batch is None:
                with self._lock:
                    batch, self._pending = self._pending, []
            return [s.item for s in batch]

        try:
            results = self._write_batch(take)
            for s, r in zip(batch, results):
                s.result = r
        except BaseException as exc:
            take()
            for s in batch:
                s.error = exc
        finally:
            with self._lock:
                if self._pending:
                    nxt = self._pending[0]
                    nxt.lead = True
                    nxt.ready.set()
                else:
                    self._busy = False
            for s in batch:
                if s is not slot:
                    s.ready.set()
        return _outcome(slot)


def _outcome(slot: _Slot):
    if slot.error is not None:
        raise slot.error
    if isinstance(slot.result, BaseException):
        raise slot.result
    return slot.result
