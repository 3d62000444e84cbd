"""Faults on a real `cibridge serve` (supervisor + gunicorn + dispatcher) on 127.0.0.1, and the
operator CLI run as subprocesses against it.

Every delivery here is a real GitHub push payload with a fresh delivery id and a fresh `after`
SHA, signed like GitHub signs it. Builds use the exec target appending one line per run to a
file, so a test counts how often each job really ran.
"""
from __future__ import annotations

import collections
import functools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest
import requests

from helpers.rules import GITHUB_SECRET, SECRET_ENV
from helpers.payloads import load_payload, payloads_dir, sign_github
from helpers.process import ROOT, BridgeProcess, children, wait_for
from helpers.store import fill_disk, small_disk, unwritable  # noqa: F401  (fixture)

PAYLOAD = "github/push__f110-single-commit.json"


@functools.lru_cache(maxsize=None)
def _payload():
    """(body, headers, after, ref) of PAYLOAD, read at the first use: without shared/payloads
    only the tests that post it skip."""
    body, headers = load_payload(PAYLOAD)
    return body, headers, json.loads(body)["after"].encode(), json.loads(body)["ref"].encode()

# One line per run of a job: "<job id> <delivery id>".
RECORD = 'echo "$BRIDGE_JOB_ID $BRIDGE_DELIVERY" >> "$BUILDS"'


def rules(builds, run: str, *, settings: str = "", extra_rules: str = "") -> str:
    return textwrap.dedent("""\
        settings:
          durability: normal
          lease_seconds: 2
        {settings}
        sources:
          github:
            provider: github
            secrets: ["${{env:GH_SECRET}}"]
        targets:
          local:
            kind: exec
            env: {{BUILDS: "{builds}"}}
        rules:
          - name: build
            on: {{repo: f110/test, branches: [test]}}
            run: {run}
        {extra_rules}""").format(builds=builds, run=run, settings=textwrap.indent(settings, "  "),
                                 extra_rules=textwrap.indent(extra_rules, ""))


def push(*, branch: str | None = None, delivery: str | None = None, pad: int = 0):
    """A fresh push: (delivery id, body, headers), signed."""
    delivery = delivery or str(uuid.uuid4())
    template, recorded, after, ref = _payload()
    body = template.replace(after, os.urandom(20).hex().encode())
    if branch:
        body = body.replace(b'"ref": "' + ref + b'"', b'"ref": "refs/heads/' + branch.encode() + b'"')
    if pad:
        body = body.rstrip()[:-1] + b" " * pad + b"}"      # still the same JSON, just bigger
    headers = {**recorded, "X-GitHub-Delivery": delivery, **sign_github(body, GITHUB_SECRET)}
    return delivery, body, headers


def build_counts(path) -> collections.Counter:
    """job id -> how many times it ran."""
    if not path.exists():
        return collections.Counter()
    return collections.Counter(int(line.split()[0]) for line in path.read_text().splitlines() if line)


def db(bridge) -> sqlite3.Connection:
    conn = sqlite3.connect(bridge.state / "bridge.db", timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def job_states(bridge) -> dict[str, int]:
    with db(bridge) as conn:
        return dict(conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())


def settled(bridge, expected_jobs: int | None = None) -> bool:
    states = job_states(bridge)
    if states.get("queued") or states.get("running"):
        return False
    return expected_jobs is None or sum(states.values()) >= expected_jobs


def half_stored(bridge) -> list[str]:
    """Deliveries stored as matched without their jobs: must never exist."""
    with db(bridge) as conn:
        return [r[0] for r in conn.execute(
            "SELECT id FROM deliveries d WHERE outcome = 'matched' "
            "AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.delivery_id = d.id)")]


@pytest.fixture
def start_bridge(tmp_path):
    """start_bridge(rules_text, **BridgeProcess kwargs) -> a running bridge, stopped at teardown."""
    started = []

    def start(text, *, directory=None, state=None, **kw) -> BridgeProcess:
        bp = BridgeProcess(directory or tmp_path / f"bridge{len(started)}", text, env=SECRET_ENV, **kw)
        if state is not None:
            bp.state = state
        started.append(bp)
        return bp.start()

    yield start
    for bp in started:
        bp.stop()


def cli(*args, timeout=60) -> subprocess.CompletedProcess:
    return cli_many(args, timeout=timeout)[0]


def cli_many(*commands, timeout=60) -> list[subprocess.CompletedProcess]:
    """`bridge ARGS...` as subprocesses, run side by side; their results in order."""
    procs = [subprocess.Popen([sys.executable, "-m", "bridge", *map(str, args)], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**os.environ, **SECRET_ENV, "NO_PROXY": "127.0.0.1,localhost"})
             for args in commands]
    done = []
    for args, p in zip(commands, procs):
        out, err = p.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


