"""WAL checkpoints off the ack path: a store opened with background_checkpoints leaves SQLite's
WAL to `Store.checkpoint()`, which the dispatcher's background thread calls; commits alone do not
copy it back until the backstop.

Real SQLite files (the database file only grows when a checkpoint copies pages into it), a real
Dispatcher thread on the memory target, and PostgreSQL for the no-op."""
from __future__ import annotations

import os
import sqlite3
import threading

from bridge.dispatch.loop import Dispatcher
from bridge.policies import RetryPolicy
from bridge.store import Store
from bridge.store import tx as tx_module
from bridge.store.engine import CHECKPOINT_BACKSTOP
from bridge.targets.memory import MemoryTarget
from helpers.process import wait_for
from helpers.store import new_delivery, new_job, pg_schema


def _fill(store: Store, n: int, tag: str, target: str = "ci") -> None:
    for i in range(n):
        store.ingest(new_delivery(f"{tag}-{i}", body=os.urandom(3000)), [new_job(target=target)])


def _succeeded(path) -> int:
    conn = sqlite3.connect(path, timeout=30)
    try:
        return conn.execute("SELECT count(*) FROM jobs WHERE state = 'succeeded'").fetchone()[0]
    finally:
        conn.close()


def _wal_pages(path) -> int:
    """Frames in the WAL file (4,096-byte pages, 24-byte frame headers), read from its size:
    asking SQLite would checkpoint them."""
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size // 4120 if wal.exists() else 0


def _wal_frames(store: Store) -> int:
    """The WAL's frames, as a PASSIVE checkpoint reports them."""
    with store.engine.connect() as conn:
        return conn.connection.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]


class _Noting:
    """The store's writer lock, calling `noted()` each time it is taken."""

    def __init__(self, lock, noted):
        self.lock, self.noted = lock, noted

    def __enter__(self):
        self.noted()
        return self.lock.__enter__()

    def __exit__(self, *exc):
        return self.lock.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self.lock, name)


def test_commits_of_a_background_store_leave_the_wal_to_checkpoint(tmp_path):
    path = tmp_path / "bridge.db"
    store = Store.open(f"sqlite:///{path}", durability="normal", background_checkpoints=True)
    try:
        with store.engine.connect() as conn:
            pages = conn.connection.driver_connection.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        assert pages == CHECKPOINT_BACKSTOP
        size_before = path.stat().st_size
        _fill(store, 600, "d")                     # well over SQLite's default 1,000 pages of WAL
        assert _wal_pages(path) > 1000
        assert path.stat().st_size == size_before  # nothing copied back by a commit
        assert store.checkpoint() == 0             # all of it copied now, nobody reading
        assert path.stat().st_size > size_before + 600 * 3000
    finally:
        store.close()


def test_a_default_store_checkpoints_in_its_commits(tmp_path):
    path = tmp_path / "bridge.db"
    store = Store.open(f"sqlite:///{path}", durability="normal")
    try:
        size_before = path.stat().st_size
        _fill(store, 600, "d")
        assert path.stat().st_size > size_before   # SQLite's own autocheckpoint ran
    finally:
        store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    conn.close()


def test_the_dispatchers_background_thread_checkpoints(tmp_path):
    path = tmp_path / "bridge.db"
    store = Store.open(f"sqlite:///{path}", durability="normal", background_checkpoints=True)
    name = f"ckpt-{os.getpid()}-{id(tmp_path)}"
    target = MemoryTarget(name, {})
    dispatcher = Dispatcher(store, {name: target}, {name: RetryPolicy()}, owner="d1", poll_interval=0.01)
    stop = threading.Event()
    thread = threading.Thread(target=dispatcher.run, args=(stop,), kwargs={"background_interval": 0.05})
    try:
        size_before = path.stat().st_size
        _fill(store, 300, "d", target=name)
        thread.start()
        wait_for(lambda: _succeeded(path) == 300, timeout=60, what="every job to run")
        wait_for(lambda: path.stat().st_size > size_before + 300 * 3000, timeout=30,
                 what="the dispatcher to copy the WAL into the database")
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(30)
        store.close()


