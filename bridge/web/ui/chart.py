"""The list's chart: deliveries per minute by outcome over the last 24 hours (refusals too), as
SVG shapes.

Input: (minute start, outcome, count) rows from `Store.outcome_counts`. Output: a `Chart`: one
SVG path per outcome (its stacked bars, numbers only) and axis labels in a 1440 x 100 box, which
the template draws as inline SVG (no script, CSS colours by outcome). One path per outcome, not
one element per bar: a busy day's 5,000 bars cost the page 80 ms as elements.

`Counts` keeps a worker's counts of the minutes that are over, and their bars: a delivery is
stored with the time it arrived, so a past minute never gains one, and each page reads only the
minutes since its last read (a million-delivery store: the whole day takes 100-200 ms to count,
a minute ~1 ms) and draws only the current minute's bar.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from bridge.jobs import LISTED_OUTCOMES

WIDTH, HEIGHT, SPAN, BUCKET = 1440, 100, 24 * 3600, 60


@dataclass
class Chart:
    paths: dict = field(default_factory=dict)     # outcome -> SVG path data of its bars
    ticks: list = field(default_factory=list)     # (x, label): every 3 hours
    peak: int = 0
    totals: dict = field(default_factory=dict)    # outcome -> deliveries in the 24 hours


def window(now: float) -> tuple[int, int]:
    """(start of the chart's first minute, start of the current minute)."""
    current = int(now) // BUCKET * BUCKET
    return current + BUCKET - SPAN, current


def build(rows, now: float) -> Chart:
    """The chart of `rows` (minute start, outcome, count) for the 24 hours ending at `now`."""
    start, _ = window(now)
    per_slot: dict[int, dict[str, int]] = {}
    for slot_start, outcome, count in rows:
        slot = (int(slot_start) - start) // BUCKET
        if 0 <= slot < WIDTH:
            counts = per_slot.setdefault(slot, {})
            counts[outcome] = counts.get(outcome, 0) + count
    return _draw(per_slot, start)


def _draw(per_slot: dict, start: int) -> Chart:
    peak = max((sum(c.values()) for c in per_slot.values()), default=0)
    paths, totals = _bars(per_slot, peak)
    return _finish(paths, totals, peak, start)


def _bars(per_slot: dict, peak: int) -> tuple[dict, dict]:
    """(outcome -> path data, outcome -> deliveries) of the slots' stacked bars under `peak`."""
    scale = HEIGHT / peak if peak else 0
    totals = {o: 0 for o in LISTED_OUTCOMES}
    parts: dict[str, list[str]] = {}
    for slot in sorted(per_slot):
        counts = per_slot[slot]
        y = HEIGHT
        for outcome in LISTED_OUTCOMES:
            n = counts.get(outcome, 0)
            if n:
                totals[outcome] += n
                h = max(n * scale, 0.5)
                y -= h
                parts.setdefault(outcome, []).append(f"M{slot} {max(y, 0.0):.2f}h1v{h:.2f}h-1z")
    return {o: "".join(parts[o]) for o in LISTED_OUTCOMES if o in parts}, totals


def _finish(paths: dict, totals: dict, peak: int, start: int) -> Chart:
    chart = Chart(paths=paths, totals=totals, peak=peak)
    for hours in range(0, 25, 3):
        x = hours * 60
        chart.ticks.append((x, time.strftime("%H:%M", time.localtime(start + x * BUCKET))))
    return chart


class Counts:
    """A worker's per-minute counts of the minutes that are over, topped up on each read."""

    def __init__(self):
        self._lock = threading.Lock()
        self._done: dict[int, dict[str, int]] = {}   # minute start -> outcome -> count
        self._until: int | None = None               # minutes before this one are in _done
        self._drawn = None                           # ((minute, peak), _bars of _done)

    def chart(self, store, now: float) -> Chart:
        start, current = window(now)
        with self._lock:
            since = self._until if self._until is not None and self._until >= start else start
            if since == start:
                self._done, self._drawn = {}, None
            rows = store.outcome_counts(since=since, until=now + 1, bucket=BUCKET)
            live: dict[str, int] = {}
            for minute, outcome, count in rows:
                counts = self._done.setdefault(int(minute), {}) if minute < current else live
                counts[outcome] = counts.get(outcome, 0) + count
            self._until = current
            for minute in [m for m in self._done if m < start]:
                del self._done[minute]
            done_peak = max((sum(c.values()) for c in self._done.values()), default=0)
            peak = max(done_peak, sum(live.values()))
            if self._drawn is None or self._drawn[0] != (current, peak):
                # The finished minutes' bars, drawn again only when a minute ends or the peak moves.
                per_slot = {(m - start) // BUCKET: c for m, c in self._done.items()}
                self._drawn = ((current, peak), _bars(per_slot, peak))
            paths, totals = self._drawn[1]
        live_paths, live_totals = _bars({(current - start) // BUCKET: live}, peak) if live else ({}, {})
        return _finish({o: paths.get(o, "") + live_paths.get(o, "") for o in LISTED_OUTCOMES
                        if o in paths or o in live_paths},
                       {o: totals[o] + live_totals.get(o, 0) for o in LISTED_OUTCOMES}, peak, start)