# --- kill -9 in the middle of a stream ---------------------------------------------------------

class Stream:
    """Posts distinct signed deliveries from a few keep-alive connections until stopped or
    `total` are sent; records each answer (status code, or None for no answer)."""

    def __init__(self, bridge, total: int, connections: int = 3):
        self.bridge = bridge
        self.total = total
        self.answers: dict[str, int | None] = {}
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(connections)]

    def _run(self):
        session = requests.Session()
        while True:
            with self._lock:
                if len(self.answers) >= self.total:
                    return
                delivery, body, headers = push()
                self.answers[delivery] = None
            try:
                status = session.post(f"{self.bridge.url}/hooks/github", data=body, headers=headers,
                                      timeout=10).status_code
            except requests.RequestException:
                session.close()
                session = requests.Session()
                continue
            with self._lock:
                self.answers[delivery] = status

    def start(self):
        for t in self._threads:
            t.start()
        return self

    def wait_for_count(self, n: int):
        wait_for(lambda: len(self.answers) >= n, timeout=60, what=f"{n} deliveries sent")

    def join(self):
        for t in self._threads:
            t.join(60)


@pytest.mark.slow
def test_kill_9_of_a_web_worker_and_the_dispatcher_mid_stream_loses_and_doubles_nothing(
        tmp_path, start_bridge):
    builds = tmp_path / "builds.log"
    concurrency = 4
    bridge = start_bridge(rules(builds, f"{{target: local, command: ['/bin/sh', '-c', '{RECORD}; sleep 0.03']}}",
                                settings=f"dispatcher_concurrency: {concurrency}"))
    stream = Stream(bridge, total=360).start()

    stream.wait_for_count(120)
    worker = bridge.web_workers()[0]
    os.kill(worker, signal.SIGKILL)
    stream.wait_for_count(240)
    dispatcher = bridge.child("dispatch")
    wait_for(lambda: job_states(bridge).get("running"), timeout=20, what="jobs in flight")
    os.kill(dispatcher, signal.SIGKILL)
    stream.join()

    # The supervisor restarts the dispatcher, gunicorn the worker; the new dispatcher takes over
    # the dead one's leases once they expire (2 s).
    wait_for(lambda: (bridge.child("dispatch") or dispatcher) != dispatcher, what="a new dispatcher")
    wait_for(lambda: worker not in bridge.web_workers(), what="the killed worker replaced")
    wait_for(lambda: settled(bridge), timeout=60, what="every job finished")

    acked = [d for d, status in stream.answers.items() if status in (200, 202)]
    unanswered = [d for d, status in stream.answers.items() if status is None]
    assert len(acked) >= 300, stream.answers          # the stream really went on through both kills
    assert {s for s in stream.answers.values() if s is not None} <= {202}
    runs = build_counts(builds)
    with db(bridge) as conn:
        jobs = {r["delivery_id"]: r for r in conn.execute("SELECT id, delivery_id, state FROM jobs")}
        lost = {r[0] for r in conn.execute("SELECT job_id FROM job_attempts WHERE outcome = 'lost'")}

    # Every acknowledged delivery was built...
    for d in acked:
        assert d in jobs, f"acknowledged delivery {d} has no job"
        assert jobs[d]["state"] == "succeeded" and runs[jobs[d]["id"]] >= 1, dict(jobs[d])
    # ...and none twice, except jobs in flight when their dispatcher died (their lease was lost).
    doubled = {job for job, n in runs.items() if n > 1}
    assert max(runs.values()) <= 2
    assert doubled <= lost, (doubled, lost)
    assert len(doubled) <= concurrency
    # A delivery that got no answer is either absent or stored whole; nothing is ever half-stored.
    assert half_stored(bridge) == []
    for d in unanswered:
        assert d not in jobs or jobs[d]["state"] == "succeeded"
    # Every job that ran belongs to a stored delivery (nothing ran for a rolled-back one).
    assert set(runs) <= {r["id"] for r in jobs.values()}


