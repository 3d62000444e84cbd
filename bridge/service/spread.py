"""Web stage, before the app: client connections spread evenly over the gunicorn workers.

Input: each worker's count of open connections, published in a table of shared memory that the
gunicorn master maps before it forks them. Output: whether a worker takes the next connection now
(`Spread.fair`). Linux wakes nearly always the same worker for a shared listening socket, and a
kept-alive connection stays where it landed: without this, one worker served every connection of
a proxy or a busy host on one core while the others idled.
"""
from __future__ import annotations

import mmap
import os
import struct
import time

from bridge.metrics import process_alive

#: One worker: its pid (0: a free slot, -1: forked, not yet serving), its open connections
#: (BUSY when it takes none by its own limits), its last heartbeat (time.monotonic).
_SLOT = struct.Struct("=qqd")
_HEADER = struct.Struct("=q")           # slots in use: the highest ever assigned, plus one
SLOTS = 256
#: A worker without a heartbeat this long (stuck, or killed before its master noticed) is not
#: waited for. Workers beat at least once a second (gunicorn's poll loop times out after 1 s).
STALE = 2.0
#: How many more connections than the least loaded worker one may hold and still take another.
SLACK = 1
BUSY = 2**62
#: A slot given to a worker about to be forked that never served this long is free again.
_RESERVED = 120.0


class Spread:
    """The table (mapped before the workers fork, shared with all of them) and this process's slot."""

    def __init__(self, slots: int = SLOTS):
        self.slots = slots
        self.mem = mmap.mmap(-1, _HEADER.size + _SLOT.size * slots)   # MAP_SHARED | MAP_ANONYMOUS
        self.slot: int | None = None

    def _at(self, i: int) -> int:
        return _HEADER.size + i * _SLOT.size

    # -- in the gunicorn master (its pre_fork and child_exit hooks) --------------------------

    def assign(self, worker) -> None:
        """Give the worker about to be forked a free slot (none: it accepts without looking).
        A slot is free when released, or left by a worker gunicorn dropped without its
        child_exit hook (a fork that failed, a worker already gone when it was killed)."""
        worker.spread_slot = None
        used = _HEADER.unpack_from(self.mem, 0)[0]
        now = time.monotonic()
        for i in range(self.slots):
            pid, _, beat = _SLOT.unpack_from(self.mem, self._at(i))
            if pid == 0 or (pid == -1 and now - beat > _RESERVED) or (pid > 0 and not process_alive(pid)):
                _SLOT.pack_into(self.mem, self._at(i), -1, 0, now)
                _HEADER.pack_into(self.mem, 0, max(used, i + 1))
                worker.spread_slot = i
                return

    def release(self, worker) -> None:
        i = getattr(worker, "spread_slot", None)
        if i is not None:
            _SLOT.pack_into(self.mem, self._at(i), 0, 0, 0.0)

    # -- in a worker ---------------------------------------------------------------------------

    def publish(self, conns: int | None) -> None:
        """This worker's open connections (None: it takes none now), with a heartbeat."""
        if self.slot is not None:
            _SLOT.pack_into(self.mem, self._at(self.slot), os.getpid(),
                            BUSY if conns is None else conns, time.monotonic())

    def fewest(self) -> int:
        """The fewest connections a live worker other than this one holds (BUSY: none takes any)."""
        fewest = BUSY
        now = time.monotonic()
        for i in range(_HEADER.unpack_from(self.mem, 0)[0]):
            if i == self.slot:
                continue
            pid, other, beat = _SLOT.unpack_from(self.mem, self._at(i))
            if pid > 0 and now - beat < STALE and other < fewest:
                fewest = other
        return fewest

    def fair(self, conns: int) -> bool:
        """Whether a worker holding `conns` connections should take one more: true unless another
        live worker that takes connections holds fewer than `conns - SLACK`. The least loaded
        worker always may, so some worker always takes connections."""
        return self.slot is None or conns <= self.fewest() + SLACK

    def crowded(self, conns: int) -> bool:
        """Whether a worker holding `conns` connections should close a kept-alive one after its
        reply (`Connection: close`): it holds more than a fair worker can reach. Its client
        connects again, to a worker with fewer. This evens out the connections a worker took
        while the others were still starting; one more than `fair` allows, so that closing one
        never makes the worker take it back."""
        return self.slot is not None and conns > self.fewest() + SLACK + 1
