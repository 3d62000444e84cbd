"""Benchmark: ack (the 202 reaching the git host) -> Jenkins build request received, p50/p99, and
builds started per second, through a real `cibridge serve` (gunicorn + one dispatcher) with
dispatcher concurrency 1, 4 and 16.

Run: .venv/bin/python bench/jenkins_dispatch.py [--burst N] [--quiet-period 5]
The Jenkins stand-in (tests/jenkins_standin.py) runs in this process and answers at once (quiet
period 0; `--quiet-period 5` is Jenkins' default, whose queue items the adapter must not wait
for). The bridge runs as child processes on 127.0.0.1; everything stops by itself.
"""
from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bridge.providers import sign_headers  # noqa: E402
from jenkins_standin import JenkinsStandin  # noqa: E402
from support_serve import BridgeProcess  # noqa: E402

PAYLOAD = ROOT.parent / "shared" / "payloads" / "github" / "push__f110-single-commit.json"
SECRET = "bench-secret-5d1c"
RULES = """\
settings: {{dispatcher_concurrency: {concurrency}}}
sources:
  github: {{provider: github, secrets: ["${{env:BENCH_SECRET}}"]}}
targets:
  ci: {{kind: jenkins, url: "{url}", user: bridge, token: "${{env:BENCH_JENKINS_TOKEN}}"}}
rules:
  - name: bench
    on: {{repo: f110/test, branches: ["**"]}}
    run: {{target: ci, job: bench/build, parameters: {{GIT_SHA: "${{sha}}"}}}}
"""


def push_body(template: dict) -> bytes:
    """A distinct push each time (fresh before/after), so content dedupe keeps every one."""
    doc = json.loads(json.dumps(template))
    doc["before"], doc["after"] = secrets.token_hex(20), secrets.token_hex(20)
    doc["head_commit"]["id"] = doc["commits"][0]["id"] = doc["after"]
    return json.dumps(doc).encode()


def start_bridge(workdir: Path, standin: JenkinsStandin, concurrency: int) -> BridgeProcess:
    """`cibridge serve` as a child process (tests/support_serve.py), stopped by its pid."""
    env = {"BENCH_SECRET": SECRET, "BENCH_JENKINS_TOKEN": standin.users["bridge"]}
    return BridgeProcess(workdir, RULES.format(concurrency=concurrency, url=standin.url),
                         env=env).start(timeout=60)


def post(session: requests.Session, bridge: BridgeProcess, template: dict) -> tuple[str, float]:
    """One signed delivery; returns its id and the moment its 202 arrived."""
    delivery = secrets.token_hex(8)
    body = push_body(template)
    headers = sign_headers("github", body, SECRET.encode(), delivery=delivery)
    r = session.post(f"{bridge.url}/hooks/github", data=body, headers=headers, timeout=30)
    acked = time.monotonic()
    if r.status_code != 202:
        raise RuntimeError(f"delivery {delivery}: HTTP {r.status_code} {r.text[:200]}")
    return delivery, acked


def wait_for_builds(standin: JenkinsStandin, count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while len([r for r in standin.posts() if r.status == 201]) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(standin.posts())} of {count} build requests arrived")
        time.sleep(0.05)


def received_by_delivery(standin: JenkinsStandin) -> dict[str, float]:
    out = {}
    for r in standin.posts():
        if r.status == 201:
            delivery = r.query["BRIDGE_DELIVERY"][0].rsplit("-", 1)[0]   # "<delivery>-<job id>"
            out[delivery] = r.received
    return out


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def run_level(concurrency: int, template: dict, light: int, burst: int, quiet_period: float = 0.0) -> dict:
    standin = JenkinsStandin(quiet_period=quiet_period)
    standin.add_job("bench/build", ["GIT_SHA", "BRIDGE_DELIVERY"])
    standin.start()
    with tempfile.TemporaryDirectory(prefix="bridge-bench-") as tmp:
        bridge = start_bridge(Path(tmp), standin, concurrency)
        try:
            session = requests.Session()
            # Light load: one delivery at a time, so the figure is the path's own latency.
            light_acks = {}
            for _ in range(light):
                delivery, acked = post(session, bridge, template)
                light_acks[delivery] = acked
                time.sleep(0.05)
            wait_for_builds(standin, light)
            # Burst: deliveries as fast as 8 senders can post them; the queue absorbs them.
            before = len(standin.posts())
            t0 = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                sessions = threading.local()

                def send(_):
                    if not hasattr(sessions, "s"):
                        sessions.s = requests.Session()
                    return post(sessions.s, bridge, template)

                burst_acks = dict(pool.map(send, range(burst)))
            wait_for_builds(standin, light + burst)
            received = received_by_delivery(standin)
            burst_received = [received[d] for d in burst_acks]
            span = max(burst_received) - t0
            assert len(standin.posts()) - before == burst, "a delivery built twice"
        finally:
            bridge.stop()
            standin.stop()
    light_ms = [(received[d] - a) * 1000 for d, a in light_acks.items()]
    burst_ms = [(received[d] - a) * 1000 for d, a in burst_acks.items()]
    return {"concurrency": concurrency,
            "light_p50": percentile(light_ms, 50), "light_p99": percentile(light_ms, 99),
            "burst_p50": percentile(burst_ms, 50), "burst_p99": percentile(burst_ms, 99),
            "builds_per_s": burst / span,
            "acks_per_s": burst / (max(burst_acks.values()) - t0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--light", type=int, default=50, help="deliveries sent one at a time")
    parser.add_argument("--burst", type=int, default=300, help="deliveries sent at once")
    parser.add_argument("--levels", default="1,4,16", help="dispatcher concurrency levels")
    parser.add_argument("--quiet-period", type=float, default=0.0,
                        help="the Jenkins job's quiet period in seconds (Jenkins' default is 5)")
    args = parser.parse_args()
    template = json.loads(PAYLOAD.read_text())
    print("ack -> Jenkins build request received (ms); builds started per second "
          f"({args.light} single deliveries, then a burst of {args.burst})")
    print(f"{'conc':>5} {'single p50':>11} {'single p99':>11} {'burst p50':>10} {'burst p99':>10} "
          f"{'builds/s':>9} {'acks/s':>7}")
    for level in (int(x) for x in args.levels.split(",")):
        r = run_level(level, template, args.light, args.burst, args.quiet_period)
        print(f"{r['concurrency']:>5} {r['light_p50']:>11.1f} {r['light_p99']:>11.1f} "
              f"{r['burst_p50']:>10.1f} {r['burst_p99']:>10.1f} {r['builds_per_s']:>9.1f} "
              f"{r['acks_per_s']:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