# --- the exec target failing, hanging, flooding --------------------------------------------------

EXEC_FAULT_RULES = """\
  - name: fails
    on: {repo: f110/test, branches: [fail]}
    run: {target: local, command: ['/bin/sh', '-c', 'echo about to fail; exit 3']}
  - name: hangs
    on: {repo: f110/test, branches: [hang]}
    run: {target: local, command: ['/bin/sleep', '30'], timeout: 1}
  - name: floods
    on: {repo: f110/test, branches: [flood]}
    run: {target: local, command: ['/bin/sh', '-c', 'yes a line of build output | head -c 100000000; echo; echo the end']}
"""


def peak_rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


@pytest.mark.slow
def test_exec_failing_hanging_and_flooding_end_to_end(tmp_path, start_bridge):
    bridge = start_bridge(rules(tmp_path / "builds.log", f"{{target: local, command: ['/bin/sh', '-c', '{RECORD}']}}",
                                extra_rules=EXEC_FAULT_RULES))
    dispatcher = bridge.child("dispatch")
    peak_before = peak_rss_kib(dispatcher)
    ids = {}
    for branch in ("fail", "hang", "flood"):
        delivery, body, headers = push(branch=branch)
        r = bridge.post("github", body, headers)
        assert r.status_code == 202, r.text
        assert [j["rule"] for j in r.json()["jobs"]] == [{"fail": "fails", "hang": "hangs",
                                                          "flood": "floods"}[branch]]
        ids[branch] = delivery
    wait_for(lambda: settled(bridge, 3), timeout=30, what="the three jobs finished")

    def show(delivery):
        done = cli("deliveries", "--rules", bridge.rules, "--state-dir", bridge.state, "show", delivery)
        assert done.returncode == 0, done.stderr
        return done.stdout

    store = bridge.store()
    try:
        failed, hung, flood = (store.get_delivery(ids[b])["jobs"][0] for b in ("fail", "hang", "flood"))
    finally:
        store.close()
    assert failed["state"] == "failed"
    assert failed["detail"]["exit_code"] == 3 and failed["detail"]["reason"] == "exit code 3"
    text = show(ids["fail"])
    assert "fails -> local  state failed  attempts 1" in text
    assert "about to fail" in text                        # the output's last lines
    assert "attempt 1" in text and "failed" in text

    assert hung["state"] == "failed"
    assert hung["detail"]["reason"] == "timed out after 1s"
    assert 1.0 <= hung["detail"]["duration"] < 10
    assert "hangs -> local  state failed" in show(ids["hang"])

    assert flood["state"] == "succeeded" and flood["detail"]["exit_code"] == 0
    assert flood["detail"]["output_bytes"] == 100_000_000 + len("\nthe end\n")
    assert len(flood["detail"]["output"]) <= 64 * 1024     # only the tail is kept
    assert flood["detail"]["output"].endswith("the end\n")
    text = show(ids["flood"])
    assert "floods -> local  state succeeded" in text and "      the end" in text
    # The dispatcher drained 100 MB without holding it: its peak memory stayed far below that.
    assert bridge.child("dispatch") == dispatcher
    assert peak_rss_kib(dispatcher) - peak_before < 30 * 1024, (peak_before, peak_rss_kib(dispatcher))


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


# --- two dispatchers on one SQLite file ----------------------------------------------------------

