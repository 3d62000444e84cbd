"""The workers' shared connection counts (bridge/service/spread.py): who takes the next
connection, who sheds a kept-alive one, and which workers are not waited for."""
from __future__ import annotations

import copy
import os
import time
from types import SimpleNamespace

import pytest

from bridge.service import spread as spread_mod
from bridge.service.spread import BUSY, SLACK, Spread


def workers(n: int, slots: int = 8) -> list[Spread]:
    """`n` workers' views of one table, as the master's pre_fork would set them up."""
    table = Spread(slots)
    out = []
    for _ in range(n):
        worker = SimpleNamespace()
        table.assign(worker)
        view = copy.copy(table)          # the same shared mapping, a slot of its own
        view.slot = worker.spread_slot
        out.append(view)
    return out


def test_the_master_gives_each_worker_its_own_slot_and_takes_it_back():
    table = Spread(3)
    forked = [SimpleNamespace() for _ in range(4)]
    for w in forked:
        table.assign(w)
    assert [w.spread_slot for w in forked] == [0, 1, 2, None]      # a fourth accepts without looking
    table.release(forked[1])
    again = SimpleNamespace()
    table.assign(again)
    assert again.spread_slot == 1
    table.release(SimpleNamespace())                                 # a worker without a slot: no error


def test_a_worker_takes_connections_while_it_holds_at_most_slack_more_than_the_fewest():
    a, b = workers(2)
    a.publish(0)
    b.publish(0)
    assert a.fair(0) and b.fair(0)
    b.publish(3)
    assert a.fair(4) and not b.fair(3 + SLACK + 1) and a.fair(3 + SLACK)
    assert not a.fair(3 + SLACK + 1)
    # the least loaded always may: some worker always takes connections
    a.publish(10)
    b.publish(4)
    assert b.fair(4) and not a.fair(10)


def test_a_worker_that_is_not_serving_yet_or_takes_none_is_not_waited_for():
    a, b, c = workers(3)
    a.publish(5)
    assert a.fair(5)            # b and c were forked but never published: pid -1
    b.publish(None)             # b takes no connections by its own limits (full, paused, stopping)
    assert b.fewest() == 5 and a.fewest() == BUSY
    assert a.fair(500)


def test_a_worker_without_a_heartbeat_is_not_waited_for(monkeypatch):
    a, b = workers(2)
    b.publish(0)
    a.publish(9)
    assert not a.fair(9)
    later = time.monotonic() + spread_mod.STALE + 0.1
    monkeypatch.setattr(spread_mod.time, "monotonic", lambda: later)
    assert a.fair(9) and a.fewest() == BUSY


def test_a_released_slot_is_not_waited_for():
    table = Spread(4)
    wa, wb = SimpleNamespace(), SimpleNamespace()
    table.assign(wa)
    table.assign(wb)
    a, b = copy.copy(table), copy.copy(table)
    a.slot, b.slot = wa.spread_slot, wb.spread_slot
    a.publish(7)
    b.publish(1)
    assert not a.fair(7)
    table.release(wb)           # the master reaped b
    assert a.fair(7)


def test_a_crowded_worker_sheds_only_past_what_fair_allows():
    a, b = workers(2)
    b.publish(10)
    # a fair worker can reach 10 + SLACK + 1 connections (it takes one more at 10 + SLACK)
    assert not a.crowded(10 + SLACK + 1)
    assert a.crowded(10 + SLACK + 2)
    alone = workers(1)[0]
    alone.publish(50)
    assert not alone.crowded(50) and alone.fair(50)
    unassigned = Spread(2)
    assert unassigned.fair(10**6) and not unassigned.crowded(10**6)


def test_the_table_is_shared_with_forked_processes():
    a, b = workers(2)
    pid = os.fork()
    if pid == 0:                                # the child: a worker publishing its count
        try:
            b.publish(42)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert a.fewest() == 42


@pytest.mark.parametrize("slots", [1, 2])
def test_the_count_of_slots_in_use_only_grows(slots):
    table = Spread(slots)
    w = SimpleNamespace()
    table.assign(w)
    table.release(w)
    other = SimpleNamespace()
    table.assign(other)
    assert other.spread_slot == 0


def test_a_worker_leaves_connections_to_others_unless_they_are_left_queued():
    from bridge.service.webworker import STUCK_TURNS, ReadAheadWorker
    a, b = workers(2)
    b.publish(0)
    me = SimpleNamespace(spread=a, nr_conns=5, spread_stuck=0)
    assert ReadAheadWorker._leaves_to_others(me)
    me.spread_stuck = STUCK_TURNS                 # b is stuck: its connections wait in the kernel
    assert not ReadAheadWorker._leaves_to_others(me)
    me.spread_stuck, me.nr_conns = 0, 1
    assert not ReadAheadWorker._leaves_to_others(me)
    assert not ReadAheadWorker._leaves_to_others(SimpleNamespace(spread=None, nr_conns=9, spread_stuck=0))


def test_a_slot_left_by_a_worker_gunicorn_dropped_is_given_again(monkeypatch):
    table = Spread(2)
    gone, failed = SimpleNamespace(), SimpleNamespace()
    table.assign(gone)
    table.assign(failed)                          # its fork failed: reserved, never served
    view = copy.copy(table)
    view.slot = gone.spread_slot
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
    spread_mod._SLOT.pack_into(table.mem, table._at(gone.spread_slot), child, 3, time.monotonic())
    again = SimpleNamespace()
    table.assign(again)
    assert again.spread_slot == gone.spread_slot  # its process is gone
    serving = copy.copy(table)
    serving.slot = again.spread_slot
    serving.publish(1)                            # this process: alive, so its slot stays taken
    later = time.monotonic() + spread_mod._RESERVED + 1
    monkeypatch.setattr(spread_mod.time, "monotonic", lambda: later)
    third = SimpleNamespace()
    table.assign(third)
    assert third.spread_slot == failed.spread_slot
