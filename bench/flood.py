"""Benchmark: a webhook flood against a real `cibridge serve` with per-target policy (issue 16).

Input: flags (how many pushes, how many branches, senders). Output, one block per run: acks/s and
ack p50/p99 (the 202 reaching the sender), and for the policy runs the builds the Jenkins
stand-in started, the most it ever had running, whether every branch's newest push built, how
many jobs ended superseded, and (cancel) how long after a successor's build request the
superseded build was stopped.

Runs (each on a fresh bridge and stand-in, all on 127.0.0.1, everything stops by itself):
  coalesce  max_running: 4, on_newer: coalesce, builds of --build-seconds (0.5)
  cancel    max_running: 4, on_newer: cancel, 5-second builds
  none      no policy: the ack figures only (the flood's builds are not waited for)

Run: .venv/bin/python bench/flood.py [--count 10000] [--branches 10] [--runs coalesce,cancel,none]
Bounded: --count pushes in all, --senders threads each sending one branch's pushes in order
(so "the newest push of a branch" is well defined), and every wait has a deadline.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bridge.providers import sign_headers  # noqa: E402
from helpers.process import BridgeProcess  # noqa: E402
from helpers.standins.jenkins import JenkinsStandin  # noqa: E402

SHARED = Path(os.environ.get("BRIDGE_SHARED_DIR") or ROOT.parent / "shared")
PAYLOAD = SHARED / "payloads" / "github" / "push__f110-single-commit.json"
SECRET = "flood-secret-3e9a"
RULES = """\
settings: {{dispatcher_concurrency: 8, durability: normal, poll_interval: 0.01}}
sources:
  github: {{provider: github, secrets: ["${{env:FLOOD_SECRET}}"]}}
targets:
  ci:
    kind: jenkins
    url: "{url}"
    user: bridge
    token: "${{env:FLOOD_JENKINS_TOKEN}}"
{policy}
rules:
  - name: flood
    on: {{repo: f110/test, branches: ["**"]}}
    run: {{target: ci, job: bench/build, delay: 0, parameters: {{GIT_SHA: "${{sha}}"}}}}