@pytest.mark.slow
def test_two_dispatchers_on_one_database_never_run_a_job_twice(tmp_path, start_bridge):
    builds = tmp_path / "builds.log"
    bridge = start_bridge(rules(builds, f"{{target: local, command: ['/bin/sh', '-c', '{RECORD}; sleep 0.05']}}",
                                settings="dispatcher_concurrency: 3"), dispatcher=False)
    assert bridge.child("dispatch") is None
    logs, procs = [], []
    try:
        for i in range(2):
            logs.append(open(tmp_path / f"dispatch{i}.log", "wb"))
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "bridge", "dispatch", "--rules", str(bridge.rules),
                 "--state-dir", str(bridge.state)], cwd=bridge.dir, env=bridge.env,
                stdout=logs[i], stderr=subprocess.STDOUT))
        wait_for(lambda: all(b"started" in (tmp_path / f"dispatch{i}.log").read_bytes() for i in range(2)),
                 timeout=30, what="both dispatchers started")
        # Both are polling the same queue when a burst of jobs lands in it.
        session = requests.Session()
        for _ in range(80):
            _, body, headers = push()
            assert session.post(f"{bridge.url}/hooks/github", data=body, headers=headers,
                                timeout=10).status_code == 202
        wait_for(lambda: settled(bridge, 80), timeout=60, what="80 jobs built")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            assert p.wait(30) == 0
        for f in logs:
            f.close()
    runs = build_counts(builds)
    assert len(runs) == 80 and set(runs.values()) == {1}
    with db(bridge) as conn:
        owners = collections.Counter(r[0] for r in conn.execute("SELECT owner FROM job_attempts"))
        outcomes = {r[0] for r in conn.execute("SELECT outcome FROM job_attempts")}
    assert outcomes == {"succeeded"} and sum(owners.values()) == 80
    assert len(owners) == 2, owners                        # both really took part


# --- SIGTERM ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_sigterm_finishes_the_job_in_flight_leaves_the_rest_queued_and_exits_0(tmp_path, start_bridge):
    builds = tmp_path / "builds.log"
    bridge = start_bridge(rules(builds, f"{{target: local, command: ['/bin/sh', '-c', 'sleep 1; {RECORD}']}}",
                                settings="dispatcher_concurrency: 1"))
    for _ in range(3):
        _, body, headers = push()
        assert bridge.post("github", body, headers).status_code == 202
    # One job in flight; exec jobs are never claimed ahead of a free slot (another instance may
    # be idle), so the other two wait unleased.
    wait_for(lambda: job_states(bridge).get("running") == 1, what="a job in flight")
    pids = [bridge.proc.pid] + children(bridge.proc.pid)
    pids += [p for c in children(bridge.proc.pid) for p in children(c)]

    t0 = time.monotonic()
    assert bridge.stop() == 0
    assert time.monotonic() - t0 < 15
    assert not [p for p in pids if os.path.exists(f"/proc/{p}")]   # the whole tree is gone
    states = job_states(bridge)
    assert states.get("succeeded") == 1 and states.get("queued") == 2 and not states.get("running")
    assert list(build_counts(builds).values()) == [1]   # the one in flight finished, once
    # The other two wait for the next start: no lease, no attempt spent. (Releasing jobs claimed
    # ahead is tested in test_dispatcher.py with a quick-starting target.)
    with db(bridge) as conn:
        waiting = conn.execute("SELECT lease_owner, attempts FROM jobs WHERE state = 'queued'").fetchall()
    assert [tuple(r) for r in waiting] == [(None, 0), (None, 0)]


# --- children that restart between an edit of rules.yaml and its reload ---------------------------

def readyz(bridge) -> dict:
    return requests.get(f"{bridge.url}/readyz", timeout=5).json()


def kill_child(bridge, role: str) -> None:
    """kill -9 the supervisor's `web` (gunicorn master and its workers) or `dispatch` child, and
    wait until the supervisor has started another one and the bridge answers again."""
    pid = bridge.child(role)
    assert pid, f"no {role} child"
    if role == "dispatch":   # killed once it has said which rules it runs, not before
        wait_for(lambda: f"dispatcher {socket.gethostname()}:{pid} started" in bridge.logs(),
                 what="the dispatcher started")
    for p in [pid] + children(pid):
        os.kill(p, signal.SIGKILL)
    wait_for(lambda: bridge.child(role) not in (None, pid), timeout=30, what=f"a new {role} child")
    bridge.wait_ready()
    if role == "web":   # both new workers up, not just the first one
        wait_for(lambda: len(bridge.web_workers()) == bridge.workers, what="the new web workers")


def send_pushes(bridge, n: int) -> list[dict]:
    """n pushes on fresh connections (so they land on every worker); each reply, which must be 202."""
    replies = []
    for _ in range(n):
        _, body, headers = push()
        r = bridge.post("github", body, headers)
        assert r.status_code == 202, (r.status_code, r.text)
        replies.append(r.json())
    return replies


def stored_versions(bridge, replies) -> set[str]:
    with db(bridge) as conn:
        return {conn.execute("SELECT rules_version FROM deliveries WHERE id = ?",
                             (r["delivery"],)).fetchone()[0] for r in replies}


