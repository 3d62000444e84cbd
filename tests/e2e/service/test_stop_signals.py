"""Stops under repeated signals: `cibridge dispatch` and a whole `cibridge serve` group exit within
their grace however close together the SIGTERMs come (systemd's KillMode=control-group plus the
supervisor's forwarding send two to each child).

Real processes on a real SQLite store, with real exec jobs running at the moment of the stop.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers.rules import SECRET_ENV
from helpers.process import ROOT, BridgeProcess, children
from helpers.store import push_event

# The dispatcher's own grace for jobs in flight at a stop (Dispatcher.run's default).
GRACE = 30.0

RULES = textwrap.dedent("""\
    settings:
      durability: normal
      dispatcher_concurrency: 2
    sources:
      github:
        provider: github
        secrets: ["${env:GH_SECRET}"]
    targets:
      local:
        kind: exec
    rules:
      - name: build
        on: {repo: "**", branches: ["**"]}
        run: {target: local, command: [/bin/sleep, "0.4"]}
    """)


def env() -> dict:
    return {**os.environ, **SECRET_ENV, "PYTHONUNBUFFERED": "1"}


def queue_jobs(rules_path, state_dir, n: int) -> None:
    """n deliveries, each with the rule's one exec job, stored as ingress stores them."""
    from bridge.config.load import load_config
    from bridge.store import NewDelivery, Store
    os.environ.update(SECRET_ENV)
    config = load_config(rules_path)
    store = Store.open(config.database_url(state_dir), durability="normal")
    try:
        for _ in range(n):
            delivery = str(uuid.uuid4())
            event = push_event(delivery)
            jobs = [j for v in config.ruleset.match(event) if v.matched for j in v.jobs]
            assert jobs
            store.ingest(NewDelivery(
                source="github", provider="github", delivery_id=delivery, received_at=time.time(),
                headers={}, body=b"{}", event=event, outcome="matched", reason="",
                verdicts=[{"rule": "build", "matched": True, "reason": "", "needs_files": False}],
                rules_version=config.version, content_key=None), jobs)
    finally:
        store.close()


def running_jobs_of(state_dir, pid: int) -> int:
    import socket
    import sqlite3
    conn = sqlite3.connect(state_dir / "bridge.db", timeout=30)
    try:
        return conn.execute("SELECT count(*) FROM jobs WHERE state = 'running' AND lease_owner = ?",
                            (f"{socket.gethostname()}:{pid}",)).fetchone()[0]
    finally:
        conn.close()


def stop_twice(proc: subprocess.Popen, state_dir) -> float:
    """Wait until `proc` runs a job, send two SIGTERMs 0-5 ms apart; seconds until it exited
    (GRACE + 5 if it did not: it is then killed)."""
    deadline = time.monotonic() + 60
    while running_jobs_of(state_dir, proc.pid) == 0:
        assert proc.poll() is None, f"dispatcher exited early with {proc.returncode}"
        assert time.monotonic() < deadline, "the dispatcher never ran a job"
        time.sleep(0.05)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    time.sleep(random.uniform(0, 0.005))
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(GRACE + 5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return GRACE + 5
    return time.monotonic() - t0


@pytest.mark.slow
def test_fifty_stops_with_two_sigterms_each_all_exit_within_the_grace(tmp_path):
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(RULES)
    state = tmp_path / "var"
    state.mkdir()
    queue_jobs(rules_path, state, 600)
    argv = [sys.executable, "-m", "bridge", "dispatch", "--rules", str(rules_path),
            "--state-dir", str(state)]

    def one(i: int) -> tuple[float, int, str]:
        log = tmp_path / f"dispatch{i}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env(), stdout=fh, stderr=subprocess.STDOUT)
            took = stop_twice(proc, state)
        return took, proc.returncode, log.read_text(errors="replace")

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=5) as pool:   # five stops at a time: two cores
        results = list(pool.map(one, range(50)))
    hung = [(took, code, out[-2000:]) for took, code, out in results if took >= GRACE or code != 0]
    assert not hung, hung[:2]
    assert all("Traceback" not in out for _, _, out in results)
    assert time.monotonic() - t0 < 600   # about 60 s on an idle 2-core machine


SLOW_SET = textwrap.dedent("""\
    import sys, threading, time
    from bridge.service.dispatcher import run_dispatcher

    class SlowSet(threading.Event):
        # Event.set holding the event's lock for a while: the moment a second signal may
        # come in, made wide enough to hit every time.
        def set(self):
            with self._cond:
                self._flag = True
                print("set: holding the lock", flush=True)
                time.sleep(0.5)
                self._cond.notify_all()

    run_dispatcher(sys.argv[1], sys.argv[2], stop=SlowSet())
    print("stopped", flush=True)
    """)


def test_a_second_sigterm_while_the_stop_event_is_being_set_does_not_hang(tmp_path):
    """The hang itself, made certain: the second SIGTERM arrives while the first one's
    Event.set() holds the event's lock. A handler that calls set() itself waits for that lock
    forever (it is held by the very thread the handler interrupted)."""
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(RULES)
    state = tmp_path / "var"
    state.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SET, str(rules_path), str(state)], cwd=ROOT,
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if " started (rules version " in line:
                break
        proc.send_signal(signal.SIGTERM)
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("set: holding the lock"):
                break
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            pytest.fail("the dispatcher hung on the second SIGTERM:\n" + "".join(lines) + out)
        assert proc.returncode == 0, "".join(lines) + out
        assert "stopped" in out and "Traceback" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def stop_group(bp: BridgeProcess) -> tuple[float, int | None]:
    """SIGTERM to every process of a running `cibridge serve`, 0-5 ms apart, as systemd's
    KillMode=control-group does (the supervisor forwards one more to each child); seconds until
    the supervisor exited, and its exit code."""
    dispatcher = bp.child("dispatch")
    deadline = time.monotonic() + 60
    while running_jobs_of(bp.state, dispatcher) == 0:
        assert time.monotonic() < deadline, "the dispatcher never ran a job"
        time.sleep(0.05)
    tree = [bp.proc.pid] + children(bp.proc.pid)
    tree += [p for c in children(bp.proc.pid) for p in children(c)]
    t0 = time.monotonic()
    for pid in tree:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        time.sleep(random.uniform(0, 0.005))
    try:
        code = bp.proc.wait(SYSTEMD_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        code = None
    took = time.monotonic() - t0
    bp.stop()   # kills what is left, if anything
    return took, code


# systemd/bridge.service: TimeoutStopSec=45s, then SIGKILL.
SYSTEMD_STOP_TIMEOUT = 45.0


@pytest.mark.slow
def test_whole_group_stops_under_bridge_serve_exit_0_within_the_unit_timeout(tmp_path):
    def one(i: int):
        bp = BridgeProcess(tmp_path / f"b{i}", RULES, env=SECRET_ENV).start()
        try:
            queue_jobs(bp.rules, bp.state, 40)
            took, code = stop_group(bp)
        finally:
            bp.stop()
        return took, code, bp.logs()

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(one, range(6)))
    late = [(took, code, logs[-2000:]) for took, code, logs in results
            if code != 0 or took >= SYSTEMD_STOP_TIMEOUT]
    assert not late, late[:2]
    assert all("Traceback" not in logs for _, _, logs in results)