"""
POLICIES = {"coalesce": "    policy: {max_running: 4, on_newer: coalesce}",
            "cancel": "    policy: {max_running: 4, on_newer: cancel}",
            "none": ""}


def push_body(template: dict, branch: str) -> tuple[bytes, str]:
    doc = json.loads(json.dumps(template))
    doc["ref"] = f"refs/heads/{branch}"
    doc["before"], doc["after"] = secrets.token_hex(20), secrets.token_hex(20)
    doc["head_commit"]["id"] = doc["commits"][0]["id"] = doc["after"]
    return json.dumps(doc).encode(), doc["after"]


def flood(bridge: BridgeProcess, count: int, branches: int) -> dict:
    """`count` signed pushes, `branches` senders (one per branch, in order); ack latencies."""
    template = json.loads(PAYLOAD.read_bytes())
    latencies: list[float] = []
    newest: dict[str, str] = {}
    errors: list[str] = []
    lock = threading.Lock()

    def send(b: int):
        branch = f"flood-{b}"
        session = requests.Session()
        for i in range(b, count, branches):
            body, sha = push_body(template, branch)
            headers = sign_headers("github", body, SECRET.encode(), delivery=secrets.token_hex(8))
            t0 = time.perf_counter()
            try:
                r = session.post(f"{bridge.url}/hooks/github", data=body, headers=headers, timeout=30)
            except requests.RequestException as exc:
                with lock:
                    errors.append(str(exc))
                continue
            took = time.perf_counter() - t0
            with lock:
                if r.status_code == 202:
                    latencies.append(took)
                    newest[branch] = sha
                else:
                    errors.append(f"HTTP {r.status_code}")

    started = time.perf_counter()
    threads = [threading.Thread(target=send, args=(b,)) for b in range(branches)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"acked": len(latencies), "errors": len(errors), "seconds": round(elapsed, 2),
            "acks_per_s": round(len(latencies) / elapsed, 1),
            "ack_p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
            "ack_p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))] * 1000, 2) if latencies else None,
            "newest": newest}


def drained(bridge: BridgeProcess, standin: JenkinsStandin, timeout: float) -> dict:
    """Wait until no job waits or runs and every build the stand-in started has ended."""
    store = bridge.store()
    deadline = time.monotonic() + timeout
    try:
        while True:
            jobs = store.queue_stats(time.time())["jobs"]
            building = [b for b in standin.builds() if standin.now() < b.finish_at]
            if not (jobs["queued"] or jobs["running"] or jobs["started"] or building):
                return jobs
            if time.monotonic() > deadline:
                raise RuntimeError(f"not drained after {timeout}s: {jobs}, {len(building)} building")
            time.sleep(0.5)
    finally:
        store.close()


def cancel_delays(bridge: BridgeProcess, standin: JenkinsStandin) -> list[float]:
    """For each superseded job whose build had started: seconds from its successor's build
    request to the stop (or queue cancel) of its own build; negative when the stop came first."""
    db = sqlite3.connect(f"file:{bridge.state / 'bridge.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT old.remote_id, new.delivery_id || '-' || new.id FROM jobs old "
                          "JOIN jobs new ON new.id = old.superseded_by "
                          "WHERE old.state = 'superseded' AND old.remote_id IS NOT NULL").fetchall()
    finally:
        db.close()
    posts = standin.posts()
    asked = {value(r, "BRIDGE_DELIVERY"): r.received for r in posts
             if r.path.endswith("buildWithParameters") and r.status == 201}
    stops = {}
    for r in posts:
        if r.path.endswith("/stop"):
            stops.setdefault(f"bench/build#{r.path.rstrip('/').split('/')[-2]}", r.received)
        elif r.path.endswith("cancelItem"):
            stops.setdefault(f"bench/build#queue/{value(r, 'id')}", r.received)
    return [stops[old] - asked[new] for old, new in rows if old in stops and new in asked]


def value(record, name: str) -> str:
    return (record.query.get(name) or [""])[-1]


def run(kind: str, args, workdir: Path) -> dict:
    seconds = args.build_seconds if kind != "cancel" else 5.0
    standin = JenkinsStandin(quiet_period=0.0, build_duration=seconds)
    standin.add_job("bench/build", ["GIT_SHA", "BRIDGE_DELIVERY"])
    standin.start()
    env = {"FLOOD_SECRET": SECRET, "FLOOD_JENKINS_TOKEN": standin.users["bridge"]}
    bridge = BridgeProcess(workdir / kind, RULES.format(url=standin.url.rstrip("/"), policy=POLICIES[kind]),
                           env=env).start(timeout=60)
    try:
        out = flood(bridge, args.count, args.branches)
        out["run"] = kind
        if kind == "none":
            return out
        jobs = drained(bridge, standin, args.timeout)
        built = {value(r, "GIT_SHA") for r in standin.posts()
                 if r.path.endswith("buildWithParameters") and r.status == 201}
        out.update(started=len(standin.builds()), peak_running=standin.peak_running(),
                   every_newest_built=all(sha in built for sha in out["newest"].values()),
                   superseded=jobs["superseded"], succeeded=jobs["succeeded"], failed=jobs["failed"],
                   stopped=len([r for r in standin.posts() if r.path.endswith("/stop")]),
                   cancelled_items=len([r for r in standin.posts() if r.path.endswith("cancelItem")]))
        if kind == "cancel":
            delays = cancel_delays(bridge, standin)
            out.update(cancels_measured=len(delays),
                       cancel_after_successor_s_max=round(max(delays), 3) if delays else None,
                       cancel_within_1s=all(abs(d) <= 1.0 for d in delays))
        return out
    finally:
        bridge.stop()
        standin.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=10000, help="pushes in all")
    p.add_argument("--branches", type=int, default=10, help="branches of the one repository")
    p.add_argument("--runs", default="coalesce,cancel,none", help="which runs, comma-separated")
    p.add_argument("--build-seconds", type=float, default=0.5, help="build duration (coalesce)")
    p.add_argument("--timeout", type=float, default=600.0, help="deadline for the queue to drain")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bridge-flood-") as tmp:
        for kind in args.runs.split(","):
            result = run(kind, args, Path(tmp))
            result.pop("newest", None)
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