def started_versions(bridge) -> list[str]:
    """The rules version each dispatcher started on, in order, from the JSON log lines."""
    out = []
    for line in bridge.logs().splitlines():
        if line.startswith("{") and '"dispatcher ' in line:
            msg = json.loads(line)["message"]
            if " started (rules version " in msg:
                out.append(msg.rsplit(" ", 1)[1].rstrip(")"))
    return out


@pytest.mark.slow
def test_children_killed_after_a_refused_reload_keep_the_old_rules_and_keep_building(
        tmp_path, start_bridge):
    builds = tmp_path / "builds.log"
    good = rules(builds, f"{{target: local, command: ['/bin/sh', '-c', '{RECORD}']}}")
    broken = good.replace("target: local", "target: no-such-target")
    bridge = start_bridge(good, directory=tmp_path / "b")
    version = readyz(bridge)["rules_version"]

    bridge.rules.write_text(broken)
    bridge.signal(signal.SIGHUP)
    wait_for(lambda: "rules_reload_error" in readyz(bridge), what="/readyz to report the refusal")
    # Every child dies in turn: the supervisor restarts each on the last good rules (before the
    # fix, `cibridge web` exited 1 on the broken file until the supervisor gave up).
    kill_child(bridge, "web")
    kill_child(bridge, "dispatch")
    kill_child(bridge, "web")
    replies = send_pushes(bridge, 6)
    assert all(r["matched"] == ["build"] for r in replies)
    assert stored_versions(bridge, replies) == {version}
    ready = readyz(bridge)
    assert ready["rules_version"] == version and ready["status"] == "ready"
    assert any("no-such-target" in p for p in ready["rules_reload_error"]), ready
    wait_for(lambda: settled(bridge, 6), what="six builds")
    assert job_states(bridge) == {"succeeded": 6} and len(build_counts(builds)) == 6
    assert bridge.proc.poll() is None and "giving up" not in bridge.logs()
    wait_for(lambda: len(started_versions(bridge)) == 2, what="the new dispatcher started")
    assert started_versions(bridge) == [version, version]

    # The whole service restarts on the broken file (systemd Restart=, a reboot): it starts on
    # the last good rules and says why, instead of failing to start.
    assert bridge.stop() == 0
    again = start_bridge(broken, directory=tmp_path / "b")
    ready = readyz(again)
    assert ready["rules_version"] == version and "rules_reload_error" in ready
    replies = send_pushes(again, 2)
    assert all(r["matched"] == ["build"] for r in replies)
    wait_for(lambda: settled(again, 8), what="two more builds")
    assert len(build_counts(builds)) == 8
    assert any('"level": "error"' in line and "starting on the last good rules" in line
               for line in again.logs().splitlines())

    # With nothing accepted yet, a broken file is still a clear refusal to start.
    first = cli("serve", "--rules", again.rules, "--state-dir", tmp_path / "fresh-state",
                "--bind", "127.0.0.1:1")
    assert first.returncode == 1 and "nothing started" in first.stderr
    assert "no-such-target" in first.stderr and "Traceback" not in first.stderr


