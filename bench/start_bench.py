"""Benchmark: start and reload of a real `cibridge serve` with 10,000 rules, and its memory at idle.

Input: flags (rules count, rounds, workers). Output: lines on stdout - seconds from the start of
`cibridge serve` to the first 202, seconds from SIGHUP (with an edited rules.yaml) to the first
202 that the new rules matched, the CPU seconds every process of the tree spent by then, and the
idle RSS and PSS of every process of `cibridge serve` (/proc/PID/smaps_rollup), beside the bare
Flask floor of bench/load.py under the same gunicorn settings. Everything runs on 127.0.0.1.

Run: .venv/bin/python bench/start_bench.py                  (10,000 rules, 3 rounds)
     .venv/bin/python bench/start_bench.py --rules 10 --rounds 1
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from load import FLOOR_APP, ROOT, SECRET, Deliveries, Server, free_port, process_tree, run_load  # noqa: E402
from match_bench import BRANCH_SETS, REPOS  # noqa: E402

HEAD = """\
sources:
  github: {provider: github, secrets: ["${env:BENCH_SECRET}"]}
targets:
  mem: {kind: memory}
rules:
  - name: bench
    on: {repo: f110/test, branches: ["**"]}
    run: {target: mem, parameters: {SHA: "${sha}"}}
"""


def rules_text(n: int, marker: str = "") -> str:
    rng = random.Random(7)
    out = [HEAD.rstrip()]
    if marker:
        out += [f"  - name: {marker}", "    on: {repo: f110/test}", "    run: {target: mem}"]
    for i in range(n - 1):
        paths = "" if i % 3 else ", paths: ['src/**', '!src/docs/**']"
        out += [f"  - name: rule-{i}",
                f"    on: {{repo: {REPOS[i % len(REPOS)]}, branches: {rng.choice(BRANCH_SETS)}{paths}}}",
                "    run: {target: mem, parameters: {SHA: '${sha}', BRANCH: '${branch}'}}"]
    return "\n".join(out) + "\n"


def post(port: int, deliveries: Deliveries) -> tuple[int, dict]:
    """One signed delivery: (status, reply) or (0, {}) when nothing answers yet."""
    _, request = deliveries.next()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(request.replace(b"HTTP/1.1\r\n", b"HTTP/1.1\r\nConnection: close\r\n", 1))
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return 0, {}
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1]) if head.startswith(b"HTTP/") else 0
    try:
        return status, json.loads(body)
    except ValueError:
        return status, {}


def until_202(port: int, deliveries: Deliveries, t0: float, want_rule: str = "", timeout=300.0) -> float:
    while time.perf_counter() - t0 < timeout:
        status, reply = post(port, deliveries)
        if status == 202 and (not want_rule or want_rule in reply.get("matched", ())):
            return time.perf_counter() - t0
        time.sleep(0.02)
    raise RuntimeError(f"no 202{' matching ' + want_rule if want_rule else ''} within {timeout:g} s")


def memory(pids) -> tuple[float, float, int]:
    """(RSS MiB, PSS MiB, processes) summed over `pids` from /proc/PID/smaps_rollup."""
    rss = pss = n = 0
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        n += 1
        for line in lines:
            key, _, rest = line.partition(":")
            if key == "Rss":
                rss += int(rest.split()[0])
            elif key == "Pss":
                pss += int(rest.split()[0])
    return rss / 1024, pss / 1024, n


def per_process(pids) -> str:
    parts = []
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        role = next((a.decode() for a in argv if a in (b"serve", b"web", b"dispatch")), "?")
        role = "worker" if role == "web" and os.getppid() != pid and _is_worker(pid) else role
        parts.append(f"{role} {memory([pid])[0]:.0f}")
    return ", ".join(parts)


def _is_worker(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    parent = Path(f"/proc/{stat[1]}/cmdline").read_bytes()
    return b"web" in parent.split(b"\0")


def cpu_tree(pids) -> float:
    """User + system CPU of these processes and of the children they reaped (gunicorn's replaced
    workers), from /proc/PID/stat."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def one_round(workdir: Path, args, root: Path) -> dict:
    rules = workdir / "rules.yaml"
    rules.write_text(rules_text(args.rules), encoding="utf-8")
    port = free_port()
    argv = [sys.executable, "-m", "bridge", "serve", "--rules", str(rules), "--state-dir",
            str(workdir / "var"), "--bind", f"127.0.0.1:{port}"]
    if args.workers:
        argv += ["--workers", str(args.workers)]
    env = {**os.environ, "BENCH_SECRET": SECRET.decode(), "PYTHONPATH": str(root),
           "BRIDGE_LOG_LEVEL": "warning"}
    log = open(workdir / "bridge.log", "ab")
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(workdir))
    deliveries = Deliveries(port)
    try:
        out = {"start": until_202(port, deliveries, t0)}
        out["start_cpu"] = cpu_tree(process_tree(proc.pid))
        time.sleep(args.settle)
        tree = process_tree(proc.pid)
        out["rss"], out["pss"], out["procs"] = memory(tree)
        out["each"] = per_process(tree)
        if args.soak:
            # The first thousand deliveries warm it up (the ingest path's first imports, SQLite's
            # caches, the workers' first writes to pages shared with their master): memory then,
            # and again after the rest.
            warm = min(1000, args.soak)
            soak(port, workdir, args, warm)
            tree = process_tree(proc.pid)
            out["warm_rss"], out["warm_pss"], _ = memory(tree)
            out.update(soak(port, workdir, args, args.soak - warm))
            tree = process_tree(proc.pid)
            out["soak_rss"], out["soak_pss"], _ = memory(tree)
            out["soak_each"] = per_process(tree)
        rules.write_text(rules_text(args.rules, marker="reload-marker"), encoding="utf-8")
        cpu0 = cpu_tree(process_tree(proc.pid))
        t1 = time.perf_counter()
        proc.send_signal(signal.SIGHUP)
        out["reload"] = until_202(port, deliveries, t1, want_rule="reload-marker")
        out["reload_cpu"] = cpu_tree(process_tree(proc.pid)) - cpu0
        return out
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def soak(port: int, workdir: Path, args, n: int) -> dict:
    """`n` deliveries at full speed (64 connections), every job run, then the settle."""
    t0 = time.perf_counter()
    r = run_load(port, connections=64, duration=3600, label="soak", warmup=0, limit=n)
    db = sqlite3.connect(workdir / "var" / "bridge.db", timeout=30)
    try:
        deadline = time.monotonic() + 600
        while db.execute("SELECT count(*) FROM jobs WHERE state <> 'succeeded'").fetchone()[0]:
            if time.monotonic() > deadline:
                raise RuntimeError("the soak's jobs did not all run within 10 minutes")
            time.sleep(0.5)
        built = db.execute("SELECT count(*) FROM jobs WHERE state = 'succeeded'").fetchone()[0]
    finally:
        db.close()
    time.sleep(args.settle)
    return {"soak_acks": r.statuses.get(202, 0), "soak_built": built,
            "soak_seconds": time.perf_counter() - t0}