def test_checkpoint_is_a_no_op_on_postgresql():
    with pg_schema() as url:
        store = Store.open(url, background_checkpoints=True)
        try:
            assert store.checkpoint() == 0
        finally:
            store.close()


def test_the_wal_starts_over_under_steady_writes(tmp_path, monkeypatch):
    """A writer that never pauses: PASSIVE checkpoints alone never let SQLite start the WAL over
    (a commit always lands while they copy), so it grew without end; `checkpoint` restarts it
    under the writer lock once it holds WAL_RESTART_PAGES."""
    monkeypatch.setattr(tx_module, "WAL_RESTART_PAGES", 400)
    path = tmp_path / "bridge.db"
    store = Store.open(f"sqlite:///{path}", durability="normal", background_checkpoints=True)
    writer = Store.open(f"sqlite:///{path}", durability="normal", background_checkpoints=True)
    done = threading.Event()

    def write():
        try:
            _fill(writer, 2500, "w")           # about 7,500 pages of WAL in all
        finally:
            done.set()

    thread = threading.Thread(target=write)
    try:
        thread.start()
        peak = 0
        while not done.is_set():
            store.checkpoint()
            peak = max(peak, _wal_pages(path))
            done.wait(0.02)
        thread.join()
        assert peak < 6000, f"the WAL grew to {peak} pages"     # without restarts: all 7,500
        with writer.engine.connect() as conn:
            assert conn.connection.driver_connection.execute(
                "SELECT count(*) FROM deliveries").fetchone()[0] == 2500
    finally:
        done.set()
        thread.join(30)
        writer.close()
        store.close()


def test_the_restart_takes_the_writer_lock_once_per_filled_wal(tmp_path, monkeypatch):
    """Once started over, the WAL still reports its old frames until the next write: the next
    rounds must not take the writer lock (and RESTART) again for nothing."""
    monkeypatch.setattr(tx_module, "WAL_RESTART_PAGES", 400)
    path = tmp_path / "bridge.db"
    store = Store.open(f"sqlite:///{path}", durability="normal", background_checkpoints=True)
    try:
        _fill(store, 300, "d")                     # about 900 pages of WAL
        taken = []
        store._writer = _Noting(store._writer, lambda: taken.append("lock"))
        assert store.checkpoint() == 0
        assert len(taken) == 1                     # restarted under the lock
        for _ in range(3):
            assert store.checkpoint() == 0
        assert len(taken) == 1                     # nothing written since: no second restart
        _fill(store, 1, "after")                   # the next write starts the WAL over
        assert len(taken) == 2 and _wal_pages(path) > 400      # (its own commit took the lock)
        assert _wal_frames(store) < 50             # it wrote from the WAL's beginning
    finally:
        store.close()


def test_the_restart_writes_the_files_back_before_it_takes_the_lock(tmp_path, monkeypatch):
    """RESTART fsyncs the WAL and the database; what the PASSIVE rounds left in the page cache is
    written back before the writer lock is taken, so those fsyncs hold the lock for little."""
    monkeypatch.setattr(tx_module, "WAL_RESTART_PAGES", 400)
    path = tmp_path / "bridge.db"
    store = Store.open(f"sqlite:///{path}", durability="normal", background_checkpoints=True)
    seen: list[str] = []
    real_fdatasync = os.fdatasync

    def fdatasync(fd):
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fdatasync(fd)

    try:
        _fill(store, 300, "d")                     # about 900 pages of WAL
        store._writer = _Noting(store._writer, lambda: seen.append("lock"))
        monkeypatch.setattr(tx_module.os, "fdatasync", fdatasync)
        assert store.checkpoint() == 0
        assert seen == [f"{path}-wal", str(path), "lock"]
        _fill(store, 1, "after")                   # the WAL starts over: the restart happened
        assert _wal_frames(store) < 50
    finally:
        store.close()