@pytest.mark.slow
def test_an_edit_nobody_reloaded_stays_out_when_children_restart_until_sighup(tmp_path, start_bridge):
    builds = tmp_path / "builds.log"
    first = rules(builds, f"{{target: local, command: ['/bin/sh', '-c', '{RECORD}']}}")
    edited = first.replace("- name: build", "- name: build-edited")
    bridge = start_bridge(first)
    version = readyz(bridge)["rules_version"]
    status = bridge.state / "rules-status.json"

    # A valid edit, saved but not reloaded; then every process restarts on its own.
    bridge.rules.write_text(edited)
    kill_child(bridge, "dispatch")
    wait_for(lambda: len(started_versions(bridge)) == 2, what="the new dispatcher started")
    assert json.loads(status.read_text())["version"] == version
    assert (bridge.state / "rules.last-good.yaml").read_text() == first
    worker = min(bridge.web_workers())
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: len(bridge.web_workers()) == 2 and worker not in bridge.web_workers(),
             what="a new web worker")
    kill_child(bridge, "web")
    replies = send_pushes(bridge, 8)
    assert all(r["matched"] == ["build"] for r in replies), replies
    assert stored_versions(bridge, replies) == {version}
    assert {readyz(bridge)["rules_version"] for _ in range(8)} == {version}
    assert json.loads(status.read_text())["version"] == version
    assert started_versions(bridge) == [version, version]
    assert "was edited since the rules were last loaded" in bridge.logs()
    wait_for(lambda: settled(bridge, 8), what="eight builds")
    assert len(build_counts(builds)) == 8

    # The reload puts the edit into service, in every worker and the dispatcher.
    bridge.signal(signal.SIGHUP)
    wait_for(lambda: {readyz(bridge)["rules_version"] for _ in range(6)} - {version},
             what="the edited rules to serve")
    wait_for(lambda: len({readyz(bridge)["rules_version"] for _ in range(6)}) == 1,
             what="every worker on the edited rules")
    new_version = readyz(bridge)["rules_version"]
    assert new_version != version and json.loads(status.read_text())["version"] == new_version
    replies = send_pushes(bridge, 4)
    assert all(r["matched"] == ["build-edited"] for r in replies)
    wait_for(lambda: settled(bridge, 12), what="the builds of the edited rules")
    assert job_states(bridge) == {"succeeded": 12}


def test_split_bridge_web_restarts_on_the_accepted_rules_and_takes_an_edit_on_sighup(
        tmp_path, start_bridge):
    """`cibridge web` under its own unit: a restart (systemctl restart, Restart=on-failure) keeps
    the rules the service accepted, as the other half still runs them; SIGHUP loads the edit."""
    first = rules(tmp_path / "builds.log", "{target: local, command: [/bin/true]}")
    edited = first.replace("- name: build", "- name: build-edited")
    web = start_bridge(first, directory=tmp_path / "w", command="web")
    version = readyz(web)["rules_version"]
    assert web.stop() == 0

    web = start_bridge(edited, directory=tmp_path / "w", command="web")
    assert readyz(web)["rules_version"] == version
    assert [r["matched"] for r in send_pushes(web, 3)] == [["build"]] * 3
    assert "was edited since the rules were last loaded" in web.logs()

    web.signal(signal.SIGHUP)   # `cibridge web` is the gunicorn master itself
    wait_for(lambda: version not in {readyz(web)["rules_version"] for _ in range(6)},
             what="every worker on the edited rules")
    assert [r["matched"] for r in send_pushes(web, 3)] == [["build-edited"]] * 3


# --- the operator CLI against a running bridge -----------------------------------------------------