def floor_memory(workdir: Path, args) -> tuple[float, float, int]:
    port = free_port()
    script = workdir / "floor_app.py"
    script.write_text(FLOOR_APP.format(root=str(ROOT)), encoding="utf-8")
    t0 = time.perf_counter()
    server = Server([sys.executable, str(script), f"127.0.0.1:{port}", str(args.workers or "-"), "-"],
                    port, workdir / "floor.log")
    started = time.perf_counter() - t0
    try:
        time.sleep(args.settle)
        return (*memory(process_tree(server.proc.pid)), started)
    finally:
        server.stop()


def _change(before: float, after: float) -> str:
    return f"{(after - before) / before * 100:+.1f} %" if before else "-"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: the bridge's)")
    parser.add_argument("--settle", type=float, default=3.0, help="idle seconds before memory is read")
    parser.add_argument("--soak", type=int, default=0,
                        help="after the idle memory, send this many deliveries (64 connections, "
                             "every job run), settle and read the memory again (goal: within 10 %%)")
    parser.add_argument("--before", type=Path, default=None,
                        help="another checkout of the bridge (e.g. `git worktree add /tmp/before main`): "
                             "its rounds alternate with this one's, in the same run")
    args = parser.parse_args(argv)
    roots = [("this", ROOT)] + ([("before", args.before.resolve())] if args.before else [])
    with tempfile.TemporaryDirectory(prefix="bridge-start-") as tmp:
        rounds = {name: [] for name, _ in roots}
        for i, (name, root) in ((i, nr) for i in range(args.rounds) for nr in roots):
            work = Path(tmp) / f"{name}{i}"
            work.mkdir()
            r = one_round(work, args, root)
            rounds[name].append(r)
            print(f"{name} round {i + 1}: {args.rules} rules: first 202 {r['start']:.2f} s after start "
                  f"(CPU {r['start_cpu']:.1f} s, all processes); reload {r['reload']:.2f} s "
                  f"(CPU {r['reload_cpu']:.1f} s); idle RSS {r['rss']:.0f} MiB, PSS {r['pss']:.0f} MiB "
                  f"in {r['procs']} processes ({r['each']})", flush=True)
            if args.soak:
                print(f"{name} round {i + 1}: after the first 1,000 deliveries: RSS {r['warm_rss']:.0f} "
                      f"MiB, PSS {r['warm_pss']:.0f} MiB; after {args.soak} ({r['soak_built']} jobs "
                      f"run in all, the last {r['soak_acks']} acknowledged in {r['soak_seconds']:.0f} s) "
                      f"and {args.settle:g} s idle: RSS {r['soak_rss']:.0f} MiB "
                      f"({_change(r['rss'], r['soak_rss'])} on idle, {_change(r['warm_rss'], r['soak_rss'])}"
                      f" on warm), PSS {r['soak_pss']:.0f} MiB ({_change(r['pss'], r['soak_pss'])} on "
                      f"idle, {_change(r['warm_pss'], r['soak_pss'])} on warm; goal within +-10 %) "
                      f"({r['soak_each']})", flush=True)
        f_rss, f_pss, f_n, f_start = floor_memory(Path(tmp), args)
    for name, _ in roots:
        med = {k: statistics.median(r[k] for r in rounds[name])
               for k in ("start", "reload", "start_cpu", "rss", "pss")}
        print(f"{name}: median of {len(rounds[name])}: start {med['start']:.2f} s (goal <= 3 s), "
              f"reload {med['reload']:.2f} s (goal <= 3 s), start CPU {med['start_cpu']:.1f} s; idle "
              f"RSS {med['rss']:.0f} MiB, PSS {med['pss']:.0f} MiB (goal <= 150 MiB)")
    print(f"bare Flask floor: RSS {f_rss:.0f} MiB, PSS {f_pss:.0f} MiB in {f_n} processes, "
          f"answering {f_start:.2f} s after its start")
    return 0


if __name__ == "__main__":
    sys.exit(main())
