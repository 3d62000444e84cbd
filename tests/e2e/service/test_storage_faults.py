"""A real `cibridge serve` whose database becomes unwritable or whose disk fills: 503 replies, then
recovery without a restart."""
from __future__ import annotations

import os

import pytest
import requests

from helpers.process import wait_for
from helpers.store import fill_disk, small_disk, unwritable  # noqa: F401  (fixture)
from helpers.service import (RECORD, build_counts, db, push, rules, settled,
                             start_bridge)  # noqa: F401  (fixture)


# --- the database unwritable, the disk full: 503, then recovery without a restart -----------------

def _needs_root():
    if os.geteuid() != 0:
        pytest.skip("an unwritable file an open process cannot write needs chattr +i (root)")


@pytest.mark.slow
def test_unwritable_database_answers_503_and_recovers_by_itself(tmp_path, start_bridge):
    _needs_root()
    builds = tmp_path / "builds.log"
    bridge = start_bridge(rules(builds, f"{{target: local, command: ['/bin/sh', '-c', '{RECORD}']}}"))
    before, body, headers = push()
    assert bridge.post("github", body, headers).status_code == 202
    wal = bridge.state / "bridge.db-wal"
    assert wal.exists()

    during, body, headers = push()
    with unwritable(bridge.state / "bridge.db"), unwritable(wal):
        r = bridge.post("github", body, headers)
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] and "nothing was accepted" in r.json()["error"]
        assert requests.get(f"{bridge.url}/readyz", timeout=10).status_code == 503
    # Writable again: the same delivery (a host's redelivery keeps its id) is accepted at once.
    r = bridge.post("github", body, headers)
    assert r.status_code == 202, r.text + "\n" + bridge.logs()[-6000:]
    assert requests.get(f"{bridge.url}/readyz", timeout=10).status_code == 200
    assert "store unavailable: disk I/O error" in bridge.logs()
    wait_for(lambda: settled(bridge, 2), timeout=30, what="both jobs built")
    with db(bridge) as conn:
        built = {r[0] for r in conn.execute("SELECT delivery_id FROM jobs WHERE state = 'succeeded'")}
    assert built == {before, during}
    assert sorted(build_counts(builds).values()) == [1, 1]


# prometheus-client's multiprocess files are sparse mmaps: on a full state disk a worker touching
# a new page of one would die of SIGBUS; they live in memory (metrics.metrics_dir) for that reason.
@pytest.mark.slow
def test_full_disk_answers_503_and_recovers_when_space_returns(tmp_path, small_disk, start_bridge):
    builds = tmp_path / "builds.log"
    bridge = start_bridge(rules(builds, f"{{target: local, command: ['/bin/sh', '-c', '{RECORD}']}}"),
                          directory=tmp_path / "bridge", state=small_disk / "var")
    before, body, headers = push()
    assert bridge.post("github", body, headers).status_code == 202
    wait_for(lambda: settled(bridge, 1), what="the first job built")

    filler = fill_disk(small_disk)
    # Bigger than any free page left in the database file or its WAL: it needs new disk space.
    during, body, headers = push(pad=600_000)
    r = bridge.post("github", body, headers)
    assert r.status_code == 503, r.text
    assert r.json()["delivery"] == during
    assert "database or disk is full" in bridge.logs()

    filler.unlink()
    r = bridge.post("github", body, headers)             # the host redelivers the same one
    assert r.status_code == 202, r.text
    wait_for(lambda: settled(bridge, 2), timeout=30, what="both jobs built")
    with db(bridge) as conn:
        rows = {r[0]: r[1] for r in conn.execute("SELECT delivery_id, state FROM jobs")}
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert rows == {before: "succeeded", during: "succeeded"}
    assert sorted(build_counts(builds).values()) == [1, 1]
    assert bridge.child("web") and len(bridge.web_workers()) == 2