@pytest.mark.slow
def test_operator_cli_send_list_show_replay_retry_prune(tmp_path, start_bridge):
    builds = tmp_path / "builds.log"
    bridge = start_bridge(rules(
        builds, f"{{target: local, command: ['/bin/sh', '-c', '{RECORD}']}}",
        extra_rules="  - name: broken\n    on: {repo: f110/test, branches: [test]}\n"
                    "    run: {target: local, command: ['/no/such/program']}\n"))
    common = ["--rules", bridge.rules, "--state-dir", bridge.state]
    payload = payloads_dir() / PAYLOAD

    sent = cli("send", "--rules", bridge.rules, "--source", "github", "--url", bridge.url, payload)
    assert sent.returncode == 0, sent.stderr
    status, reply = sent.stdout.split(" ", 1)
    reply = json.loads(reply)
    assert status == "202" and reply["matched"] == ["build", "broken"]
    delivery = reply["delivery"]
    job_ids = {j["rule"]: j["id"] for j in reply["jobs"]}
    # The same push again under a fresh delivery id: recorded, not built again.
    again = cli("send", "--rules", bridge.rules, "--source", "github", "--url", bridge.url, payload)
    assert again.returncode == 0 and again.stdout.startswith("200 ")
    assert json.loads(again.stdout.split(" ", 1)[1])["duplicate_of"] == delivery

    wait_for(lambda: settled(bridge, 2), what="both jobs done")
    listing, dead_only, shown, missing, shown_after, bogus = cli_many(
        ["deliveries", *common], ["deliveries", *common, "--state", "dead"],
        ["deliveries", *common, "show", delivery], ["deliveries", *common, "show", "no-such-delivery"],
        ["deliveries", "show", delivery, *common], ["deliveries", *common, "--state", "bogus"])
    # The common options after the subcommand too; a state that does not exist is a usage error.
    assert shown_after.returncode == 0 and shown_after.stdout == shown.stdout, shown_after.stderr
    assert bogus.returncode == 2 and "Traceback" not in bogus.stderr
    assert "Invalid value for '--state': 'bogus' is not one of 'matched'" in bogus.stderr
    assert "'dead'" in bogus.stderr
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["DELIVERY", "RECEIVED", "REPO", "REF", "OUTCOME", "JOBS"]
    row = next(line for line in lines if line.startswith(delivery))
    assert "f110/test" in row and "refs/heads/test" in row and "matched" in row
    assert "build:succeeded, broken:dead" in row
    assert any("duplicate" in line for line in lines[1:])
    assert [line.split()[0] for line in dead_only.stdout.splitlines()[1:]] == [delivery]

    assert shown.returncode == 0, shown.stderr
    assert f"delivery {delivery}  source github (github)" in shown.stdout
    assert "outcome  matched" in shown.stdout
    assert "rule     MATCH build" in shown.stdout and "rule     MATCH broken" in shown.stdout
    assert f"job {job_ids['build']}  build -> local  state succeeded  attempts 1" in shown.stdout
    assert (f"job {job_ids['broken']}  broken -> local  state dead  attempts 1  "
            "error: command '/no/such/program' not found") in shown.stdout
    assert missing.returncode == 1 and "no delivery 'no-such-delivery'" in missing.stderr

    # retry: the dead job runs again (and is dead again: the program is still missing).
    retried = cli("retry", *common, job_ids["broken"])
    assert retried.returncode == 0 and retried.stdout.strip() == f"job {job_ids['broken']} queued again"
    wait_for(lambda: settled(bridge), what="the retried job done")
    shown = cli("deliveries", *common, "show", delivery).stdout
    assert f"job {job_ids['broken']}  broken -> local  state dead  attempts 2" in shown
    not_dead = cli("retry", *common, job_ids["build"])
    assert not_dead.returncode == 1 and f"job {job_ids['build']} does not exist or is not dead" in not_dead.stderr

    # replay: re-matched against the current rules, new jobs queued and built.
    replayed = cli("replay", *common, delivery)
    assert replayed.returncode == 0, replayed.stderr
    assert "MATCH build" in replayed.stdout and "MATCH broken" in replayed.stdout
    assert "queued 2 job(s): " in replayed.stdout
    new_ids = [int(x) for x in replayed.stdout.rsplit(": ", 1)[1].split(", ")]
    wait_for(lambda: settled(bridge, 4), what="the replayed jobs done")
    runs = build_counts(builds)
    assert runs[job_ids["build"]] == 1 and runs[new_ids[0]] == 1

    # prune: only deliveries older than the given age go, with their jobs.
    kept, bad = cli_many(["prune", *common, "--older-than", "1h"],
                         ["prune", *common, "--older-than", "soon"])
    assert kept.returncode == 0 and kept.stdout.strip() == "pruned 0 deliveries older than 1h"
    assert bad.returncode == 2 and "not a duration" in bad.stderr
    time.sleep(1.1)
    pruned = cli("prune", *common, "--older-than", "1s")
    assert pruned.returncode == 0 and pruned.stdout.strip() == "pruned 2 deliveries older than 1s"
    assert cli("deliveries", *common).stdout.splitlines()[1:] == []
    with db(bridge) as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0


# --- the accepted rules at a child's start (no server needed) --------------------------------------

ROTATING_RULES = """\
sources:
  github: {provider: github, secrets: ["${file:%s}"]}
targets:
  local: {kind: exec}
rules:
  - name: all
    on: {repo: "**", branches: ["**"]}
    run: {target: local, command: ["/bin/true"]}
"""


def test_a_child_starts_on_the_file_when_the_accepted_rules_no_longer_load(tmp_path):
    """A secret rotated in the file (old secret file removed) without a reload: the snapshot
    names a secret that is gone. A child restarting then takes the valid file (and records it)
    instead of dying five times and taking the service with it."""
    from bridge.service.serve import LAST_GOOD, load_accepted, read_status
    state, rules = tmp_path / "var", tmp_path / "rules.yaml"
    state.mkdir()
    (tmp_path / "old-secret").write_text("s1\n")
    rules.write_text(ROTATING_RULES % "old-secret")
    first, _ = load_accepted(rules, state)                      # first start: records the file
    (tmp_path / "new-secret").write_text("s2\n")
    rules.write_text(ROTATING_RULES % "new-secret")
    (tmp_path / "old-secret").unlink()
    config, problems = load_accepted(rules, state)
    assert problems == [] and config.version != first.version
    assert "new-secret" in (state / LAST_GOOD).read_text()
    assert read_status(state)["version"] == config.version


