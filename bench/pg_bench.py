"""Benchmark: durable acks/s and ack latency of `cibridge serve` on PostgreSQL (one and two
instances sharing a database) beside the embedded SQLite store (one instance).

Input: the PostgreSQL server at BRIDGE_BENCH_PG (default postgresql://postgres@127.0.0.1:5432/test;
a fresh database is created for each run and dropped after). Output: one line per setup - acks/s,
p50/p99/max latency of the 202s - and whether every acknowledged delivery was built.

Run: .venv/bin/python bench/pg_bench.py [--duration 10] [--connections 64]

Closed loop: 64 keep-alive connections, each sending its next signed, distinct push as soon as the
last is answered (the client, run_load, is bench/load.py's). Two instances split the connections
evenly, as a round-robin load balancer would. durability "full": every 202 is on disk (SQLite
synchronous=FULL; PostgreSQL synchronous_commit=on). Each instance is a whole `cibridge serve`
(2 web workers x 16 threads and a dispatcher, memory target), all on this host's cores together
with the client and the server: figures compare setups on one machine, not clusters.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import MEMORY_RUN, RULES, SECRET, Result, Server, free_port, run_load  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432/test"


def instance(workdir: Path, name: str, database_url: str | None) -> Server:
    d = workdir / name
    d.mkdir()
    rules = d / "rules.yaml"
    rules.write_text(RULES.format(durability="full", run=MEMORY_RUN, concurrency=4), encoding="utf-8")
    port = free_port()
    env = {"BENCH_SECRET": SECRET.decode(), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    if database_url:
        env["BRIDGE_DATABASE_URL"] = database_url
    return Server([sys.executable, "-m", "bridge", "serve", "--rules", str(rules), "--state-dir",
                   str(d / "var"), "--bind", f"127.0.0.1:{port}"], port, d / "bridge.log", env)


def load(servers: list[Server], connections: int, duration: float, label: str) -> Result:
    """Every server gets its share of the connections, all driven at once; one merged result."""
    parts: list[Result] = []
    share = connections // len(servers)

    def drive(server):
        parts.append(run_load(server.port, connections=share, duration=duration, label=label))

    threads = [threading.Thread(target=drive, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    merged = Result(label)
    for r in parts:
        merged.latencies += r.latencies
        merged.errors += r.errors
        merged.accepted += r.accepted
        for status, n in r.statuses.items():
            merged.statuses[status] = merged.statuses.get(status, 0) + n
    merged.elapsed = duration
    return merged


def built(conninfo: str, accepted: list[str], timeout: float = 120.0) -> str:
    """Wait for the queue to drain; say how many acknowledged deliveries have a finished build."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if not conn.execute("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')").fetchone()[0]:
                break
            time.sleep(0.2)
        done = {r[0] for r in conn.execute("SELECT delivery_id FROM jobs WHERE state = 'succeeded'")}
    missing = sum(1 for d in accepted if d not in done)
    return f"built {len(accepted) - missing} of {len(accepted)} acknowledged" + ("  MISSING" if missing else "")


def run_sqlite(workdir: Path, args) -> None:
    import sqlite3
    server = instance(workdir, "sqlite", None)
    try:
        r = load([server], args.connections, args.duration, "sqlite      1 instance ")
        print(_line(r), flush=True)
        db = workdir / "sqlite" / "var" / "bridge.db"
        t0 = time.monotonic()
        with sqlite3.connect(db, timeout=30) as conn:
            while time.monotonic() - t0 < 120 and conn.execute(
                    "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')").fetchone()[0]:
                time.sleep(0.2)
            done = {x[0] for x in conn.execute("SELECT delivery_id FROM jobs WHERE state = 'succeeded'")}
        missing = sum(1 for d in r.accepted if d not in done)
        print(f"{'':26}built {len(r.accepted) - missing} of {len(r.accepted)} acknowledged"
              + ("  MISSING" if missing else ""), flush=True)
    finally:
        server.stop()


def run_pg(workdir: Path, args, n: int) -> None:
    name = f"bridge_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = args.pg.rsplit("/", 1)[0] + f"/{name}"
    servers: list[Server] = []
    try:
        for i in range(n):
            servers.append(instance(workdir, f"pg{n}-{i}", url))
        r = load(servers, args.connections, args.duration, f"postgresql  {n} instance{'s' if n > 1 else ' '}")
        print(_line(r), flush=True)
        print(f"{'':26}{built(url, r.accepted)}", flush=True)
    finally:
        for s in servers:
            s.stop()
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _line(r: Result) -> str:
    # Latencies of every answer; the statuses beside them show whether any was not a 202.
    acks = sorted(r.latencies)
    statuses = " ".join(f"{k}:{v}" for k, v in sorted(r.statuses.items()))
    return (f"{r.label}  {r.statuses.get(202, 0) / r.elapsed:7.0f} acks/s   p50 {r.pct(0.5):7.1f} ms"
            f"   p99 {r.pct(0.99):7.1f} ms   max {acks[-1] * 1000 if acks else 0:7.1f} ms   [{statuses}]"
            + (f"  errors {r.errors}" if r.errors else ""))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--pg", default=PG, help="a database on the server to run CREATE DATABASE from")
    p.add_argument("--only", choices=["sqlite", "pg1", "pg2"], action="append")
    args = p.parse_args(argv)
    only = args.only or ["sqlite", "pg1", "pg2"]
    with tempfile.TemporaryDirectory(prefix="bridge-pg-bench-") as tmp:
        workdir = Path(tmp)
        if "sqlite" in only:
            run_sqlite(workdir, args)
        if "pg1" in only:
            run_pg(workdir, args, 1)
        if "pg2" in only:
            run_pg(workdir, args, 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