def test_a_web_worker_boots_on_the_file_when_the_accepted_rules_no_longer_load(tmp_path):
    """The same fallback in make_app, which every gunicorn worker runs at boot (in a process of
    its own: it sets up logging and metrics)."""
    from bridge.service.serve import load_accepted
    state, rules = tmp_path / "var", tmp_path / "rules.yaml"
    state.mkdir()
    (tmp_path / "old-secret").write_text("s1\n")
    rules.write_text(ROTATING_RULES % "old-secret")
    load_accepted(rules, state)
    (tmp_path / "new-secret").write_text("s2\n")
    rules.write_text(ROTATING_RULES % "new-secret")
    (tmp_path / "old-secret").unlink()
    code = ("import sys; from bridge.service.serve import make_app; "
            "app = make_app(sys.argv[1], sys.argv[2]); "
            "print('app:', type(app).__name__)")
    out = subprocess.run([sys.executable, "-c", code, str(rules), str(state)], capture_output=True,
                         text=True, timeout=60, cwd=ROOT,
                         env={**os.environ, "RUNTIME_DIRECTORY": str(tmp_path / "run")})
    assert out.returncode == 0, out.stderr
    assert "app: Flask" in out.stdout.splitlines(), out.stdout
    assert "the last accepted rules no longer load" in out.stdout


def test_a_child_start_names_the_snapshot_when_neither_it_nor_the_file_loads(tmp_path):
    from bridge.errors import ConfigError
    from bridge.service.serve import LAST_GOOD, load_accepted
    state, rules = tmp_path / "var", tmp_path / "rules.yaml"
    state.mkdir()
    (tmp_path / "old-secret").write_text("s1\n")
    rules.write_text(ROTATING_RULES % "old-secret")
    load_accepted(rules, state)
    (tmp_path / "old-secret").unlink()
    rules.write_text("rules: [\n")
    with pytest.raises(ConfigError) as err:
        load_accepted(rules, state)
    assert any(p.startswith(f"{LAST_GOOD} (the last accepted rules): ") and "old-secret" in p
               for p in err.value.problems), err.value.problems
    assert any(p.startswith("rules.yaml:") for p in err.value.problems)


def test_crlf_rules_keep_one_version_from_file_to_snapshot(tmp_path, caplog):
    from bridge.config.load import load_config
    from bridge.service.serve import load_accepted
    state, rules = tmp_path / "var", tmp_path / "rules.yaml"
    state.mkdir()
    (tmp_path / "secret").write_text("s1\n")
    rules.write_bytes((ROTATING_RULES % "secret").replace("\n", "\r\n").encode())
    first, _ = load_accepted(rules, state)
    again, _ = load_accepted(rules, state)                      # a restart, from the snapshot
    assert first.version == again.version == load_config(rules).version
    assert "was edited since" not in caplog.text


def test_a_supervised_child_reloads_what_the_supervisor_accepted_not_the_file(tmp_path, monkeypatch):
    """Under `cibridge serve` the supervisor validates rules.yaml and records the snapshot before
    it passes SIGHUP on; a child that read the file again could take an edit made in between."""
    from bridge.service.serve import LAST_GOOD, SUPERVISED, load_accepted, validate_and_record
    state, rules = tmp_path / "var", tmp_path / "rules.yaml"
    state.mkdir()
    (tmp_path / "secret").write_text("s1\n")
    rules.write_text(ROTATING_RULES % "secret")
    accepted, _ = load_accepted(rules, state)
    rules.write_text("rules: [\n")                  # edited after the supervisor's check
    monkeypatch.setenv(SUPERVISED, "1")
    assert validate_and_record(rules, state) == []
    assert "secret" in (state / LAST_GOOD).read_text()
    assert load_accepted(rules, state)[0].version == accepted.version
    monkeypatch.delenv(SUPERVISED)
    assert validate_and_record(rules, state)           # a split unit checks the file itself
